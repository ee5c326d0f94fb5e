package selfupdate

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Restart is a staged update waiting for the satellite to drain and re-execute itself.
type Restart struct {
	logger     *slog.Logger
	marker     *Marker
	markerPath string
	listener   *os.File
}

// Error makes a Restart the value run returns to main, which then calls Exec.
func (r *Restart) Error() string { return fmt.Sprintf("restarting on %s", r.marker.To) }

// KeepListener takes a duplicate of ln's socket before the HTTP server closes ln, so the socket stays open
// across the exec and connections that arrive meanwhile wait in its backlog.
func (r *Restart) KeepListener(ln net.Listener) error {
	f, ok := ln.(interface{ File() (*os.File, error) })
	if !ok {
		return fmt.Errorf("listener %T cannot be handed to the new process", ln)
	}
	file, err := f.File()
	if err != nil {
		return fmt.Errorf("keep the listening socket: %w", err)
	}
	r.listener = file
	return nil
}

// Exec starts the watchdog from the previous binary and replaces this process with the new one. It returns
// only on failure, having started the watchdog or not; the watchdog then rolls back on its own, as it does
// for a new binary that exits.
func (r *Restart) Exec() error {
	m := r.marker
	pr, pw, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("restart: %w", err)
	}
	files := []*os.File{pr}
	if r.listener != nil {
		files = append(files, r.listener)
	}
	watchdog := exec.Command(m.Previous, os.Args[1:]...)
	// The watchdog is told whom to watch rather than asking for its parent: the new binary may have exited
	// before the watchdog looks, and its parent would then be init.
	watchdog.Env = append(withoutUpdateEnv(os.Environ()), EnvWatchdog+"="+r.markerPath,
		envWatchdogTarget+"="+strconv.Itoa(os.Getpid()))
	if r.listener != nil {
		watchdog.Env = append(watchdog.Env, EnvListenFD+"="+strconv.Itoa(watchdogListenerFD))
	}
	watchdog.Stdout, watchdog.Stderr = os.Stdout, os.Stderr
	watchdog.ExtraFiles = files
	if err := watchdog.Start(); err != nil {
		return fmt.Errorf("start the update watchdog: %w", err)
	}
	pr.Close()
	env := append(withoutUpdateEnv(os.Environ()),
		EnvConfirmFD+"="+strconv.Itoa(int(pw.Fd())),
		EnvWatchdogPID+"="+strconv.Itoa(watchdog.Process.Pid))
	keep := []*os.File{pw}
	if r.listener != nil {
		env = append(env, EnvListenFD+"="+strconv.Itoa(int(r.listener.Fd())))
		keep = append(keep, r.listener)
	}
	for _, f := range keep {
		// Go opens every descriptor close-on-exec; these two must survive the exec.
		if _, _, errno := syscall.Syscall(syscall.SYS_FCNTL, f.Fd(), syscall.F_SETFD, 0); errno != 0 {
			return fmt.Errorf("restart: keep descriptor open: %w", errno)
		}
	}
	r.logger.Info("re-executing on the new version", slog.String("binary", m.Binary), slog.String("to", m.To),
		slog.Int("watchdog_pid", watchdog.Process.Pid))
	return fmt.Errorf("exec %s: %w", m.Binary, syscall.Exec(m.Binary, os.Args, env))
}

func withoutUpdateEnv(env []string) []string {
	return slices.DeleteFunc(slices.Clone(env), func(kv string) bool {
		for _, name := range []string{EnvListenFD, EnvConfirmFD, EnvWatchdogPID, EnvWatchdog, envWatchdogTarget} {
			if strings.HasPrefix(kv, name+"=") {
				return true
			}
		}
		return false
	})
}

// Inherited is what a process started by an update receives from the one before it.
type Inherited struct {
	// Listener is the listening socket, or nil.
	Listener net.Listener
	// Confirm is the pipe to the watchdog, or nil.
	Confirm *os.File
	// WatchdogPID is the watchdog's pid, or 0.
	WatchdogPID int
}

