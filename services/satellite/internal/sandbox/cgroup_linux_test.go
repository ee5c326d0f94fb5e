package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestCgroupSweepRemovesOnlyItsOwn(t *testing.T) {
	t.Parallel()
	parents := detectCgroups()
	if len(parents.dirs) == 0 {
		t.Log("no writable cgroups here; nothing to sweep")
		return
	}
	mine, theirs := cgroupPrefix("/var/lib/satellite-a"), cgroupPrefix("/var/lib/satellite-b")
	if mine == theirs {
		t.Fatal("two owners share a cgroup prefix")
	}
	ours, err := parents.newCgroup(mine, "left-behind", Limits{}.WithDefaults())
	if err != nil {
		t.Fatal(err)
	}
	other, err := parents.newCgroup(theirs, "in-use", Limits{}.WithDefaults())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(other.remove)
	if n := parents.sweep(mine); n == 0 {
		t.Error("sweep removed nothing")
	}
	for _, dir := range ours.dirs {
		if _, err := os.Stat(dir); err == nil {
			t.Errorf("%s survived the sweep", dir)
		}
	}
	for _, dir := range other.dirs {
		if _, err := os.Stat(dir); err != nil {
			t.Errorf("another satellite's cgroup %s: %v", dir, err)
		}
	}
}

// TestStartCPU checks that a server may use StartCPU until it is started, and its own limit after; and
// that its memory is read from its cgroup.
func TestStartCPU(t *testing.T) {
	t.Parallel()
	path, err := FindBwrap(t.Context(), nil, true)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewBwrap(nil, BwrapConfig{Path: path, HomeRoot: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if !b.Enforced().CPU {
		t.Fatalf("no cpu cgroup can be made here (%+v): run the tests as root, or in a delegated cgroup", b.Enforced())
	}
	p, err := b.Start(Spec{TeamID: "t", InstanceID: "start-cpu", Command: "sleep", Args: []string{"1000"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(0) })
	if got := cpuShare(t, b.cgroups, p.Pid()); got != DefaultStartCPU {
		t.Errorf("CPU share while starting %v, want %v", got, DefaultStartCPU)
	}
	p.Started()
	if got := cpuShare(t, b.cgroups, p.Pid()); got != DefaultLimits.CPU {
		t.Errorf("CPU share once started %v, want the limit %v", got, DefaultLimits.CPU)
	}
	if n, ok := p.MemoryBytes(); !ok || n == 0 {
		t.Errorf("MemoryBytes = %d, %v; want the sandbox's memory", n, ok)
	}
	p.Stop(0)
	p.Started() // after the exit: nothing left to change, and no complaint
}

// cpuShare reads the CPU share of the cgroup below parents that holds pid. The process joins its cgroup
// right after it starts, so cpuShare looks again until it has.
func cpuShare(t *testing.T, parents cgroupParents, pid int) float64 {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if share, ok := findCPUShare(t, parents, pid); ok {
			return share
		}
		if time.Now().After(deadline) {
			t.Fatalf("no cpu cgroup below %s holds pid %d", parents.dirs["cpu"], pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func findCPUShare(t *testing.T, parents cgroupParents, pid int) (float64, bool) {
	t.Helper()
	parent := parents.dirs["cpu"]
	entries, err := os.ReadDir(parent)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		dir := filepath.Join(parent, e.Name())
		procs, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		if err != nil || !slices.Contains(strings.Fields(string(procs)), strconv.Itoa(pid)) {
			continue
		}
		var quota, period float64
		if parents.v2 {
			data, err := os.ReadFile(filepath.Join(dir, "cpu.max"))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := fmt.Sscan(string(data), &quota, &period); err != nil {
				t.Fatal(err)
			}
		} else {
			q, err1 := os.ReadFile(filepath.Join(dir, "cpu.cfs_quota_us"))
			pd, err2 := os.ReadFile(filepath.Join(dir, "cpu.cfs_period_us"))
			if err := errors.Join(err1, err2); err != nil {
				t.Fatal(err)
			}
			quota, _ = strconv.ParseFloat(strings.TrimSpace(string(q)), 64)
			period, _ = strconv.ParseFloat(strings.TrimSpace(string(pd)), 64)
		}
		return quota / period, true
	}
	return 0, false
}

// TestCPUUsage reads the CPU time from the files of both cgroup versions, as the kernel writes them.
func TestCPUUsage(t *testing.T) {
	t.Parallel()
	v2, v1 := t.TempDir(), t.TempDir()
	stat := "usage_usec 61500000\nuser_usec 60000000\nsystem_usec 1500000\n"
	if err := os.WriteFile(filepath.Join(v2, "cpu.stat"), []byte(stat), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(v1, "cpuacct.usage"), []byte("61500000000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, cg := range map[string]*cgroup{
		"v2": {v2: true, dirs: map[string]string{"memory": v2, "cpu": v2}},
		"v1": {dirs: map[string]string{"memory": t.TempDir(), "cpuacct": v1}},
	} {
		if got, ok := cg.cpuUsage(); !ok || got != 61500*time.Millisecond {
			t.Errorf("%s: %v, %v; want 1m1.5s", name, got, ok)
		}
	}
	if _, ok := (&cgroup{dirs: map[string]string{"memory": v1}}).cpuUsage(); ok {
		t.Error("v1 without a cpuacct cgroup reported a CPU time")
	}
}
