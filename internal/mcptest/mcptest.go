// Package mcptest provides real MCP servers for tests: the reference server
// @modelcontextprotocol/server-everything, over stdio, Streamable HTTP and legacy SSE.
//
// The server is installed with npm once per machine into a cache directory
// (os.UserCacheDir()/orrery-test/npm, which honours XDG_CACHE_HOME), under a file lock so that test
// processes of several packages never race, and run with node from there: no npx, no network after the
// first install. Tests that need it fail, with a hint, when node or npm is missing; they never skip.
//
//	command, args := mcptest.Everything(t)      // run it over stdio yourself
//	endpoint := mcptest.EverythingHTTP(t)       // or talk to a running Streamable HTTP server
//
// TaskServer builds the repo's own fixture server with tasks in the experimental 2025-11-25 form (package
// taskserver), which no installable server offers with the tools the conformance suite's tasks scenarios call.
package mcptest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/orrery/orrery/internal/filelock"
)

// EverythingVersion is the pinned version of @modelcontextprotocol/server-everything.
const EverythingVersion = "2026.8.31"

const (
	everythingPackage = "@modelcontextprotocol/server-everything"
	// entryPoint is the package's bin entry (mcp-server-everything), relative to the install prefix.
	entryPoint = "node_modules/@modelcontextprotocol/server-everything/dist/index.js"
	// installedMarker is written after a complete install, so an interrupted one is redone.
	installedMarker = ".installed"
	nodeHint        = "MCP server tests need Node.js 18 or newer with npm on PATH: install them (e.g. " +
		"`apt-get install nodejs npm`, or from https://nodejs.org) and run the tests again"
	startTimeout = 30 * time.Second
)

var install struct {
	sync.Mutex
	node, script string
	err          error
}

// Everything returns a command line that runs server-everything over stdio, installing it first if needed.
func Everything(t testing.TB) (command string, args []string) {
	t.Helper()
	node, script := installed(t)
	return node, []string{script, "stdio"}
}

// EverythingDir returns the directory server-everything is installed in, installing it first if needed:
// what a sandbox must show, read-only, for the command line Everything returns to run inside it.
func EverythingDir(t testing.TB) string {
	t.Helper()
	_, script := installed(t)
	return strings.TrimSuffix(script, "/"+entryPoint)
}

// EverythingHTTP starts server-everything's Streamable HTTP transport on a free loopback port for the rest
// of the test and returns its endpoint URL.
func EverythingHTTP(t testing.TB) string {
	t.Helper()
	return serve(t, "streamableHttp", "/mcp")
}

// EverythingSSE starts server-everything's legacy HTTP+SSE transport on a free loopback port for the rest
// of the test and returns its SSE endpoint URL.
func EverythingSSE(t testing.TB) string {
	t.Helper()
	return serve(t, "sse", "/sse")
}

// installed returns the node binary and the server's entry point, installing the package on first use.
func installed(t testing.TB) (node, script string) {
	t.Helper()
	install.Lock()
	defer install.Unlock()
	if install.node == "" && install.err == nil {
		install.node, install.script, install.err = doInstall()
	}
	if install.err != nil {
		t.Fatalf("mcptest: %v", install.err)
	}
	return install.node, install.script
}

func doInstall() (node, script string, err error) {
	node, err = exec.LookPath("node")
	if err != nil {
		return "", "", fmt.Errorf("node not found: %s", nodeHint)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "orrery-test", "npm", "server-everything-"+EverythingVersion)
	script = filepath.Join(dir, entryPoint)
	if _, err := os.Stat(filepath.Join(dir, installedMarker)); err == nil {
		return node, script, nil
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", "", fmt.Errorf("cache directory: %w", err)
	}
	unlock, err := filelock.Lock(dir + ".lock")
	if err != nil {
		return "", "", err
	}
	defer unlock()
	if _, err := os.Stat(filepath.Join(dir, installedMarker)); err == nil {
		return node, script, nil // another test process installed it while we waited
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		return "", "", fmt.Errorf("npm not found: %s", nodeHint)
	}
	if err := os.RemoveAll(dir); err != nil {
		return "", "", fmt.Errorf("remove an incomplete install: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "install", "--prefix", dir, "--no-audit", "--no-fund",
		"--no-save", "--loglevel=error", everythingPackage+"@"+EverythingVersion)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("npm install %s@%s into %s: %w\n%s\n(needs the npm registry once; %s)",
			everythingPackage, EverythingVersion, dir, err, out, nodeHint)
	}
	if _, err := os.Stat(script); err != nil {
		return "", "", fmt.Errorf("npm installed %s, but its entry point is missing: %w", everythingPackage, err)
	}
	if err := os.WriteFile(filepath.Join(dir, installedMarker), []byte(EverythingVersion+"\n"), 0o644); err != nil {
		return "", "", err
	}
	return node, script, nil
}

// serve runs server-everything in transport mode on a free port until the test ends. The server reads its
// port from PORT and cannot be given port 0, so a port is picked here; another process could take it in
// between, in which case the server exits and serve tries another.
func serve(t testing.TB, mode, path string) string {
	t.Helper()
	node, script := installed(t)
	// Parallel tests of this process must not pick the same free port before either server binds it.
	startMu.Lock()
	defer startMu.Unlock()
	var lastErr error
	for range 3 {
		port, err := freePort()
		if err != nil {
			t.Fatalf("mcptest: %v", err)
		}
		stop, err := startServer(node, script, mode, port)
		if err != nil {
			lastErr = err
			continue
		}
		t.Cleanup(stop)
		return "http://127.0.0.1:" + strconv.Itoa(port) + path
	}
	t.Fatalf("mcptest: start server-everything %s: %v", mode, lastErr)
	return ""
}

var startMu sync.Mutex

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick a port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// startServer starts the server and waits until it accepts connections.
func startServer(node, script, mode string, port int) (stop func(), err error) {
	cmd := exec.Command(node, script, mode)
	cmd.Env = append(os.Environ(), "PORT="+strconv.Itoa(port))
	// Its own group, so stop reaches everything it starts; killed with the test process where the OS can.
	cmd.SysProcAttr = procAttr()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	var tail lastLines
	done := make(chan struct{})
	started := make(chan error, 1)
	go func() {
		// The parent-death signal follows the forking thread: keep it alive as long as the server.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		tail.consume(stderr)
		_ = cmd.Wait()
		close(done)
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	stop = func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}
	deadline := time.Now().Add(startTimeout)
	for {
		conn, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
		if err == nil {
			_ = conn.Close()
			// Another process may have taken the port first, in which case the answer came from it and
			// this server is about to exit with EADDRINUSE: give it a moment to show that.
			select {
			case <-done:
				return nil, fmt.Errorf("server exited (port %d taken?): %s", port, tail.String())
			case <-time.After(100 * time.Millisecond):
				return stop, nil
			}
		}
		select {
		case <-done:
			return nil, fmt.Errorf("server exited: %s", tail.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			return nil, fmt.Errorf("server did not listen on port %d within %v: %s", port, startTimeout, tail.String())
		}
	}
}

// lastLines keeps the last lines a server wrote, to explain a failed start.
type lastLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *lastLines) consume(r io.Reader) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		l.mu.Lock()
		l.lines = append(l.lines, sc.Text())
		if len(l.lines) > 20 {
			l.lines = l.lines[1:]
		}
		l.mu.Unlock()
	}
	if err := sc.Err(); err != nil && !errors.Is(err, os.ErrClosed) {
		l.mu.Lock()
		l.lines = append(l.lines, "(reading stderr: "+err.Error()+")")
		l.mu.Unlock()
	}
}

func (l *lastLines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}