// TakeInherited reads the descriptors an update passed down and removes their variables from the
// environment, so that no MCP server process inherits them. It must run before anything starts a process.
func TakeInherited() (Inherited, error) {
	var in Inherited
	if v, ok := os.LookupEnv(EnvConfirmFD); ok {
		os.Unsetenv(EnvConfirmFD)
		fd, err := strconv.Atoi(v)
		if err != nil {
			return in, fmt.Errorf("%s: %w", EnvConfirmFD, err)
		}
		syscall.CloseOnExec(fd)
		in.Confirm = os.NewFile(uintptr(fd), "update-confirm")
	}
	if v, ok := os.LookupEnv(EnvWatchdogPID); ok {
		os.Unsetenv(EnvWatchdogPID)
		in.WatchdogPID, _ = strconv.Atoi(v)
	}
	if v, ok := os.LookupEnv(EnvListenFD); ok {
		os.Unsetenv(EnvListenFD)
		fd, err := strconv.Atoi(v)
		if err != nil {
			return in, fmt.Errorf("%s: %w", EnvListenFD, err)
		}
		f := os.NewFile(uintptr(fd), "listener")
		ln, err := net.FileListener(f)
		f.Close()
		if err != nil {
			return in, fmt.Errorf("inherited listener: %w", err)
		}
		in.Listener = ln
	}
	return in, nil
}

// Watchdog descriptors, as Restart.Exec passes them: ExtraFiles start at 3.
const (
	watchdogConfirmFD  = 3
	watchdogListenerFD = 4
)

// RunWatchdog watches the process that re-executed itself on a new version (this process's parent) and
// returns when it confirmed. When it exits first, or does not confirm within the marker's timeout, the
// watchdog stops it, restores the previous binary, records why in the marker and starts the restored
// binary in its own place (under systemd, which restarts the unit itself, it exits instead).
func RunWatchdog(logger *slog.Logger, markerPath string) error {
	// systemd stops what is left of the unit when its main process exits; the binary must be restored
	// before this process goes.
	signal.Ignore(syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	target, err := strconv.Atoi(os.Getenv(envWatchdogTarget))
	if err != nil || target <= 1 {
		return fmt.Errorf("update watchdog: no process to watch (%s=%q)", envWatchdogTarget, os.Getenv(envWatchdogTarget))
	}
	m, err := ReadMarker(markerPath)
	if err != nil || m == nil {
		return fmt.Errorf("update watchdog: no marker: %v", err)
	}
	logger = logger.With(slog.String("component", "update-watchdog"), slog.String("to", m.To), slog.Int("pid", target))
	confirm := os.NewFile(watchdogConfirmFD, "update-confirm")
	got := make(chan bool, 1)
	go func() {
		var b [1]byte
		n, _ := io.ReadFull(confirm, b[:])
		got <- n == 1
	}()
	timeout := time.Duration(m.Timeout)
	var reason string
	select {
	case ok := <-got:
		if ok {
			logger.Info("new version confirmed; watchdog stands down")
			return nil
		}
		reason = "the new version exited before its first heartbeat"
	case <-time.After(timeout):
		reason = fmt.Sprintf("the new version did not heartbeat within %v", timeout)
		stop(target, 15*time.Second)
	}
	logger.Warn("rolling back", slog.String("reason", reason))
	waitGone(target, 15*time.Second)
	failed := m.Binary + ".failed"
	_ = os.Remove(failed)
	if err := os.Rename(m.Binary, failed); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("roll back: %w", err)
	}
	if err := os.Rename(m.Previous, m.Binary); err != nil {
		return fmt.Errorf("roll back: %w", err)
	}
	m.State, m.Reason = StateRolledBack, reason
	if err := WriteMarker(markerPath, m); err != nil {
		return err
	}
	if os.Getenv("INVOCATION_ID") != "" {
		logger.Info("previous binary restored; systemd restarts the unit on it")
		return nil
	}
	env := withoutUpdateEnv(os.Environ())
	if os.Getenv(EnvListenFD) != "" {
		env = append(env, EnvListenFD+"="+strconv.Itoa(watchdogListenerFD))
	}
	logger.Info("previous binary restored; starting it")
	// An ignored signal stays ignored across exec; the restored satellite must stop on SIGTERM.
	signal.Reset(syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	return fmt.Errorf("exec %s: %w", m.Binary, syscall.Exec(m.Binary, os.Args, env))
}

// stop asks pid to stop, and kills it after grace. It signals only its own parent: a pid that is no longer
// its parent may already belong to another process.
func stop(pid int, grace time.Duration) {
	if os.Getppid() != pid {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	if !waitGone(pid, grace) && os.Getppid() == pid {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// waitGone waits up to d for pid, this process's parent, to exit. The watchdog cannot wait for its
// parent, so it polls: once the parent exits this process is re-parented.
func waitGone(pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if os.Getppid() != pid {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}
