// Package sandbox starts the satellite's stdio MCP server processes. A Driver decides how a server is
// isolated; whatever the driver, the Process it returns gives the same guarantees:
//
//   - the server leads its own process group, and stopping it signals the whole group: SIGTERM, then SIGKILL
//     after a grace period, so helpers it started (npx starting node, a shell starting a binary) go too;
//   - when the server exits on its own, whatever is left of its group is killed before the server is
//     reaped, so no orphan outlives it and the group id cannot be reused in between;
//   - the kernel kills the server if the satellite dies (a parent-death signal), and a satellite that
//     starts again finds and kills what a crashed predecessor left behind (Direct.Sweep);
//   - every process is reaped: no zombie remains.
//
// Direct runs servers as plain subprocesses of the satellite, without isolation. Bwrap (Linux) runs each in a
// bubblewrap sandbox: namespaces, a read-only system, a home of the team's own, a filtered environment, and
// resource limits through cgroups and rlimits. Both build a command and hand it to Launch. Select picks
// one by configuration, trying bwrap first when asked to choose.
//
//	p, err := sandbox.Direct{}.Start(sandbox.Spec{Command: "node", Args: []string{"server.js"}})
//	if err != nil { ... }
//	defer p.Stop(5 * time.Second)
//	// p.Stdin, p.Stdout carry JSON-RPC; p.Stderr carries the server's log.
package sandbox

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Spec describes a server process.
type Spec struct {
	// Command is the executable. A name without a slash is looked up in the PATH the server gets. Drivers
	// that isolate resolve it inside the sandbox, never on the host.
	Command string
	// Args are the arguments after the command.
	Args []string
	// Env is the server's own environment, as configured. Drivers add the variables every process needs.
	Env map[string]string
	// Dir is the working directory; it must exist. Empty means the root directory.
	Dir string
	// TeamID and InstanceID say whom the process serves, for drivers that isolate teams from each other.
	TeamID, InstanceID string
	// UserID, when set, gives the server a home of the user's own within the team's, for servers whose
	// template keeps users apart. Drivers without isolation ignore it.
	UserID string
	// Network lets the server reach the network: under Bwrap the public internet, as the driver's egress
	// policy allows, and never the satellite's surroundings. Bwrap cuts it off from every network otherwise;
	// Direct ignores it.
	Network bool
	// EgressAllow, with Network, narrows the server's network to these destinations, "host:port" each, as
	// far as the driver's egress policy allows them too. Empty: the policy alone decides.
	EgressAllow []string
	// Limits bounds the server's resources; nil or zero fields mean the driver's defaults (see DefaultLimits).
	// Direct ignores it.
	Limits *Limits
	// App, when set, is a host directory holding the server's program, such as a tree built from a source
	// archive. It becomes the working directory: under Bwrap mounted at AppDir, read-only unless
	// AppWritable (a build writes it, a server only reads it); Direct runs in it in place of Dir. A
	// relative Command with a slash ("./server", ".venv/bin/python") is found in it.
	App string
	// AppWritable mounts App writable, for the build that fills it.
	AppWritable bool
}

// AppDir is where a Bwrap sandbox mounts Spec.App, and the working directory of its server.
const AppDir = "/app"

// Driver starts server processes.
type Driver interface {
	// Start starts the process spec describes.
	Start(spec Spec) (*Process, error)
}

// drainTimeout is how long the output pipes stay open after a server exited. Its group is dead by then, so
// they normally reach EOF at once; only a process that left the group (setsid) could hold them open longer.
const drainTimeout = 2 * time.Second

// groupExitTimeout bounds the wait for a killed group's processes to die; only a process stuck in the
// kernel (uninterruptible I/O) takes longer.
const groupExitTimeout = time.Second

// Process is a running server process. Its methods are safe for concurrent use.
type Process struct {
	// Stdin is the server's standard input.
	Stdin io.WriteCloser
	// Stdout is the server's standard output. It is closed at the latest shortly after the server exits.
	Stdout io.ReadCloser
	// Stderr is the server's standard error. It is closed at the latest shortly after the server exits.
	Stderr io.ReadCloser

	pid     int
	started time.Time
	done    chan struct{}

	mu         sync.Mutex // held while signalling the group, and while reaping, so no signal hits a reused id
	reaped     bool
	state      *os.ProcessState
	err        error
	onExit     func(*os.ProcessState) exitCause
	reason     string
	kill       string      // the limit that killed the server, set with reason
	stopKilled atomic.Bool // Stop had to kill the server

	settle     func() // set by drivers that treat a starting server differently; called once by Started
	settleOnce sync.Once
	memory     func() (uint64, bool) // set by drivers that account the server's memory themselves
	notes      []string              // set by drivers that changed what the spec asked for
}

