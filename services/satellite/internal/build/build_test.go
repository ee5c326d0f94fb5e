package build

import (
	"context"
	"crypto/rand"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
)

// newBuilder returns a Builder downloading from srv, with limits small enough for the attacker's tests.
func newBuilder(t *testing.T, srv *archiveServer, cfg Config) *Builder {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	if cfg.HTTPClient == nil && srv != nil {
		cfg.HTTPClient = srv.client()
	}
	b, err := New(nil, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// logLines collects a build's log.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) add(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, line)
}

func (l *logLines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

func TestBuildRefusesBadSources(t *testing.T) {
	t.Parallel()
	srv := newArchiveServer(t)
	small := tarGz(t, member{name: "server.sh", body: "#!/bin/sh\n"})
	url, sum := srv.put("/small.tar.gz", small)
	noise := make([]byte, 64<<10)
	_, _ = rand.Read(noise) // incompressible: the limit counts the download, before decompression
	bigURL, bigSum := srv.put("/big.tar.gz", tarGz(t, member{name: "big", body: string(noise)}))
	for _, tc := range []struct {
		name string
		cfg  Config
		src  *satellitev1.Source
		want error
		text string
	}{
		{"checksum mismatch", Config{}, &satellitev1.Source{Url: url, Sha256: strings.Repeat("0", 64)}, ErrChecksum, "the template expects"},
		{"archive too large", Config{MaxArchiveBytes: 1024}, &satellitev1.Source{Url: bigURL, Sha256: bigSum}, ErrUnsafeArchive, "larger than 1024 bytes"},
		{"plain http", Config{}, &satellitev1.Source{Url: strings.Replace(url, "https:", "http:", 1), Sha256: sum}, nil, "must be https"},
		{"not found", Config{}, &satellitev1.Source{Url: srv.URL + "/nothing.tar.gz", Sha256: sum}, nil, "404"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := newBuilder(t, srv, tc.cfg)
			_, err := b.Build(t.Context(), Request{TeamID: "team-a", Source: tc.src})
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("Build: got %v, want %v saying %q", err, tc.want, tc.text)
			}
			if list, _ := os.ReadDir(b.cfg.Dir); len(list) != 0 {
				t.Errorf("a refused build left %v behind", list)
			}
		})
	}
	t.Run("loopback under the default egress policy", func(t *testing.T) {
		t.Parallel()
		// The satellite's own surroundings are out of reach unless the operator allows them.
		b := newBuilder(t, nil, Config{})
		_, err := b.Build(t.Context(), Request{TeamID: "team-a", Source: &satellitev1.Source{Url: url, Sha256: sum}})
		if err == nil || !strings.Contains(err.Error(), "egress policy forbids") {
			t.Fatalf("Build: got %v, want the egress policy's refusal", err)
		}
	})
}

func TestBuildIsCachedPerTeamAndPruned(t *testing.T) {
	t.Parallel()
	srv := newArchiveServer(t)
	b := newBuilder(t, srv, Config{Keep: 1})
	src := func(name string) *satellitev1.Source {
		url, sum := srv.put("/"+name+".tar.gz", tarGz(t, member{name: "pkg/" + name + ".sh", body: "#!/bin/sh\n"}))
		return &satellitev1.Source{Url: url, Sha256: sum}
	}
	one := src("one")
	first, err := b.Build(t.Context(), Request{TeamID: "team-a", Source: one})
	if err != nil {
		t.Fatal(err)
	}
	if first.Cached || filepath.Base(first.Dir) != "pkg" {
		t.Fatalf("first build: cached %v in %s; want a new build in the archive's top directory", first.Cached, first.Dir)
	}
	again, err := b.Build(t.Context(), Request{TeamID: "team-a", Source: one})
	if err != nil || !again.Cached || again.Dir != first.Dir {
		t.Fatalf("second build of the same archive: %+v, %v; want the cached one", again, err)
	}
	// Another team with the very same archive gets a build of its own, never team-a's tree.
	other, err := b.Build(t.Context(), Request{TeamID: "team-b", Source: one})
	if err != nil || other.Cached || other.Dir == first.Dir {
		t.Fatalf("another team's build: %+v, %v; want a build of its own", other, err)
	}
	first.Release()
	again.Release()
	other.Release()
	// Two more builds: with Keep 1, only the newest unused builds stay, and the one in use.
	two, err := b.Build(t.Context(), Request{TeamID: "team-a", Source: src("two")})
	if err != nil {
		t.Fatal(err)
	}
	defer two.Release()
	list, _ := os.ReadDir(b.cfg.Dir)
	if len(list) != 2 {
		t.Fatalf("after pruning with Keep 1: %d builds, want 2 (the one in use and the newest other)", len(list))
	}
	if _, err := os.Stat(two.Dir); err != nil {
		t.Fatalf("the build in use was pruned: %v", err)
	}
}

