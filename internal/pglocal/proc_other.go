//go:build !linux

package pglocal

import "syscall"

// serverProcAttr cannot ask the kernel to stop the server when we exit: only Linux offers a parent-death signal.
func serverProcAttr(owner *account) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: owner.credential(), Setpgid: true}
}

func initdbProcAttr(owner *account) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: owner.credential()}
}

// lockIsStale leaves every lock file to PostgreSQL because without /proc a live server cannot be told apart
// from a process that reused its pid.
func lockIsStale(int, string) (stale, known bool) {
	return false, false
}
