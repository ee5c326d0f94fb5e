package sandbox_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/orrery/orrery/services/satellite/internal/sandbox"
)

const (
	// crashChildEnv makes the test binary act as a satellite that starts a server and waits to be killed.
	crashChildEnv = "SANDBOX_TEST_CRASH_CHILD_OWNER"
	waitLimit     = 10 * time.Second
)

func TestMain(m *testing.M) {
	if playRole() {
		return
	}
	if owner := os.Getenv(crashChildEnv); owner != "" {
		crashChild(owner)
		return
	}
	os.Exit(m.Run())
}

// crashChild starts a server with a helper process, reports both pids and waits to be killed.
func crashChild(owner string) {
	p, err := sandbox.Direct{Owner: owner}.Start(sandbox.Spec{Command: "sh", Args: []string{"-c", helperScript}})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	helper, err := bufio.NewReader(p.Stdout).ReadString('\n')
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	fmt.Printf("%d %s", p.Pid(), helper)
	select {}
}

// helperScript starts a helper in the background, prints its pid, and turns into a long-running server.
const helperScript = `sleep 1000 & echo $!; exec sleep 1000`

func start(t *testing.T, script string) (*sandbox.Process, int) {
	t.Helper()
	p, err := sandbox.Direct{}.Start(sandbox.Spec{Command: "sh", Args: []string{"-c", script}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(0) })
	line, err := bufio.NewReader(p.Stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("read the helper's pid: %v", err)
	}
	helper, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("script printed %q", line)
	}
	return p, helper
}

