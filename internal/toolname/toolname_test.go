package toolname

import (
	"regexp"
	"strings"
	"testing"
)

var validName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

func TestPublic(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 80)
	for _, tc := range []struct {
		prefix, name, want string
	}{
		{"github", "create_issue", "github__create_issue"},
		{"fs", "read.file", "fs__read_file"},
		{"fs", "naïve tool/v2", "fs__na_ve_tool_v2"},
		{"srv", long, "srv__" + strings.Repeat("x", 50) + "_" + shortHash("srv__"+long)},
		{"", "create_issue", "create_issue"},
		{"", long, strings.Repeat("x", 55) + "_" + shortHash(long)},
	} {
		got := Public(tc.prefix, tc.name)
		if got != tc.want {
			t.Errorf("Public(%q, %q) = %q, want %q", tc.prefix, tc.name, got, tc.want)
		}
		if !validName.MatchString(got) {
			t.Errorf("Public(%q, %q) = %q is not a valid name", tc.prefix, tc.name, got)
		}
	}
	a, b := Public("srv", long+"a"), Public("srv", long+"b")
	if a == b || len(a) != MaxLength || a != Public("srv", long+"a") {
		t.Errorf("truncated names %q and %q must be distinct, stable and 64 long", a, b)
	}
	if d := Disambiguated("fs__read_file", "i1"); d == Public("fs", "read_file") || !validName.MatchString(d) {
		t.Errorf("Disambiguated = %q, want a valid name apart from the public one", d)
	}
}
