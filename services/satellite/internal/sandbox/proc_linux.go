package sandbox

import (
	"bytes"
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// setParentDeathSignal makes the kernel kill the server when the satellite's forking thread, and so the
// satellite, dies. SIGKILL because a satellite that died cannot wait for a graceful shutdown.
func setParentDeathSignal(attr *syscall.SysProcAttr) {
	attr.Pdeathsig = syscall.SIGKILL
}

// closeInheritedOnExec marks every descriptor from 3 up close-on-exec. Go opens all of its own so, but
// descriptors the satellite inherited from whatever started it are not, and would reach every server, a
// sandboxed one included. A child's ExtraFiles are duplicated into place after the fork, without the mark.
func closeInheritedOnExec() {
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err == nil {
		return
	}
	// Kernels before 5.11.
	entries, _ := os.ReadDir("/proc/self/fd")
	for _, e := range entries {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			unix.CloseOnExec(fd)
		}
	}
}

// enterNetns moves the calling thread into the network namespace ns.
func enterNetns(ns *os.File) error {
	return unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET)
}

// waitExited blocks until pid has exited, leaving it unreaped, and reports whether it could.
func waitExited(pid int) bool {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(err, unix.EINTR) {
			return err == nil
		}
	}
}

// statField returns field n (1-based, as in proc(5)) of a /proc/<pid>/stat line. The command name, field 2,
// may hold spaces and parentheses, so fields are counted from its closing parenthesis.
func statField(stat string, n int) (string, bool) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 || n < 3 {
		return "", false
	}
	fields := strings.Fields(stat[i+1:])
	if n-3 >= len(fields) {
		return "", false
	}
	return fields[n-3], true
}

// sweep kills every process whose environment holds mark.
func sweep(mark string) (int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	self := os.Getpid()
	want := []byte(mark)
	killed := 0
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		environ, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil {
			continue // gone, or not ours to read (and so not ours to kill)
		}
		for kv := range bytes.SplitSeq(environ, []byte{0}) {
			if bytes.Equal(kv, want) {
				if syscall.Kill(pid, syscall.SIGKILL) == nil {
					killed++
				}
				break
			}
		}
	}
	return killed, nil
}

// Usage describes the processes of one group.
type Usage struct {
	// Processes counts the group's live processes.
	Processes int
	// RSSBytes is their resident memory.
	RSSBytes uint64
}

// GroupUsage measures every process group at once from /proc, keyed by group id: one pass over /proc
// serves all servers of a heartbeat.
func GroupUsage() (map[int]Usage, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	page := uint64(os.Getpagesize())
	usage := make(map[int]Usage)
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		pgrp, ok1 := statField(string(stat), 5)
		rss, ok2 := statField(string(stat), 24)
		state, ok3 := statField(string(stat), 3)
		if !ok1 || !ok2 || !ok3 || state == "Z" {
			continue
		}
		pgid, err1 := strconv.Atoi(pgrp)
		pages, err2 := strconv.ParseUint(rss, 10, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		u := usage[pgid]
		u.Processes++
		u.RSSBytes += pages * page
		usage[pgid] = u
	}
	return usage, nil
}

// groupHasLiveMember reports whether a process of group pgid other than a zombie exists. A zombie's group id
// stays taken until its parent reaps it, which for orphans is up to init.
func groupHasLiveMember(pgid int) bool {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return true
	}
	want := strconv.Itoa(pgid)
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		if pgrp, _ := statField(string(stat), 5); pgrp != want {
			continue
		}
		if state, _ := statField(string(stat), 3); state != "Z" && state != "X" {
			return true
		}
	}
	return false
}
