package sandbox_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/orrery/orrery/internal/filelock"
	"github.com/orrery/orrery/internal/mcptest"
	"github.com/orrery/orrery/services/satellite/internal/sandbox"
)

// newBwrap returns a Bwrap driver with homes in a fresh directory; bwrap is installed when missing and the
// test runs as root, and the test fails when it cannot be had.
func newBwrap(t *testing.T, cfg sandbox.BwrapConfig) *sandbox.Bwrap {
	t.Helper()
	path, err := sandbox.FindBwrap(t.Context(), nil, true)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Path = path
	if cfg.HomeRoot == "" {
		cfg.HomeRoot = t.TempDir()
	}
	b, err := sandbox.NewBwrap(nil, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// run starts script in b's sandbox for spec and returns its output once it exited.
func run(t *testing.T, b *sandbox.Bwrap, spec sandbox.Spec, script string) (*sandbox.Process, string) {
	t.Helper()
	spec.Command, spec.Args = "sh", []string{"-c", script}
	p, err := b.Start(spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(0) })
	out, err := io.ReadAll(p.Stdout)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	case <-time.After(waitLimit):
		t.Fatal("the sandboxed process did not exit")
	}
	if errOut, _ := io.ReadAll(p.Stderr); len(errOut) > 0 {
		t.Logf("stderr: %s", errOut)
	}
	return p, string(out)
}

func TestBwrapTeamsSeeOnlyTheirOwnHome(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	homes := filepath.Join(root, "homes")
	key := filepath.Join(root, "state", "satellite.key")
	if err := os.MkdirAll(filepath.Dir(key), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, []byte("satellite-private-key"), 0o600); err != nil {
		t.Fatal(err)
	}
	b := newBwrap(t, sandbox.BwrapConfig{HomeRoot: homes})
	_, out := run(t, b, sandbox.Spec{TeamID: "team-b"}, `echo team-b-secret > "$HOME/b.txt" && echo ok`)
	if strings.TrimSpace(out) != "ok" {
		t.Fatalf("team B could not write its home: %q", out)
	}
	bHome, _ := b.Home(sandbox.Spec{TeamID: "team-b"})
	if data, err := os.ReadFile(filepath.Join(bHome, "b.txt")); err != nil || string(data) != "team-b-secret\n" {
		t.Fatalf("team B's file on the host: %q, %v", data, err)
	}

	script := `cat ` + key + ` ` + filepath.Join(bHome, "b.txt") + ` ` + homes + `/team-b/home/b.txt 2>&1
ls ` + homes + ` ` + filepath.Dir(key) + ` 2>&1
cat /home/*/b.txt 2>&1; ls -a "$HOME" /home /tmp; grep CapEff /proc/self/status; echo end`
	_, out = run(t, b, sandbox.Spec{TeamID: "team-a"}, script)
	for _, secret := range []string{"satellite-private-key", "team-b-secret"} {
		if strings.Contains(out, secret) {
			t.Errorf("team A saw %q:\n%s", secret, out)
		}
	}
	// Root in the sandbox, if the satellite is root, is root without capabilities.
	if !strings.Contains(out, "CapEff:\t0000000000000000\n") {
		t.Errorf("the sandbox keeps capabilities:\n%s", out)
	}
	if !strings.HasSuffix(out, "end\n") {
		t.Errorf("team A's script did not finish:\n%s", out)
	}

	// Per-user homes are apart from each other and from the team's.
	_, out = run(t, b, sandbox.Spec{TeamID: "team-b", UserID: "alice"}, `ls "$HOME"; echo end`)
	if out != "end\n" {
		t.Errorf("alice's home is not her own: %q", out)
	}
}

// Not parallel: it sets an environment variable of the test process, standing in for the satellite's.
func TestBwrapRefusesBlockedEnvironment(t *testing.T) {
	b := newBwrap(t, sandbox.BwrapConfig{})
	for _, name := range []string{"LD_PRELOAD", "LD_LIBRARY_PATH", "NODE_OPTIONS", "PYTHONPATH", "PYTHONSTARTUP", "BASH_ENV", "ENV", "PERL5OPT", "RUBYOPT", "ld_audit", "HOME"} {
		_, err := b.Start(sandbox.Spec{TeamID: "t", Command: "true", Env: map[string]string{name: "/tmp/evil", "FINE": "1"}})
		if !errors.Is(err, sandbox.ErrBlockedEnv) || !strings.Contains(err.Error(), name) {
			t.Errorf("Start with %s: %v, want ErrBlockedEnv naming it", name, err)
		}
	}
	t.Setenv("SATELLITE_SECRET", "do-not-pass") // the satellite's own variables stay out
	_, out := run(t, b, sandbox.Spec{TeamID: "t", Env: map[string]string{"FINE": "1"}}, `env | sort`)
	if !strings.Contains(out, "FINE=1\n") || strings.Contains(out, "SATELLITE_SECRET") || strings.Contains(out, sandbox.OwnerEnv) {
		t.Errorf("environment in the sandbox:\n%s", out)
	}
}

