package sandbox

import (
	"os"
	"testing"
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
