package sandbox_test

import (
	"strings"
	"testing"

	"github.com/orrery/orrery/services/satellite/internal/sandbox"
)

func TestSelect(t *testing.T) {
	t.Parallel()
	newBwrap(t, sandbox.BwrapConfig{}) // installs bwrap where the test may, and fails saying how otherwise
	for _, tc := range []struct {
		mode, want sandbox.Mode
	}{{"", sandbox.ModeBwrap}, {sandbox.ModeAuto, sandbox.ModeBwrap}, {sandbox.ModeBwrap, sandbox.ModeBwrap}, {sandbox.ModeDirect, sandbox.ModeDirect}} {
		d, got, err := sandbox.Select(t.Context(), nil, sandbox.SelectConfig{Mode: tc.mode, HomeRoot: t.TempDir()})
		if err != nil || got != tc.want {
			t.Errorf("Select(%q) = %v, %v; want %v", tc.mode, got, err, tc.want)
			continue
		}
		if _, isBwrap := d.(*sandbox.Bwrap); isBwrap != (tc.want == sandbox.ModeBwrap) {
			t.Errorf("Select(%q) made a %T", tc.mode, d)
		}
	}
}

// Not parallel: it empties PATH to stand for a machine without bubblewrap.
func TestSelectWithoutBwrap(t *testing.T) {
	t.Setenv("PATH", "")
	d, mode, err := sandbox.Select(t.Context(), nil, sandbox.SelectConfig{Mode: sandbox.ModeAuto, HomeRoot: t.TempDir()})
	if err != nil || mode != sandbox.ModeDirect {
		t.Fatalf("auto without bwrap = %T, %v, %v; want direct", d, mode, err)
	}
	_, _, err = sandbox.Select(t.Context(), nil, sandbox.SelectConfig{Mode: sandbox.ModeBwrap, HomeRoot: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "apt-get install bubblewrap") {
		t.Fatalf("bwrap without bwrap: %v, want an error saying how to install it", err)
	}
}

func TestParseMode(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]sandbox.Mode{"": sandbox.ModeAuto, "auto": sandbox.ModeAuto, "bwrap": sandbox.ModeBwrap, "direct": sandbox.ModeDirect} {
		if got, err := sandbox.ParseMode(in); err != nil || got != want {
			t.Errorf("ParseMode(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := sandbox.ParseMode("nsjail"); err == nil {
		t.Error("ParseMode(nsjail) succeeded")
	}
}
