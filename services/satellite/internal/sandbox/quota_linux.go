package sandbox

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Home quotas: with BwrapConfig.HomeQuota set, each home is a file system of its own, an ext4 image of
// that size beside the home (<home>.img), loop-mounted on the home's directory (nosuid, nodev) the first
// time a server needs it and left mounted for the next. A full home fails its writer with ENOSPC and
// nothing else: not the satellite's state directory, not the other teams' homes. Why this way: a size-
// limited tmpfs would lose the caches (npm's, uv's) that make a second start quick, and charge them to
// memory; file system quotas (ext4 or XFS project quotas) depend on how the host's file system was made
// and mounted. The image is sparse, so it takes only the disk its files use. A home that existed before
// quotas were turned on is left as it was, hidden under the mount; the server starts with an empty one.

// quotaLocks serialises making and mounting each home's file system.
type quotaLocks struct {
	mu    sync.Mutex
	homes map[string]*sync.Mutex
}

func (q *quotaLocks) lock(home string) func() {
	q.mu.Lock()
	if q.homes == nil {
		q.homes = map[string]*sync.Mutex{}
	}
	m, ok := q.homes[home]
	if !ok {
		m = &sync.Mutex{}
		q.homes[home] = m
	}
	q.mu.Unlock()
	m.Lock()
	return m.Unlock
}

// isMountPoint reports whether dir is the root of a mount: it lies on another device than its parent.
func isMountPoint(dir string) bool {
	var st, parent syscall.Stat_t
	if syscall.Lstat(dir, &st) != nil || syscall.Lstat(filepath.Dir(dir), &parent) != nil {
		return false
	}
	return st.Dev != parent.Dev
}

// quotaHome makes home a mounted file system of size bytes owned by uid, unless it is one already.
func (b *Bwrap) quotaHome(home string, size int64, uid int) error {
	unlock := b.quotas.lock(home)
	defer unlock()
	if isMountPoint(home) {
		return nil
	}
	img := home + ".img"
	if _, err := os.Stat(img); errors.Is(err, os.ErrNotExist) {
		if err := b.makeImage(img, size, uid); err != nil {
			_ = os.Remove(img)
			return err
		}
	}
	if err := os.MkdirAll(home, 0o700); err != nil {
		return err
	}
	if out, err := exec.Command(b.mount, "-o", "loop,nosuid,nodev", img, home).CombinedOutput(); err != nil {
		return fmt.Errorf("mount %s: %w: %s", img, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// makeImage makes a sparse ext4 image of size bytes whose root belongs to uid, with no blocks reserved for
// root, which the server is not.
func (b *Bwrap) makeImage(img string, size int64, uid int) error {
	f, err := os.OpenFile(img, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	err = f.Truncate(size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	owner := strconv.Itoa(uid) + ":" + strconv.Itoa(uid)
	out, err := exec.Command(b.mkfs, "-q", "-F", "-m", "0", "-E", "root_owner="+owner, img).CombinedOutput()
	if err != nil {
		return fmt.Errorf("mkfs.ext4 %s: %w: %s", img, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// unmountHome unmounts a home's file system and removes its image, before the home itself is removed.
func (b *Bwrap) unmountHome(home string) error {
	unlock := b.quotas.lock(home)
	defer unlock()
	if isMountPoint(home) {
		if err := syscall.Unmount(home, syscall.MNT_DETACH); err != nil {
			return fmt.Errorf("unmount %s: %w", home, err)
		}
	}
	if err := os.Remove(home + ".img"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