// What killed a server, as Process.KillReason says: a limit of its sandbox, or Stop once the grace period
// ran out.
const (
	KillMemory      = "memory"
	KillCPUTime     = "cpu_time"
	KillFileSize    = "file_size"
	KillStopTimeout = "stop_timeout"
)

// KillReasons lists every reason KillReason gives.
var KillReasons = []string{KillMemory, KillCPUTime, KillFileSize, KillStopTimeout}

// exitCause is what a driver knows of why a server ended: a text for people, and the kill reason when a
// limit killed it.
type exitCause struct {
	text, kill string
}

// netnsSwitch is a network namespace to start a process in, and the satellite's own, to return to.
type netnsSwitch struct {
	target, home *os.File
}

// Launch starts cmd as the leader of a new process group that dies with the satellite, and returns it as a
// Process. Drivers build cmd; Launch sets its standard streams and adds Setpgid and a parent-death signal to
// its SysProcAttr. cmd must not have been started.
func Launch(cmd *exec.Cmd) (*Process, error) {
	return launch(cmd, nil, nil)
}

// launch is Launch with a hook that runs once the server is reaped and its group killed, before Done is
// closed, with the server's state (nil if unknown); what it returns becomes the Process's Reason. With a
// netns, cmd starts in the network namespace netns.target.
func launch(cmd *exec.Cmd, onExit func(*os.ProcessState) exitCause, netns *netnsSwitch) (*Process, error) {
	if cmd.Stdin != nil || cmd.Stdout != nil || cmd.Stderr != nil {
		return nil, errors.New("sandbox: launch: the command's standard streams are already set")
	}
	// Pipes of our own rather than cmd's: exec closes its pipes when Wait returns, which could cut off the
	// last lines a crashing server wrote.
	var files []*os.File
	closeAll := func() {
		for _, f := range files {
			_ = f.Close()
		}
	}
	pipe := func() (r, w *os.File, err error) {
		r, w, err = os.Pipe()
		if err == nil {
			files = append(files, r, w)
		}
		return r, w, err
	}
	inR, inW, err := pipe()
	if err != nil {
		return nil, fmt.Errorf("sandbox: stdin pipe: %w", err)
	}
	outR, outW, err := pipe()
	if err != nil {
		closeAll()
		return nil, fmt.Errorf("sandbox: stdout pipe: %w", err)
	}
	errR, errW, err := pipe()
	if err != nil {
		closeAll()
		return nil, fmt.Errorf("sandbox: stderr pipe: %w", err)
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, errW
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	setParentDeathSignal(cmd.SysProcAttr)
	closeInheritedOnExec()

	p := &Process{Stdin: inW, Stdout: outR, Stderr: errR, done: make(chan struct{}), onExit: onExit}
	started := make(chan error, 1)
	go func() {
		// The kernel sends the parent-death signal when the thread that forked the child exits, not when the
		// process does, and the Go runtime may retire idle threads. Forking and waiting on one locked thread
		// keeps that thread alive exactly as long as the child.
		runtime.LockOSThread()
		unlock := true
		defer func() {
			// A thread stuck in another namespace stays locked, and the runtime retires it when this ends.
			if unlock {
				runtime.UnlockOSThread()
			}
		}()
		if netns != nil {
			// The child inherits the forking thread's namespace; the thread goes back to its own after.
			if err := enterNetns(netns.target); err != nil {
				unlock = false
				started <- fmt.Errorf("enter the network namespace: %w", err)
				return
			}
		}
		err := cmd.Start()
		if netns != nil && enterNetns(netns.home) != nil {
			unlock = false
		}
		if err != nil {
			started <- err
			return
		}
		p.pid, p.started = cmd.Process.Pid, time.Now()
		started <- nil
		p.wait(cmd)
	}()
	if err := <-started; err != nil {
		closeAll()
		return nil, fmt.Errorf("sandbox: start %s: %w", cmd.Path, err)
	}
	// The child has its copies; ours would keep the pipes open after it exits.
	_ = inR.Close()
	_ = outW.Close()
	_ = errW.Close()
	return p, nil
}

// wait runs on the forking thread until the leader is reaped.
func (p *Process) wait(cmd *exec.Cmd) {
	// Wait without reaping, so that the leader's pid, which is the group id, stays taken while the rest of
	// the group is killed. Where that is impossible, the group is killed right after the reap.
	var err error
	if waitExited(p.pid) {
		p.mu.Lock()
		_ = syscall.Kill(-p.pid, syscall.SIGKILL)
		// SIGKILL takes effect asynchronously; Done promises a dead group.
		deadline := time.Now().Add(groupExitTimeout)
		for GroupAlive(p.pid) && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		err = cmd.Wait()
	} else {
		err = cmd.Wait()
		p.mu.Lock()
		_ = syscall.Kill(-p.pid, syscall.SIGKILL)
	}
	p.reaped, p.state = true, cmd.ProcessState
	if p.state == nil {
		p.err = err
	}
	p.mu.Unlock()
	if p.onExit != nil {
		cause := p.onExit(p.state)
		p.reason, p.kill = cause.text, cause.kill
	}
	close(p.done)

	_ = p.Stdin.Close()
	time.AfterFunc(drainTimeout, func() {
		_ = p.Stdout.Close()
		_ = p.Stderr.Close()
	})
}

// Started tells the driver that the server has finished starting: it answered its initialize and
// listings. Bwrap gives a starting server more CPU than its limit (BwrapConfig.StartCPU) until then.
// Calls after the first, and calls to Processes of drivers without a start-up allowance, do nothing.
func (p *Process) Started() {
	p.settleOnce.Do(func() {
		if p.settle != nil {
			p.settle()
		}
	})
}

// MemoryBytes returns the memory the driver charges the running server with, and whether it knows: Bwrap
// counts every process in the sandbox through its memory cgroup, page cache included, as its limit does.
// Where it does not know, GroupUsage measures the server's process group instead.
func (p *Process) MemoryBytes() (uint64, bool) {
	if p.memory == nil || p.Exited() {
		return 0, false
	}
	return p.memory()
}

// Notes says what the driver changed of what the spec asked for, such as a limit lowered to the
// satellite's ceiling; nil when it changed nothing.
func (p *Process) Notes() []string { return p.notes }

// Pid returns the server's process id, which is also its process group id.
func (p *Process) Pid() int { return p.pid }

// StartedAt returns when the server started.
func (p *Process) StartedAt() time.Time { return p.started }

// Done is closed once the server has exited and been reaped, and the rest of its group killed.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the server has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// ExitCode returns the server's exit code once it has exited: -1 if a signal ended it or it has not exited.
func (p *Process) ExitCode() int {
	if !p.Exited() || p.state == nil {
		return -1
	}
	return p.state.ExitCode()
}

// ExitStatus describes how the server ended, such as "exit status 3" or "signal: killed"; empty while it runs.
func (p *Process) ExitStatus() string {
	if !p.Exited() {
		return ""
	}
	if p.state == nil {
		return fmt.Sprintf("unknown (%v)", p.err)
	}
	return p.state.String()
}

// Reason says why the server ended when a driver knows more than its exit status, such as "out of memory"
// when it was killed at its memory limit; empty otherwise, and while it runs.
func (p *Process) Reason() string {
	if !p.Exited() {
		return ""
	}
	return p.reason
}

// KillReason says what killed the server, one of KillReasons: a limit of its sandbox, or Stop because
// the server outlived the grace period after SIGTERM. It is empty for a server that ended otherwise, and
// while it runs.
func (p *Process) KillReason() string {
	if !p.Exited() {
		return ""
	}
	if p.kill != "" {
		return p.kill
	}
	if p.stopKilled.Load() {
		return KillStopTimeout
	}
	return ""
}

// Signal sends sig to the server's whole process group, unless the server has been reaped already.
func (p *Process) Signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.reaped {
		return os.ErrProcessDone
	}
	if err := syscall.Kill(-p.pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("sandbox: signal process group %d: %w", p.pid, err)
	}
	return nil
}

// Stop ends the server: it closes its stdin and sends SIGTERM to its process group, then SIGKILL if the
// server has not exited after grace. It returns once the server is reaped and its group is gone. Stopping a
// server that already exited returns at once.
func (p *Process) Stop(grace time.Duration) {
	_ = p.Stdin.Close()
	if p.Signal(syscall.SIGTERM) != nil {
		<-p.done
		return
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
		return
	case <-t.C:
	}
	if p.Signal(syscall.SIGKILL) == nil {
		p.stopKilled.Store(true)
	}
	<-p.done
}

// GroupAlive reports whether any process of group pgid is alive, zombies aside. It is meant for tests and
// diagnostics: once a server is reaped its group id may be reused.
func GroupAlive(pgid int) bool {
	if err := syscall.Kill(-pgid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	return groupHasLiveMember(pgid)
}

// ProcessAlive reports whether pid exists and is not a zombie.
func ProcessAlive(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return syscall.Kill(pid, 0) == nil
	}
	state, ok := statField(string(stat), 3)
	return ok && state != "Z" && state != "X"
}
