// Package aptget installs a missing Debian package with apt-get: the zero-configuration start gets
// PostgreSQL so, and the tests get PostgreSQL and bubblewrap on a new machine.
package aptget

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/orrery/orrery/internal/filelock"
)

// ErrNotRoot says that the package is missing and that this process may not install it.
var ErrNotRoot = errors.New("only root may install it")

// Install installs the Debian package pkg unless present reports that what it provides is here already.
// log (nil: discard) says when an installation starts and shows apt-get's output at debug level.
func Install(ctx context.Context, log *slog.Logger, pkg string, present func() bool) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if present() {
		return nil
	}
	if os.Geteuid() != 0 {
		return ErrNotRoot
	}
	// Test processes of several packages install at once; apt and dpkg would fail on each other's locks.
	unlock, err := filelock.Lock(filepath.Join(os.TempDir(), "orrery-apt-get.lock"))
	if err != nil {
		return err
	}
	defer unlock()
	if present() {
		return nil
	}
	log.InfoContext(ctx, "installing a missing Debian package with apt-get", slog.String("package", pkg))
	for _, args := range [][]string{{"update"}, {"install", "-y", pkg}} {
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		out, err := cmd.CombinedOutput()
		log.DebugContext(ctx, "apt-get "+strings.Join(args, " "), slog.String("output", string(out)))
		if err != nil {
			return fmt.Errorf("apt-get %s: %w\n%s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
	}
	if !present() {
		return fmt.Errorf("apt-get installed %s, but it is still not found", pkg)
	}
	return nil
}
