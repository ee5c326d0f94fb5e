package main

import (
	"debug/buildinfo"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/module"
	modzip "golang.org/x/mod/zip"
)

const (
	rootModule = "github.com/orrery/orrery"
	// proxyVersion is the version the working tree is published as in the test's module proxy.
	proxyVersion = "v0.99.0"
)

// TestGoInstall publishes the working tree as a version of the root module in a module proxy on disk and
// installs the control plane, the satellite and orreryctl from it with go install, as someone with only Go would: a
// fresh GOPATH and module cache, no workspace, no network. go install refuses a module whose go.mod
// replaces anything, so this also keeps replace directives out of the root module.
func TestGoInstall(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	proxy := t.TempDir()
	publish(t, root, proxy)

	// Dependencies come from the module cache's download directory, which has the module proxy's layout:
	// every module the root module needs is there once it has been built on this machine.
	cache := strings.TrimSpace(command(t, "go", "env", "GOMODCACHE"))
	home := t.TempDir()
	cmd := exec.CommandContext(t.Context(), "go", "install",
		rootModule+"/services/controlplane@"+proxyVersion, rootModule+"/services/satellite@"+proxyVersion,
		rootModule+"/services/orreryctl@"+proxyVersion)
	cmd.Dir = home
	cmd.Env = append(os.Environ(),
		"GOPATH="+filepath.Join(home, "go"),
		"GOMODCACHE="+filepath.Join(home, "go", "pkg", "mod"),
		"GOBIN="+filepath.Join(home, "bin"),
		"GOPROXY=file://"+proxy+",file://"+filepath.Join(cache, "cache", "download"),
		"GOFLAGS=-modcacherw -trimpath",
		// No checksum database on a machine without network; go.sum in the module still checks every dependency.
		"GOWORK=off", "GOSUMDB=off", "GOTOOLCHAIN=local",
		// As the release builds, so the two share the build cache.
		"CGO_ENABLED=0",
	)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go install: %v\n%s\n(a dependency missing from %s needs `go mod download` in the repository first)",
			err, out, cache)
	}
	for _, name := range []string{"controlplane", "satellite", "orreryctl"} {
		info, err := buildinfo.ReadFile(filepath.Join(home, "bin", name))
		if err != nil {
			t.Fatal(err)
		}
		// internal/buildinfo reports this version when no -ldflags gave one.
		if info.Main.Path != rootModule || info.Main.Version != proxyVersion {
			t.Errorf("%s was built from %s@%s, want %s@%s", name, info.Main.Path, info.Main.Version, rootModule, proxyVersion)
		}
	}
}

// publish writes the working tree's root module into proxy as proxyVersion. The files are the ones git
// would commit (tracked or not ignored), so build output and development data stay out, as they would
// from a tag.
func publish(t *testing.T, root, proxy string) {
	t.Helper()
	var files []modzip.File
	for _, name := range worktreeFiles(t, root) {
		if nestedModule(root, name) {
			continue
		}
		files = append(files, treeFile{root: root, path: name})
	}
	dir := filepath.Join(proxy, rootModule, "@v")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	z, err := os.Create(filepath.Join(dir, proxyVersion+".zip"))
	if err != nil {
		t.Fatal(err)
	}
	defer z.Close()
	if err := modzip.Create(z, module.Version{Path: rootModule, Version: proxyVersion}, files); err != nil {
		t.Fatal(err)
	}
	mod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	info, _ := json.Marshal(map[string]any{"Version": proxyVersion, "Time": time.Now().UTC()})
	for name, data := range map[string][]byte{"list": []byte(proxyVersion + "\n"), proxyVersion + ".mod": mod, proxyVersion + ".info": info} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// nestedModule reports whether name lies in a module of its own below root (tools/, deploy/), which a
// module zip leaves out.
func nestedModule(root, name string) bool {
	for dir := filepath.Dir(name); dir != "." && dir != "/"; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(root, dir, "go.mod")); err == nil {
			return true
		}
	}
	return false
}

// treeFile is a file of the working tree as x/mod/zip reads it.
type treeFile struct{ root, path string }

func (f treeFile) Path() string                 { return f.path }
func (f treeFile) Lstat() (os.FileInfo, error)  { return os.Lstat(filepath.Join(f.root, f.path)) }
func (f treeFile) Open() (io.ReadCloser, error) { return os.Open(filepath.Join(f.root, f.path)) }
