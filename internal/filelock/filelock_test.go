package filelock_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/orrery/orrery/internal/filelock"
)

const prefix = "orrery-filelock-test-"

// TestProcessDirSweepsOnlyDeadOwners has a child process make a directory and exit, then checks that the next
// ProcessDir removes that directory but keeps this live process's own.
func TestProcessDirSweepsOnlyDeadOwners(t *testing.T) {
	if out := os.Getenv("FILELOCK_CHILD_OUT"); out != "" {
		dir, err := filelock.ProcessDir(prefix)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(out, []byte(dir), 0o600); err != nil {
			t.Fatal(err)
		}
		return
	}
	mine, err := filelock.ProcessDir(prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(mine) })
	out := filepath.Join(t.TempDir(), "child-dir")
	cmd := exec.Command(os.Args[0], "-test.run", "^TestProcessDirSweepsOnlyDeadOwners$")
	cmd.Env = append(os.Environ(), "FILELOCK_CHILD_OUT="+out)
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	childDir := string(raw)
	if _, err := os.Stat(childDir); err != nil {
		t.Fatalf("child's directory missing before the sweep: %v", err)
	}
	next, err := filelock.ProcessDir(prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(next) })
	if _, err := os.Stat(childDir); !os.IsNotExist(err) {
		t.Errorf("the exited child's directory survived the sweep: %v", err)
	}
	if _, err := os.Stat(mine); err != nil {
		t.Errorf("a live process's directory was swept: %v", err)
	}
}

func TestTryLock(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "lock")
	unlock, err := filelock.TryLock(path)
	if err != nil {
		t.Fatal(err)
	}
	// flock locks belong to open files, so a second open of the path competes even in this process.
	if _, err := filelock.TryLock(path); !errors.Is(err, filelock.ErrLocked) {
		t.Fatalf("TryLock of a held lock = %v, want ErrLocked", err)
	}
	unlock()
	unlock, err = filelock.TryLock(path)
	if err != nil {
		t.Fatalf("TryLock after unlock = %v", err)
	}
	unlock()
}