func TestBwrapSatelliteLoopbackUnreachable(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	b := newBwrap(t, sandbox.BwrapConfig{})
	script := `const s = require("net").connect(` + port + `, "127.0.0.1");
s.on("connect", () => { console.log("connected"); process.exit(0); });
s.on("error", (e) => { console.log("error " + e.code); process.exit(0); });`
	// With the network or without, the satellite's loopback is not the sandbox's (TestHostileTenantNetwork
	// attacks the rest).
	for _, tc := range []struct {
		network bool
		want    string
	}{{false, "error ECONNREFUSED"}, {true, "error ECONNREFUSED"}} {
		p, err := b.Start(sandbox.Spec{TeamID: "t", Network: tc.network, Command: "node", Args: []string{"-e", script},
			Limits: &sandbox.Limits{CPU: 1}})
		if err != nil {
			t.Fatal(err)
		}
		out, _ := io.ReadAll(p.Stdout)
		p.Stop(time.Second)
		if strings.TrimSpace(string(out)) != tc.want {
			t.Errorf("network %v: %q, want %q", tc.network, out, tc.want)
		}
	}
}

func TestBwrapRlimits(t *testing.T) {
	t.Parallel()
	b := newBwrap(t, sandbox.BwrapConfig{Limits: sandbox.Limits{CPUTime: time.Second, CPU: 1, FileSizeBytes: 1 << 20, OpenFiles: 64}})
	for _, tc := range []struct {
		name, script, reason, out, kill string
	}{
		{"CPU spinner", `while :; do :; done`, "killed: CPU time limit exceeded (1s of CPU time)", "", sandbox.KillCPUTime},
		{"CPU spinner ignoring SIGXCPU", `trap '' XCPU; while :; do :; done`, "killed: CPU time limit exceeded (1s of CPU time; SIGXCPU ignored)", "", sandbox.KillCPUTime},
		{"big file", `exec head -c 2000000 /dev/zero >"$HOME/big"`, "killed: file size limit exceeded (1 MiB per file)", "", sandbox.KillFileSize},
		{"open files", `ulimit -n`, "", "64\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, out := run(t, b, sandbox.Spec{TeamID: "t"}, tc.script)
			if p.Reason() != tc.reason || out != tc.out || p.KillReason() != tc.kill {
				t.Errorf("ended with %s, reason %q (kill %q), output %q; want reason %q (kill %q), output %q", p.ExitStatus(),
					p.Reason(), p.KillReason(), out, tc.reason, tc.kill, tc.out)
			}
		})
	}
}

func TestBwrapProcessLimit(t *testing.T) {
	t.Parallel()
	b := newBwrap(t, sandbox.BwrapConfig{Limits: sandbox.Limits{Processes: 20, CPU: 1}})
	if !b.Enforced().Processes {
		t.Fatal("the process count cannot be limited here: no pids cgroup and running as root")
	}
	// A subshell starts sleepers until a fork fails, which ends it; the sandbox's shell then counts what runs
	// in the sandbox's PID namespace with builtins only, since it cannot fork either.
	p, out := run(t, b, sandbox.Spec{TeamID: "t"}, `(while :; do sleep 30 & done) 2>/dev/null; set -- /proc/[0-9]*; echo $#`)
	n, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		t.Fatalf("output %q (%s)", out, p.ExitStatus())
	}
	if n > 20 {
		t.Errorf("%d processes ran in the sandbox, limit 20", n)
	}
	if want := "process limit reached (20 processes)"; p.Reason() != want {
		t.Errorf("reason %q, want %q", p.Reason(), want)
	}
	t.Logf("%d processes in the sandbox", n)
}

