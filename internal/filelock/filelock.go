// Package filelock coordinates processes through advisory file locks (flock). The kernel releases such a lock
// when its process dies, so a crashed process never leaves one behind: a free lock means its owner is gone.
package filelock

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
)

// ErrLocked says that another process holds the lock.
var ErrLocked = errors.New("held by another process")

// Lock takes an exclusive lock on path, creating the file, and waits while another process holds it.
func Lock(path string) (unlock func(), err error) {
	return lock(path, syscall.LOCK_EX)
}

// TryLock takes an exclusive lock on path, creating the file, and fails with ErrLocked while another process
// holds it.
func TryLock(path string) (unlock func(), err error) {
	return lock(path, syscall.LOCK_EX|syscall.LOCK_NB)
}

func lock(path string, how int) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), how); err != nil {
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			err = ErrLocked
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	// Closing the file releases the lock.
	return func() { _ = f.Close() }, nil
}

var (
	mu sync.Mutex
	// held keeps the lock files of ProcessDir open, and so locked, for the life of the process; an
	// unreferenced *os.File would be closed by its finalizer and free the lock early.
	held []*os.File
)

// ProcessDir makes a new directory in the system's temporary directory, named prefix and a random suffix,
// that stays locked for as long as this process lives. First it removes the directories with the same prefix
// whose lock no process holds: their process has exited, with no chance to clean up after itself.
func ProcessDir(prefix string) (string, error) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), prefix+"*"))
	for _, dir := range dirs {
		f, err := os.Open(filepath.Join(dir, "lock"))
		if err != nil {
			continue
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
			_ = os.RemoveAll(dir)
		}
		_ = f.Close()
	}
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		return "", err
	}
	// Lock before publishing under the name sweepers look for, so that none of them sees it unlocked.
	f, err := os.CreateTemp(dir, "lock-")
	if err != nil {
		return "", err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		_ = f.Close()
		return "", fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	if err := os.Rename(f.Name(), filepath.Join(dir, "lock")); err != nil {
		_ = f.Close()
		return "", err
	}
	mu.Lock()
	held = append(held, f)
	mu.Unlock()
	return dir, nil
}