func waitGone(t *testing.T, what string, pid int) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for sandbox.ProcessAlive(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("%s (pid %d) still runs", what, pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestStopEndsTheWholeGroup(t *testing.T) {
	t.Parallel()
	p, helper := start(t, helperScript)
	if !sandbox.ProcessAlive(p.Pid()) || !sandbox.ProcessAlive(helper) {
		t.Fatal("server or helper not running after start")
	}
	p.Stop(5 * time.Second)
	if !p.Exited() {
		t.Fatal("Stop returned before the server exited")
	}
	if sandbox.ProcessAlive(p.Pid()) || sandbox.ProcessAlive(helper) {
		t.Errorf("after Stop: server alive %v, helper alive %v", sandbox.ProcessAlive(p.Pid()), sandbox.ProcessAlive(helper))
	}
	if sandbox.GroupAlive(p.Pid()) {
		t.Errorf("process group %d still exists after Stop", p.Pid())
	}
	if got := p.ExitStatus(); got != "signal: terminated" {
		t.Errorf("exit status %q, want signal: terminated", got)
	}
	if r := p.KillReason(); r != "" {
		t.Errorf("kill reason %q of a server that ended at SIGTERM, want none", r)
	}
}

func TestStopKillsWhatIgnoresSIGTERM(t *testing.T) {
	t.Parallel()
	// Ignored signals stay ignored across exec, so the helper ignores SIGTERM as well.
	p, helper := start(t, `trap "" TERM; `+helperScript)
	begin := time.Now()
	p.Stop(200 * time.Millisecond)
	if waited := time.Since(begin); waited < 200*time.Millisecond {
		t.Errorf("Stop returned after %v, before the grace period ended", waited)
	}
	if got := p.ExitStatus(); got != "signal: killed" {
		t.Errorf("exit status %q, want signal: killed", got)
	}
	if r := p.KillReason(); r != sandbox.KillStopTimeout {
		t.Errorf("kill reason %q, want %q", r, sandbox.KillStopTimeout)
	}
	if sandbox.ProcessAlive(helper) || sandbox.GroupAlive(p.Pid()) {
		t.Error("the helper survived Stop")
	}
}

func TestExitKillsStragglers(t *testing.T) {
	t.Parallel()
	p, helper := start(t, `sleep 1000 & echo $!; echo "last words" >&2; exit 3`)
	select {
	case <-p.Done():
	case <-time.After(waitLimit):
		t.Fatal("the server did not exit")
	}
	if p.ExitCode() != 3 {
		t.Errorf("exit code %d, want 3", p.ExitCode())
	}
	waitGone(t, "helper of an exited server", helper)
	// What the server wrote before exiting is still there to read.
	rest, err := io.ReadAll(p.Stderr)
	if err != nil || string(rest) != "last words\n" {
		t.Errorf("stderr after exit = %q, %v", rest, err)
	}
}

func TestNoOrphanAfterSatelliteCrash(t *testing.T) {
	t.Parallel()
	owner := "sandbox-test-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), crashChildEnv+"="+owner)
	child.Stderr = t.Output()
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		_ = child.Process.Kill()
		t.Fatalf("child satellite: %v", err)
	}
	var server, helper int
	if _, err := fmt.Sscan(line, &server, &helper); err != nil {
		_ = child.Process.Kill()
		t.Fatalf("child satellite printed %q", line)
	}
	t.Cleanup(func() { _ = syscall.Kill(helper, syscall.SIGKILL) })

	// The satellite crashes: nothing of it runs any more.
	if err := child.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()

	waitGone(t, "server of a crashed satellite", server)
	// The helper left the server's reach; the next satellite sweeps it up. On a loaded machine the helper
	// may still be inside its exec, when its environment cannot be read, so sweeping may take another go.
	killed := 0
	deadline := time.Now().Add(waitLimit)
	for sandbox.ProcessAlive(helper) && time.Now().Before(deadline) {
		n, err := sandbox.Direct{Owner: owner}.Sweep()
		if err != nil {
			t.Fatal(err)
		}
		killed += n
		time.Sleep(10 * time.Millisecond)
	}
	waitGone(t, "helper after a sweep", helper)
	if killed == 0 {
		t.Error("the helper is gone, but no Sweep killed it")
	}
	if n, _ := (sandbox.Direct{Owner: owner}).Sweep(); n != 0 {
		t.Errorf("a second Sweep killed %d processes, want 0", n)
	}
}

func TestEnvironment(t *testing.T) {
	t.Parallel()
	bin := t.TempDir()
	script := filepath.Join(bin, "print-env")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nenv\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	p, err := sandbox.Direct{PassEnv: []string{"HOME", "NOT_SET_ANYWHERE_4711"}, Owner: "me"}.Start(sandbox.Spec{
		// Found through the server's own PATH, which is not the satellite's.
		Command: "print-env",
		Env:     map[string]string{"PATH": bin + ":/usr/bin:/bin", "API_KEY": "s3cret", sandbox.OwnerEnv: "spoofed"},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop(time.Second)
	out, err := io.ReadAll(p.Stdout)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for line := range strings.Lines(string(out)) {
		name, value, _ := strings.Cut(strings.TrimSpace(line), "=")
		switch name {
		case "API_KEY":
			if value != "s3cret" {
				t.Errorf("API_KEY=%q", value)
			}
		case sandbox.OwnerEnv:
			if value != "me" {
				t.Errorf("%s=%q: a server must not choose its owner mark", name, value)
			}
		}
		names = append(names, name)
	}
	// sh itself sets PWD and a few others; the satellite's environment must not leak.
	for _, name := range names {
		if !slices.Contains([]string{"HOME", "PATH", "API_KEY", sandbox.OwnerEnv, "PWD", "SHLVL", "_", "OLDPWD"}, name) {
			t.Errorf("server sees %s, which it was not given", name)
		}
	}
	if !slices.Contains(names, "HOME") {
		t.Error("HOME was not passed through")
	}
}

func TestStartFailures(t *testing.T) {
	t.Parallel()
	for _, cmd := range []string{"", "no-such-command-4711", "/etc/passwd"} {
		if p, err := (sandbox.Direct{}).Start(sandbox.Spec{Command: cmd}); err == nil {
			p.Stop(0)
			t.Errorf("Start(%q) succeeded", cmd)
		}
	}
}

// TestCommandFailuresSayNothingOfTheHost starts commands a tenant's template could name that cannot run:
// a path that does not exist, host files that do (unreadable, not executable, a directory), and names
// not in the PATH. Every answer is the same but for the name, so none tells which host files exist.
func TestCommandFailuresSayNothingOfTheHost(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("key"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{
		filepath.Join(dir, "missing"), secret, dir, "/etc/passwd", "/etc/shadow", "/root",
		"no-such-command-4711", "secret",
	} {
		// secret is in the server's PATH here: found or not, the answer is the same.
		_, err := sandbox.Direct{}.Start(sandbox.Spec{Command: cmd, Env: map[string]string{"PATH": dir + ":/usr/bin:/bin"}})
		if !errors.Is(err, sandbox.ErrCommandUnavailable) {
			t.Errorf("Start(%q): %v, want ErrCommandUnavailable", cmd, err)
			continue
		}
		if got, want := strings.ReplaceAll(err.Error(), strconv.Quote(cmd), "CMD"), `sandbox: command CMD: not found or not executable`; got != want {
			t.Errorf("Start(%q): %q, want %q", cmd, got, want)
		}
	}
}
