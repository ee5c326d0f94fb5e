package mcpruntime_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/internal/egress"
	"github.com/orrery/orrery/services/satellite/internal/build"
	"github.com/orrery/orrery/services/satellite/internal/mcpruntime"
	"github.com/orrery/orrery/services/satellite/internal/sandbox"
)

// sources serves source archives over TLS on loopback.
type sources struct {
	*httptest.Server
	mu    sync.Mutex
	files map[string][]byte
}

func newSources(t testing.TB) *sources {
	t.Helper()
	s := &sources{files: map[string][]byte{}}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		body, ok := s.files[r.URL.Path]
		s.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(body)
	}))
	t.Cleanup(s.Close)
	return s
}

// pack serves the files of dir, in under, plus extra as a tar.gz under one top-level
// directory, and returns it as a source.
func (s *sources) pack(t testing.TB, name, dir, under string, extra map[string]string) *satellitev1.Source {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	add := func(rel string, body []byte) {
		if err := tw.WriteHeader(&tar.Header{Name: "src-1/" + rel, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		_, _ = tw.Write(body)
	}
	err := filepath.WalkDir(dir, func(file string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.Contains(file, "__pycache__") || strings.Contains(file, "node_modules") {
			return err
		}
		rel, _ := filepath.Rel(dir, file)
		body, err := os.ReadFile(file)
		add(path.Join(under, filepath.ToSlash(rel)), body)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for rel, body := range extra {
		add(rel, []byte(body))
	}
	_ = tw.Close()
	_ = zw.Close()
	sum := sha256.Sum256(buf.Bytes())
	s.mu.Lock()
	s.files["/"+name] = buf.Bytes()
	s.mu.Unlock()
	return &satellitev1.Source{Url: s.URL + "/" + name, Sha256: hex.EncodeToString(sum[:])}
}

// builder downloads from s under an egress policy that allows loopback, as ORRERY_SANDBOX_EGRESS_ALLOW
// would.
func (s *sources) builder(t testing.TB, driver sandbox.Driver) *build.Builder {
	t.Helper()
	tr := egress.Policy{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}.Transport()
	tr.TLSClientConfig = s.Client().Transport.(*http.Transport).TLSClientConfig
	b, err := build.New(nil, build.Config{Dir: t.TempDir(), HTTPClient: &http.Client{Transport: tr}, Driver: driver})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

const pythonFixture = "../build/testdata/python-server/fixture_server"

// sourceInstance is an instance of the Python fixture built from src: a module of the tree, no build.
func sourceInstance(src *satellitev1.Source) *satellitev1.Instance {
	in := stdioInstance("src", "python3", "-m", "fixture_server")
	in.Source = src
	in.ContentHash = src.GetSha256() + src.GetBuildCommand()
	return in
}

func callVersion(t *testing.T, rt *mcpruntime.Runtime, id string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
	defer cancel()
	res, err := callTool(ctx, rt, id, &mcp.CallToolParams{Name: "version"})
	if err != nil {
		t.Fatalf("call version: %v", err)
	}
	return text(res)
}

func TestSourceRedeployIsBlueGreen(t *testing.T) {
	t.Parallel()
	src := newSources(t)
	b := setup(t, func(c *mcpruntime.Config) { c.Builds = src.builder(t, c.Driver) })
	v1 := sourceInstance(src.pack(t, "v1.tar.gz", pythonFixture, "fixture_server", map[string]string{"VERSION": "v1"}))
	b.apply(t, v1)
	b.waitStatus(t, v1.Id, online)
	if got := callVersion(t, b.rt, v1.Id); got != "v1" {
		t.Fatalf("version %q, want v1", got)
	}
	// A lease held across the redeploy, as a long call would: the old server must outlive the switch.
	lease, err := b.rt.Acquire(t.Context(), v1.Id)
	if err != nil {
		t.Fatal(err)
	}
	seen := len(b.events.of(v1.Id))

	v2 := sourceInstance(src.pack(t, "v2.tar.gz", pythonFixture, "fixture_server", map[string]string{"VERSION": "v2"}))
	v2.Id = v1.Id
	start := time.Now()
	b.apply(t, v2)
	b.events.wait(t, v1.Id, "the new version serving", func(evs []*satellitev1.Event) bool {
		return slices.Contains(logLines(evs), "redeploy: the new version serves; the previous one stops")
	})
	if got := callVersion(t, b.rt, v1.Id); got != "v2" {
		t.Fatalf("after the redeploy: version %q, want v2", got)
	}
	t.Logf("redeploy (build from a new archive, start, tools/list, switch): %v", time.Since(start).Round(time.Millisecond))
	// The old version still answers the call that held it.
	res, err := lease.Session().CallTool(t.Context(), &mcp.CallToolParams{Name: "version"})
	if err != nil || text(res) != "v1" {
		t.Fatalf("the call held across the redeploy: %v, %v; want v1 from the old server", res, err)
	}
	lease.Release()
	// Calls never saw the instance anything but online.
	for _, s := range statuses(b.events.of(v1.Id)[seen:]) {
		if s != online {
			t.Fatalf("the redeploy took the instance through %v; events:\n%s", s, describe(b.events.of(v1.Id)))
		}
	}

	// A version whose build fails leaves v2 serving, with the build's log and the failure reported.
	v3 := sourceInstance(src.pack(t, "v3.tar.gz", pythonFixture, "fixture_server", map[string]string{"VERSION": "v3"}))
	v3.Source.BuildCommand = "echo compiling; echo 'error: broken on purpose' >&2; exit 7"
	v3.ContentHash = "v3"
	v3.Id = v1.Id
	b.apply(t, v3)
	evs := b.events.wait(t, v1.Id, "the failed redeploy reported", func(evs []*satellitev1.Event) bool {
		for _, ev := range evs {
			if s := ev.GetStatusChanged(); s != nil && strings.Contains(s.GetMessage(), "redeploy failed, the previous version keeps serving") {
				return true
			}
		}
		return false
	})
	if logs := strings.Join(logLines(evs), "\n"); !strings.Contains(logs, "error: broken on purpose") {
		t.Errorf("the build's output is not in the server logs:\n%s", logs)
	}
	if got := callVersion(t, b.rt, v1.Id); got != "v2" {
		t.Fatalf("after a failed redeploy: version %q, want v2 still serving", got)
	}
	if info, _ := b.rt.Instance(v1.Id); info.Status != online || !strings.Contains(info.Message, "exit status 7") {
		t.Fatalf("after a failed redeploy: %v %q; want online, saying why the build failed", info.Status, info.Message)
	}
}

func TestSourceBuildFailureIsAnError(t *testing.T) {
	t.Parallel()
	src := newSources(t)
	b := setup(t, func(c *mcpruntime.Config) { c.Builds = src.builder(t, c.Driver) })
	in := sourceInstance(src.pack(t, "broken.tar.gz", pythonFixture, "fixture_server", nil))
	in.Source.BuildCommand = "exit 3"
	b.apply(t, in)
	info := b.waitStatus(t, in.Id, satellitev1.InstanceStatus_INSTANCE_STATUS_ERROR)
	if !strings.Contains(info.Message, "build failed") {
		t.Fatalf("status message %q", info.Message)
	}
	// A call does not build it again: the same source failed. It is answered from the failed start's status
	// or, once a start is tried again, with the remembered failure, depending on when it comes.
	ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
	defer cancel()
	if _, err := callTool(ctx, b.rt, in.Id, &mcp.CallToolParams{Name: "version"}); err == nil ||
		!strings.Contains(err.Error(), "last build of this source failed") && !strings.Contains(err.Error(), "build failed (exit status 3)") {
		t.Fatalf("a call on a failed build: %v", err)
	}

	// A tampered archive is refused for its checksum.
	bad := sourceInstance(src.pack(t, "tampered.tar.gz", pythonFixture, "fixture_server", nil))
	bad.Source.Sha256 = strings.Repeat("a", 64)
	b.apply(t, in, bad)
	info = b.waitStatus(t, bad.Id, satellitev1.InstanceStatus_INSTANCE_STATUS_ERROR)
	if !strings.Contains(info.Message, "checksum mismatch") {
		t.Fatalf("status message %q", info.Message)
	}
}
