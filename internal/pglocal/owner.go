package pglocal

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
)

// account is the system user that runs the server when the Go process is root.
type account struct {
	name     string
	uid, gid int
}

// serverOwner returns the account to run the server as, or nil to run it as the current user. PostgreSQL refuses
// to run as root, so root hands the server to the postgres system user, creating that user when missing.
func serverOwner(ctx context.Context, log *slog.Logger) (*account, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	const name = "postgres"
	u, err := user.Lookup(name)
	if errors.As(err, new(user.UnknownUserError)) {
		log.InfoContext(ctx, "creating system user for PostgreSQL", slog.String("user", name))
		out, addErr := exec.CommandContext(ctx, "useradd", "--system", "--home-dir", "/var/lib/postgresql",
			"--shell", "/bin/bash", name).CombinedOutput()
		// Another process may have created the user meanwhile, so only the second lookup decides.
		u, err = user.Lookup(name)
		if err != nil && addErr != nil {
			return nil, fmt.Errorf("useradd %s: %w: %s", name, addErr, out)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("look up user %s: %w", name, err)
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return nil, fmt.Errorf("user %s: uid %q: %w", name, u.Uid, err)
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return nil, fmt.Errorf("user %s: gid %q: %w", name, u.Gid, err)
	}
	return &account{name: name, uid: uid, gid: gid}, nil
}

// credential drops root's supplementary groups along with its uid and gid.
func (a *account) credential() *syscall.Credential {
	if a == nil {
		return nil
	}
	return &syscall.Credential{Uid: uint32(a.uid), Gid: uint32(a.gid)}
}

// canReach fails with advice when a parent of dir is closed to the account, because the server would
// otherwise die with a bare "permission denied" about its own data directory.
func (a *account) canReach(dir string) error {
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		info, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("data dir: %w", err)
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		perm := info.Mode().Perm()
		var search bool
		switch {
		case int(st.Uid) == a.uid:
			search = perm&0o100 != 0
		case int(st.Gid) == a.gid:
			search = perm&0o010 != 0
		default:
			search = perm&0o001 != 0
		}
		if !search {
			return fmt.Errorf("data dir %s is out of reach of user %s, who runs the server because PostgreSQL "+
				"refuses to run as root: its parent %s has mode %04o and owner uid %d; put the data dir where every "+
				"parent may be searched by others (os.MkdirTemp, not t.TempDir)", dir, a.name, p, perm, st.Uid)
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

// take gives dir and everything in it to the account. An existing cluster is walked only when its top directory
// has another owner, which is the case for a fresh os.MkdirTemp directory or a cluster made by another user.
func (a *account) take(dir string) error {
	info, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if st, ok := info.Sys().(*syscall.Stat_t); ok && int(st.Uid) == a.uid && int(st.Gid) == a.gid {
		return nil
	}
	return filepath.WalkDir(dir, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, a.uid, a.gid)
	})
}
