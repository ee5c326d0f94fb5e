package selfupdate

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/orrery/orrery/internal/release"
)

// fakeReleases serves releases as the control plane's DownloadRelease does, in pieces of size piece.
type fakeReleases struct {
	piece    int
	releases map[string]fakeRelease
	calls    int
}

type fakeRelease struct {
	info release.Release
	data []byte
}

func (f *fakeReleases) DownloadRelease(_ context.Context, version, platform string, offset int64) (release.Release, []byte, error) {
	f.calls++
	r, ok := f.releases[version]
	if !ok || r.info.Platform != platform {
		return release.Release{}, nil, errors.New("not found")
	}
	end := min(int(offset)+f.piece, len(r.data))
	return r.info, r.data[offset:end], nil
}

type reports struct {
	mu   sync.Mutex
	got  []string
	done chan struct{}
}

func (r *reports) ReportResult(_ context.Context, id string, out map[string]any, failure string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, id+":"+failure)
	close(r.done)
	return nil
}

type bundle struct {
	exe, state string
	releases   *fakeReleases
	key        ed25519.PrivateKey
	keys       release.Keys
}

func setup(t *testing.T) *bundle {
	t.Helper()
	dir := t.TempDir()
	b := &bundle{exe: filepath.Join(dir, "satellite"), state: t.TempDir(), releases: &fakeReleases{piece: 7, releases: map[string]fakeRelease{}}}
	if err := os.WriteFile(b.exe, []byte("old binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	b.key, b.keys = key, release.Keys{pub}
	return b
}

// add publishes data as version, signed by key, claiming sum (the data's own when empty).
func (b *bundle) add(version string, data []byte, key ed25519.PrivateKey, sum string) {
	if sum == "" {
		s := sha256.Sum256(data)
		sum = hex.EncodeToString(s[:])
	}
	b.releases.releases[version] = fakeRelease{data: data, info: release.Release{
		Version: version, Platform: release.Platform(), SHA256: sum, Size: int64(len(data)),
		Signature: release.Sign(key, version, release.Platform(), sum),
	}}
}

func (b *bundle) updater(t *testing.T, version string) *Updater {
	t.Helper()
	u, err := New(nil, Config{Keys: b.keys, Version: version, StateDir: b.state, Executable: b.exe, Download: b.releases})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestUpdateRefuses(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, stranger, _ := ed25519.GenerateKey(rand.Reader)
	b.add("1.1.0", []byte("new binary, signed by a stranger"), stranger, "")
	b.add("1.2.0", []byte("new binary whose checksum is another's"), b.key, hex.EncodeToString(make([]byte, 32)))
	b.add("0.9.0", []byte("an older binary"), b.key, "")
	b.add("1.3.0", []byte("a binary whose size the control plane overstates"), b.key, "")
	overstated := b.releases.releases["1.3.0"]
	overstated.info.Size = 1 << 40 // the size is not signed
	b.releases.releases["1.3.0"] = overstated
	u := b.updater(t, "1.0.0")
	for _, tc := range []struct {
		version string
		want    error
	}{
		{"1.1.0", release.ErrBadSignature},
		{"1.2.0", release.ErrChecksum},
		{"0.9.0", release.ErrDowngrade},
		{"1.3.0", release.ErrChecksum},
	} {
		calls := b.releases.calls
		_, err := u.Update(t.Context(), Request{CommandID: "c-" + tc.version, Version: tc.version})
		if !errors.Is(err, tc.want) {
			t.Errorf("update to %s: %v, want %v", tc.version, err, tc.want)
		}
		if (tc.want == release.ErrBadSignature || tc.version == "1.3.0") && b.releases.calls-calls != 1 {
			t.Errorf("update to %s: downloaded further than the first piece (%d calls)", tc.version, b.releases.calls-calls)
		}
	}
	if got, _ := os.ReadFile(b.exe); string(got) != "old binary" {
		t.Errorf("a refused update changed the binary to %q", got)
	}
	if entries, _ := os.ReadDir(filepath.Dir(b.exe)); len(entries) != 1 {
		t.Errorf("a refused update left files beside the binary: %v", entries)
	}
	if m, _ := ReadMarker(filepath.Join(b.state, MarkerName)); m != nil {
		t.Errorf("a refused update left a marker: %+v", m)
	}
	// No keys: nothing is trusted.
	u.cfg.Keys = nil
	if _, err := u.Update(t.Context(), Request{CommandID: "c", Version: "1.1.0"}); !errors.Is(err, release.ErrNoKeys) {
		t.Errorf("update without keys: %v", err)
	}
}

func TestUpdateStagesConfirmsAndRedelivers(t *testing.T) {
	t.Parallel()
	b := setup(t)
	newBinary := bytes.Repeat([]byte("new binary "), 10)
	b.add("1.1.0", newBinary, b.key, "")
	u := b.updater(t, "1.0.0")
	if _, err := u.Update(t.Context(), Request{CommandID: "c1", Version: "1.1.0"}); !errors.Is(err, ErrRestarting) {
		t.Fatalf("update: %v, want ErrRestarting", err)
	}
	select {
	case r := <-u.Restarts():
		if r.marker.To != "1.1.0" || r.marker.From != "1.0.0" {
			t.Errorf("restart marker %+v", r.marker)
		}
	default:
		t.Fatal("no restart handed to the satellite")
	}
	if got, _ := os.ReadFile(b.exe); !bytes.Equal(got, newBinary) {
		t.Errorf("binary not swapped: %q", got)
	}
	if got, _ := os.ReadFile(b.exe + ".previous"); string(got) != "old binary" {
		t.Errorf("previous binary not kept: %q", got)
	}
	// Delivered again before the restart finished: not staged twice.
	if _, err := u.Update(t.Context(), Request{CommandID: "c1", Version: "1.1.0"}); !errors.Is(err, ErrRestarting) {
		t.Errorf("redelivered update: %v", err)
	}

	// The new version's first heartbeat confirms to the watchdog and reports the command.
	next := b.updater(t, "1.1.0")
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	rep := &reports{done: make(chan struct{})}
	next.Inherit(pw, 0)
	next.SetReporter(rep)
	next.Heartbeat(t.Context())
	var buf [1]byte
	if n, _ := pr.Read(buf[:]); n != 1 {
		t.Error("the watchdog was not told")
	}
	<-rep.done
	if rep.got[0] != "c1:" {
		t.Errorf("reported %q, want c1 completed", rep.got)
	}
	m, _ := ReadMarker(filepath.Join(b.state, MarkerName))
	if m.State != StateConfirmed || !m.Reported {
		t.Errorf("marker after confirmation: %+v", m)
	}
	if out, err := next.Update(t.Context(), Request{CommandID: "c1", Version: "1.1.0"}); err != nil || out["to"] != "1.1.0" {
		t.Errorf("update delivered again after confirmation: %v %v", out, err)
	}
}

func TestRolledBackUpdateIsReportedFailed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	if err := WriteMarker(filepath.Join(b.state, MarkerName), &Marker{
		CommandID: "c2", From: "1.0.0", To: "1.2.0", State: StateRolledBack, Reason: "the new version exited before its first heartbeat",
	}); err != nil {
		t.Fatal(err)
	}
	u := b.updater(t, "1.0.0")
	rep := &reports{done: make(chan struct{})}
	u.SetReporter(rep)
	u.Heartbeat(t.Context())
	<-rep.done
	if want := "c2:rolled back to 1.0.0: the new version exited before its first heartbeat"; rep.got[0] != want {
		t.Errorf("reported %q, want %q", rep.got[0], want)
	}
}
