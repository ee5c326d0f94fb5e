package sandbox

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

const bwrapAdvice = "install the bubblewrap package (e.g. `sudo apt-get install bubblewrap`)"

// FindBwrap returns the path of the bwrap executable. When it is missing and install is set and the process
// runs as root, it installs the Debian package bubblewrap with apt-get first; otherwise it fails saying how
// to get it. log (nil: discard) follows the installation.
func FindBwrap(ctx context.Context, log *slog.Logger, install bool) (string, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if path, err := exec.LookPath("bwrap"); err == nil {
		return path, nil
	}
	if !install {
		return "", errors.New("sandbox: bwrap not found: " + bwrapAdvice)
	}
	if os.Geteuid() != 0 {
		return "", errors.New("sandbox: bwrap not found, and only root may install it: " + bwrapAdvice)
	}
	// Test processes of several packages may install at once; apt and dpkg would fail on each other's locks.
	unlock, err := filelock.Lock(filepath.Join(os.TempDir(), "sandbox-bwrap-install.lock"))
	if err != nil {
		return "", fmt.Errorf("sandbox: install bubblewrap: %w", err)
	}
	defer unlock()
	if path, err := exec.LookPath("bwrap"); err == nil {
		return path, nil
	}
	log.InfoContext(ctx, "bwrap not found; installing the bubblewrap package with apt-get")
	for _, args := range [][]string{{"update"}, {"install", "-y", "bubblewrap"}} {
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("sandbox: install bubblewrap: apt-get %s: %w\n%s",
				strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
	}
	path, err := exec.LookPath("bwrap")
	if err != nil {
		return "", errors.New("sandbox: apt-get installed bubblewrap, but bwrap is still not in PATH")
	}
	return path, nil
}