func TestBuildFailureReportsItsLog(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("npm"); err != nil {
		t.Skip("npm not found")
	}
	srv := newArchiveServer(t)
	url, sum := srv.put("/failing.tar.gz", dirArchive(t, "testdata/failing-build", nil))
	b := newBuilder(t, srv, Config{})
	var log logLines
	_, err := b.Build(t.Context(), Request{TeamID: "team-a", Source: &satellitev1.Source{Url: url, Sha256: sum}, Log: log.add, Network: true})
	if err == nil || !strings.Contains(err.Error(), "meant to fail") || !strings.Contains(err.Error(), "exit status") {
		t.Fatalf("Build: got %v, want the failure with the end of its log", err)
	}
	if !strings.Contains(log.String(), "compiling...") || !strings.Contains(log.String(), "npm run build") {
		t.Errorf("the build log lacks the build's output:\n%s", log.String())
	}
	if list, _ := os.ReadDir(b.cfg.Dir); len(list) != 0 {
		t.Errorf("a failed build is cached: %v", list)
	}
}

func TestBuildExplicitCommand(t *testing.T) {
	t.Parallel()
	srv := newArchiveServer(t)
	url, sum := srv.put("/cmd.tar.gz", tarGz(t, member{name: "in.txt", body: "hello"}))
	b := newBuilder(t, srv, Config{})
	res, err := b.Build(t.Context(), Request{TeamID: "team-a",
		Source: &satellitev1.Source{Url: url, Sha256: sum, BuildCommand: "tr a-z A-Z < in.txt > out.txt"}})
	if err != nil {
		t.Fatal(err)
	}
	defer res.Release()
	if out, err := os.ReadFile(filepath.Join(res.Dir, "out.txt")); err != nil || string(out) != "HELLO" {
		t.Fatalf("the build command's output: %q, %v", out, err)
	}
}

// listTools starts command in dir like a stdio server and returns the names of its tools and what its
// version tool answers.
func listTools(t *testing.T, dir string, command ...string) ([]string, string) {
	t.Helper()
	cmd := exec.Command(command[0], command[1:]...)
	if strings.Contains(command[0], "/") {
		cmd.Path = filepath.Join(dir, command[0])
	}
	cmd.Dir = dir
	session, err := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "1"}, nil).
		Connect(t.Context(), &mcp.CommandTransport{Command: cmd}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer session.Close()
	tools, err := session.ListTools(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tool := range tools.Tools {
		names = append(names, tool.Name)
	}
	res, err := session.CallTool(t.Context(), &mcp.CallToolParams{Name: "version"})
	if err != nil {
		t.Fatal(err)
	}
	return names, res.Content[0].(*mcp.TextContent).Text
}

func TestBuildNodeServer(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("npm"); err != nil {
		t.Skip("npm not found")
	}
	srv := newArchiveServer(t)
	url, sum := srv.put("/node.tar.gz", dirArchive(t, "testdata/node-server", map[string]string{"VERSION": "v1"}))
	b := newBuilder(t, srv, Config{})
	src := &satellitev1.Source{Url: url, Sha256: sum}
	var log logLines
	start := time.Now()
	res, err := b.Build(t.Context(), Request{TeamID: "team-a", Source: src, Log: log.add, Network: true})
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	built := time.Since(start)
	tools, version := listTools(t, res.Dir, "node", "dist/server.js")
	cold := time.Since(start)
	res.Release()
	if len(tools) != 1 || tools[0] != "version" || version != "v1" {
		t.Fatalf("the built server lists %v and answers %q; want [version] and v1", tools, version)
	}
	start = time.Now()
	res, err = b.Build(t.Context(), Request{TeamID: "team-a", Source: src, Network: true})
	if err != nil || !res.Cached {
		t.Fatalf("second build: %+v, %v; want the cached one", res, err)
	}
	listTools(t, res.Dir, "node", "dist/server.js")
	cached := time.Since(start)
	res.Release()
	t.Logf("Node fixture: build %v, build and first tools/list %v cold; %v cached", built.Round(time.Millisecond),
		cold.Round(time.Millisecond), cached.Round(time.Millisecond))
}

func TestBuildPythonServer(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 not found")
	}
	srv := newArchiveServer(t)
	url, sum := srv.put("/python.tar.gz", dirArchive(t, "testdata/python-server", nil))
	src := &satellitev1.Source{Url: url, Sha256: sum}
	command := []string{".venv/bin/fixture-server"}
	// The detected build installs the project into a venv with pip, without build isolation, so that
	// nothing is downloaded; that needs a setuptools that builds wheels (with the wheel package, or 70.1
	// and later). Where the system has none, the template's own command makes the venv and the server
	// runs as a module of the tree: the fallback such a template would use.
	if exec.Command("python3", "-c", "import setuptools, wheel").Run() != nil {
		t.Log("python3 cannot build wheels offline here: building with an explicit command")
		src.BuildCommand = "python3 -m venv --system-site-packages .venv"
		command = []string{".venv/bin/python", "-m", "fixture_server"}
	}
	b := newBuilder(t, srv, Config{})
	var log logLines
	res, err := b.Build(t.Context(), Request{TeamID: "team-a", Source: src, Log: log.add})
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	defer res.Release()
	tools, version := listTools(t, res.Dir, command...)
	if len(tools) != 1 || tools[0] != "version" || version != "python-1" {
		t.Fatalf("the built server lists %v and answers %q", tools, version)
	}
}

