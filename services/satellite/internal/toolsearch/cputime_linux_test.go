package toolsearch_test

import (
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// onCPU runs f on one OS thread and returns the CPU time that thread spent in it: unlike wall time, it
// does not grow when a loaded machine keeps the thread waiting for a core.
func onCPU(f func()) (time.Duration, bool) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var before, after unix.Timespec
	if unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &before) != nil {
		return 0, false
	}
	f()
	if unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &after) != nil {
		return 0, false
	}
	return time.Duration(after.Nano() - before.Nano()), true
}
