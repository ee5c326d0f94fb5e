//go:build !linux

package sandbox

import (
	"errors"
	"os"
	"syscall"
)

// setParentDeathSignal does nothing: only Linux offers a parent-death signal, so elsewhere a crashed
// satellite leaves its servers running until Sweep.
func setParentDeathSignal(*syscall.SysProcAttr) {}

// closeInheritedOnExec does nothing: elsewhere a server may inherit the descriptors the satellite did.
func closeInheritedOnExec() {}

// enterNetns fails: network namespaces are Linux's.
func enterNetns(*os.File) error { return errors.New("network namespaces need Linux") }

// waitExited reports false: without waitid's WNOWAIT the leader cannot be waited for without reaping it,
// so the group is killed right after the reap instead.
func waitExited(int) bool { return false }

func statField(string, int) (string, bool) { return "", false }

func sweep(string) (int, error) { return 0, errors.New("sweeping needs /proc") }

// Usage describes the processes of one group.
type Usage struct {
	// Processes counts the group's live processes.
	Processes int
	// RSSBytes is their resident memory.
	RSSBytes uint64
}

// GroupUsage needs /proc; elsewhere it reports nothing.
func GroupUsage() (map[int]Usage, error) { return nil, errors.New("process usage needs /proc") }

// groupHasLiveMember cannot tell zombies apart without /proc, so any member counts.
func groupHasLiveMember(int) bool { return true }
