package pglocal

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// serverProcAttr ties the server's life to ours. The kernel clears a parent-death signal when a process changes
// its credentials, but Go sets Pdeathsig after switching to Credential in the child, so it holds for the postgres
// user too (TestNoOrphanAfterParentExit checks this). SIGQUIT is PostgreSQL's immediate shutdown. The server gets
// its own process group so that a Ctrl-C at the terminal reaches only us, and Stop decides how it shuts down.
func serverProcAttr(owner *account) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: owner.credential(), Setpgid: true, Pdeathsig: syscall.SIGQUIT}
}

// initdbProcAttr needs no parent-death signal: initdb is short and runs under the caller's context.
func initdbProcAttr(owner *account) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: owner.credential()}
}

// lockIsStale reports whether pid, read from dataDir's postmaster.pid, is not a server using dataDir. A
// postmaster changes its working directory to its data directory, which tells it apart from an unrelated process
// that got the same pid. known is always true on Linux.
func lockIsStale(pid int, dataDir string) (stale, known bool) {
	proc := "/proc/" + strconv.Itoa(pid)
	stat, err := os.ReadFile(proc + "/stat")
	if err != nil {
		return true, true
	}
	// The state follows the parenthesized command name, which may itself contain spaces and parentheses.
	if i := strings.LastIndexByte(string(stat), ')'); i >= 0 && strings.HasPrefix(string(stat[i+1:]), " Z") {
		return true, true
	}
	cwd, err := os.Readlink(proc + "/cwd")
	if err != nil {
		// Gone meanwhile, or another user's process, whose lock PostgreSQL would ignore as well.
		return true, true
	}
	if real, err := filepath.EvalSymlinks(dataDir); err == nil {
		dataDir = real
	}
	return cwd != dataDir, true
}