func TestPlanDetectsTheRuntime(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		files   map[string]string
		command string
		want    string
	}{
		{map[string]string{"package.json": `{"scripts":{"build":"tsc"}}`, "package-lock.json": "{}"}, "", "npm ci --no-audit --no-fund && npm run build"},
		{map[string]string{"package.json": `{}`}, "", "npm install --no-audit --no-fund"},
		{map[string]string{"pyproject.toml": ""}, "", "uv sync"},
		{map[string]string{"go.mod": "module x"}, "", "go build -trimpath -o bin/server ."},
		{map[string]string{"go.mod": "module x"}, "make", "make"},
		{map[string]string{"server.py": ""}, "", ""},
	} {
		dir := t.TempDir()
		for name, body := range tc.files {
			_ = os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644)
		}
		script, _, err := plan(dir, tc.command)
		if err != nil || !strings.Contains(script, tc.want) || (tc.want == "" && script != "") {
			t.Errorf("plan(%v, %q) = %q, %v; want %q", tc.files, tc.command, script, err, tc.want)
		}
	}
}

func TestBuildFromAnUploadedArchive(t *testing.T) {
	t.Parallel()
	archive := tarGz(t, member{name: "pkg/in.txt", body: "uploaded"})
	sum := sha256Hex(archive)
	var asked []string
	b := newBuilder(t, nil, Config{Uploaded: func(_ context.Context, teamID, digest string) ([]byte, error) {
		asked = append(asked, teamID+"/"+digest)
		if digest == sum {
			return archive, nil
		}
		return []byte("not what was asked for"), nil
	}})
	res, err := b.Build(t.Context(), Request{TeamID: "team-a", Source: &satellitev1.Source{Uploaded: true, Sha256: sum}})
	if err != nil {
		t.Fatal(err)
	}
	defer res.Release()
	if got, err := os.ReadFile(filepath.Join(res.Dir, "in.txt")); err != nil || string(got) != "uploaded" {
		t.Fatalf("the uploaded tree: %q, %v", got, err)
	}
	if len(asked) != 1 || asked[0] != "team-a/"+sum {
		t.Fatalf("asked the control plane for %v", asked)
	}
	// What the control plane hands over is checked like a download.
	_, err = b.Build(t.Context(), Request{TeamID: "team-a", Source: &satellitev1.Source{Uploaded: true, Sha256: strings.Repeat("1", 64)}})
	if !errors.Is(err, ErrChecksum) {
		t.Fatalf("a mismatched upload: %v", err)
	}
}
