package pglocal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// prepareDataDir creates dataDir when missing, hands it to owner (nil: the current user) and reports whether it
// already holds a cluster. It refuses a non-empty directory without a cluster rather than mix a cluster into it.
func prepareDataDir(dataDir string, owner *account) (initialized bool, err error) {
	// Parents get 0755 so that the postgres user can pass through them; the cluster directory itself stays
	// private, as PostgreSQL requires.
	if err := os.MkdirAll(filepath.Dir(dataDir), 0o755); err != nil {
		return false, fmt.Errorf("data dir: %w", err)
	}
	if err := os.Mkdir(dataDir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return false, fmt.Errorf("data dir: %w", err)
	}
	entries, err := os.ReadDir(dataDir)
	if err != nil {
		return false, fmt.Errorf("data dir: %w", err)
	}
	_, err = os.Stat(filepath.Join(dataDir, "PG_VERSION"))
	initialized = err == nil
	if !initialized && len(entries) > 0 {
		return false, fmt.Errorf("data dir %s is neither empty nor a PostgreSQL cluster", dataDir)
	}
	if owner == nil {
		return initialized, nil
	}
	if err := owner.canReach(dataDir); err != nil {
		return false, err
	}
	if err := owner.take(dataDir); err != nil {
		return false, fmt.Errorf("data dir: %w", err)
	}
	return initialized, nil
}

// initdb creates a cluster whose only role is a superuser named postgres that logs in without a password:
// the server is reachable only through its own socket directory.
func initdb(ctx context.Context, log *slog.Logger, bin binaries, dataDir string, owner *account, throwaway bool) error {
	log.DebugContext(ctx, "initdb", slog.String("data_dir", dataDir))
	run := func(locale string) ([]byte, error) {
		args := []string{"-D", dataDir, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=" + locale}
		if throwaway {
			args = append(args, "--no-sync")
		}
		cmd := exec.CommandContext(ctx, bin.initdb, args...)
		cmd.Dir = "/"
		cmd.Env = serverEnv()
		cmd.SysProcAttr = initdbProcAttr(owner)
		return cmd.CombinedOutput()
	}
	out, err := run("C.UTF-8")
	if err != nil {
		// Older C libraries lack C.UTF-8; plain C sorts the same way.
		log.DebugContext(ctx, "initdb with locale C.UTF-8 failed; retrying with C", slog.String("output", string(out)))
		out, err = run("C")
	}
	if err != nil {
		return fmt.Errorf("initdb %s: %w\n%s", dataDir, err, bytes.TrimSpace(out))
	}
	return nil
}

// removeStaleLock deletes the lock files that a killed server left behind. PostgreSQL ignores a stale lock file
// only when no process has its pid; after a reboot or in a busy container that pid may belong to someone else,
// and the server would then refuse to start.
func removeStaleLock(log *slog.Logger, dataDir, socketDir string) error {
	pidFile := filepath.Join(dataDir, "postmaster.pid")
	data, err := os.ReadFile(pidFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read lock file: %w", err)
	}
	first, _, _ := strings.Cut(string(data), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 0 {
		// PostgreSQL itself reports a corrupt lock file best.
		return nil
	}
	stale, known := lockIsStale(pid, dataDir)
	if !known {
		return nil
	}
	if !stale {
		return fmt.Errorf("data dir %s is in use by postgres (pid %d)", dataDir, pid)
	}
	log.Info("removing stale PostgreSQL lock files", slog.String("data_dir", dataDir), slog.Int("pid", pid))
	for _, name := range []string{pidFile, socketDir + socketName() + ".lock", socketDir + socketName()} {
		if err := os.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove stale lock file: %w", err)
		}
	}
	return nil
}