func TestBwrapMemoryLimit(t *testing.T) {
	t.Parallel()
	b := newBwrap(t, sandbox.BwrapConfig{Limits: sandbox.Limits{MemoryBytes: 32 << 20, CPU: 1}})
	if !b.Enforced().Memory {
		t.Logf("memory not enforced here (%+v)", b.Enforced())
		return
	}
	begin := time.Now()
	p, _ := run(t, b, sandbox.Spec{TeamID: "t"}, `exec tail /dev/zero`)
	if want := "killed: out of memory (memory limit 32 MiB)"; p.Reason() != want || p.KillReason() != sandbox.KillMemory {
		t.Errorf("the hog ended with %s, reason %q", p.ExitStatus(), p.Reason())
	}
	t.Logf("hog ended after %v: %s (%s); enforced %+v", time.Since(begin), p.ExitStatus(), p.Reason(), b.Enforced())
}

func TestBwrapRunsServerEverything(t *testing.T) {
	t.Parallel()
	node, args := mcptest.Everything(t)
	// The package's install directory is all the server needs beyond the system.
	b := newBwrap(t, sandbox.BwrapConfig{ReadOnly: []string{mcptest.EverythingDir(t)}})
	begin := time.Now()
	p, err := b.Start(sandbox.Spec{TeamID: "t", Command: node, Args: args, Limits: &sandbox.Limits{CPU: 1}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(time.Second) })
	go func() {
		sc := bufio.NewScanner(p.Stderr)
		for sc.Scan() {
			t.Logf("server: %s", sc.Text())
		}
	}()
	client := mcp.NewClient(&mcp.Implementation{Name: "sandbox-test", Version: "0"}, nil)
	session, err := client.Connect(t.Context(), &mcp.IOTransport{Reader: p.Stdout, Writer: p.Stdin}, nil)
	if err != nil {
		t.Fatalf("initialize: %v (%s)", err, p.ExitStatus())
	}
	defer session.Close()
	tools, err := session.ListTools(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(tools.Tools) == 0 {
		t.Fatal("no tools")
	}
	t.Logf("%d tools, online after %v", len(tools.Tools), time.Since(begin))
}

func TestBwrapStopLeavesNothing(t *testing.T) {
	t.Parallel()
	b := newBwrap(t, sandbox.BwrapConfig{})
	p, err := b.Start(sandbox.Spec{TeamID: "t", Command: "sh", Args: []string{"-c", `sleep 1000 & echo up; exec sleep 1000`}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(0) })
	if line, err := bufio.NewReader(p.Stdout).ReadString('\n'); err != nil || line != "up\n" {
		t.Fatalf("read %q, %v", line, err)
	}
	procs := tree(p.Pid())
	if len(procs) < 4 { // bwrap, bwrap's pid 1, sleep, sleep
		t.Fatalf("only %d processes in the sandbox's tree", len(procs))
	}
	p.Stop(time.Second)
	for pid := range procs {
		waitGone(t, "process of a stopped sandbox", pid)
	}
}

// TestBwrapNpxFindsItsCacheInTheTeamHome runs server-everything the way catalog entries usually do, through
// npx: the package lands in the npm cache in the team's home, and a second start finds it there with the
// network cut off (npm told to stay offline, as a template without network would). The homes are kept between test runs, under the user's cache directory, so that only a
// machine's first run downloads the package.
func TestBwrapNpxFindsItsCacheInTheTeamHome(t *testing.T) {
	t.Parallel()
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	homes := filepath.Join(cache, "orrery-test", "sandbox-homes")
	if err := os.MkdirAll(homes, 0o755); err != nil {
		t.Fatal(err)
	}
	// Test processes of several checkouts may share the homes; npm would trip over a second npm.
	unlock, err := filelock.Lock(homes + ".lock")
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	b := newBwrap(t, sandbox.BwrapConfig{HomeRoot: homes})
	pkg := "@modelcontextprotocol/server-everything@" + mcptest.EverythingVersion
	// npm needs more than the default 100 MiB to install a package; a template that runs npx says so.
	limits := &sandbox.Limits{MemoryBytes: 512 << 20}
	for _, network := range []bool{true, false} {
		args := []string{"-y", pkg, "stdio"}
		if !network {
			// Without it npm spends a minute retrying the registry before it settles for its cache.
			args = append([]string{"--offline"}, args...)
		}
		begin := time.Now()
		p, err := b.Start(sandbox.Spec{TeamID: "npx-team", Network: network, Command: "npx", Args: args, Limits: limits})
		if err != nil {
			t.Fatal(err)
		}
		stderr := make(chan []byte, 1)
		go func() {
			out, _ := io.ReadAll(io.LimitReader(p.Stderr, 16<<10))
			stderr <- out
		}()
		client := mcp.NewClient(&mcp.Implementation{Name: "sandbox-test", Version: "0"}, nil)
		session, err := client.Connect(t.Context(), &mcp.IOTransport{Reader: p.Stdout, Writer: p.Stdin}, nil)
		if err != nil {
			p.Stop(time.Second)
			t.Fatalf("network %v: initialize: %v (%s, %s)\n%s", network, err, p.ExitStatus(), p.Reason(), <-stderr)
		}
		tools, err := session.ListTools(t.Context(), nil)
		if err != nil || len(tools.Tools) == 0 {
			t.Fatalf("network %v: tools/list: %v", network, err)
		}
		t.Logf("network %v: %d tools, online after %v", network, len(tools.Tools), time.Since(begin).Round(time.Millisecond))
		_ = session.Close()
		p.Stop(time.Second)

		home, _ := b.Home(sandbox.Spec{TeamID: "npx-team"})
		if _, err := os.Stat(filepath.Join(home, ".npm", "_npx")); err != nil {
			t.Fatalf("npx's cache is not in the team's home: %v", err)
		}
	}
}

// TestBwrapRemoveUserHome removes one member's home and nothing beside it.
func TestBwrapRemoveUserHome(t *testing.T) {
	t.Parallel()
	b := newBwrap(t, sandbox.BwrapConfig{})
	gone := sandbox.Spec{TeamID: "team-a", UserID: "user-1"}
	kept := []sandbox.Spec{{TeamID: "team-a"}, {TeamID: "team-a", UserID: "user-2"}, {TeamID: "team-b", UserID: "user-1"}}
	for _, spec := range append([]sandbox.Spec{gone}, kept...) {
		if _, out := run(t, b, spec, `echo data > "$HOME/file" && echo ok`); out != "ok\n" {
			t.Fatalf("%+v wrote %q", spec, out)
		}
	}
	if err := b.RemoveUserHome(gone.TeamID, gone.UserID); err != nil {
		t.Fatal(err)
	}
	if home, _ := b.Home(gone); exists(home) {
		t.Errorf("%s still exists", home)
	}
	for _, spec := range kept {
		if home, _ := b.Home(spec); !exists(filepath.Join(home, "file")) {
			t.Errorf("%+v lost its home %s", spec, home)
		}
	}
	if err := b.RemoveUserHome("team-a", "../team-b"); err == nil {
		t.Error("a user id with a path in it was accepted")
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// TestBwrapResolvesCommandsInside names, as a template could, a path that exists nowhere and host files the
// sandbox does not show, an executable one among them: Start looks at none of them on the host, and each
// sandbox ends alike, bwrap saying on stderr that it found nothing to run.
func TestBwrapResolvesCommandsInside(t *testing.T) {
	t.Parallel()
	b := newBwrap(t, sandbox.BwrapConfig{})
	hostDir := t.TempDir()
	hostTool := filepath.Join(hostDir, "tool")
	if err := os.WriteFile(hostTool, []byte("#!/bin/sh\necho ran on the host\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	type outcome struct {
		code   int
		stderr string
	}
	results := map[string]outcome{}
	for _, cmd := range []string{filepath.Join(hostDir, "missing"), hostTool, "/etc/shadow", "/root/.bashrc"} {
		p, err := b.Start(sandbox.Spec{TeamID: "team-a", Command: cmd})
		if err != nil {
			t.Fatalf("Start(%q): %v; the sandbox, not the host, decides", cmd, err)
		}
		t.Cleanup(func() { p.Stop(0) })
		stdout, _ := io.ReadAll(p.Stdout)
		stderr, _ := io.ReadAll(p.Stderr)
		select {
		case <-p.Done():
		case <-time.After(waitLimit):
			t.Fatalf("%q: the sandbox did not exit", cmd)
		}
		if len(stdout) > 0 {
			t.Errorf("%q ran: %q", cmd, stdout)
		}
		results[cmd] = outcome{p.ExitCode(), strings.ReplaceAll(string(stderr), cmd, "CMD")}
	}
	want := results[filepath.Join(hostDir, "missing")]
	if want.code == 0 || !strings.Contains(want.stderr, "CMD") {
		t.Fatalf("a missing command: %+v, want a failure naming it", want)
	}
	for cmd, got := range results {
		if got != want {
			t.Errorf("%q: %+v, want the same as for a missing command: %+v", cmd, got, want)
		}
	}
}
