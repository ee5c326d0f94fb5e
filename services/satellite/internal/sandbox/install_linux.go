package sandbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"

	"github.com/orrery/orrery/internal/aptget"
)

const bwrapAdvice = "install the bubblewrap package (e.g. `sudo apt-get install bubblewrap`)"

// FindBwrap returns the path of the bwrap executable. When it is missing and install is set and the process
// runs as root, it installs the Debian package bubblewrap with apt-get first; otherwise it fails saying how
// to get it. log (nil: discard) follows the installation.
func FindBwrap(ctx context.Context, log *slog.Logger, install bool) (string, error) {
	if path, err := exec.LookPath("bwrap"); err == nil {
		return path, nil
	}
	if !install {
		return "", errors.New("sandbox: bwrap not found: " + bwrapAdvice)
	}
	err := aptget.Install(ctx, log, "bubblewrap", func() bool { _, err := exec.LookPath("bwrap"); return err == nil })
	if errors.Is(err, aptget.ErrNotRoot) {
		return "", errors.New("sandbox: bwrap not found, and only root may install it: " + bwrapAdvice)
	}
	if err != nil {
		return "", fmt.Errorf("sandbox: install bubblewrap: %w", err)
	}
	return exec.LookPath("bwrap")
}
