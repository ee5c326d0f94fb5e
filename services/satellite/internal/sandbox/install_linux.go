package sandbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/orrery/orrery/internal/aptget"
)

const bwrapAdvice = "install the bubblewrap package (e.g. `sudo apt-get install bubblewrap`)"

// netPackages are the Debian packages that provide what a sandbox's network needs, by program.
var netPackages = []struct{ program, pkg string }{
	{"slirp4netns", "slirp4netns"},
	{"nft", "nftables"},
	{"nsenter", "util-linux"},
	{"unshare", "util-linux"},
}

// FindBwrap returns the path of the bwrap executable. When install is set and the process runs as root, it
// first installs with apt-get whatever of the sandbox's programs is missing: bubblewrap, and slirp4netns and
// nftables for its network. Otherwise a missing bwrap fails saying how to get it. log (nil: discard) follows
// the installations.
func FindBwrap(ctx context.Context, log *slog.Logger, install bool) (string, error) {
	if install {
		for _, n := range netPackages {
			err := aptget.Install(ctx, log, n.pkg, func() bool { _, err := lookSbin(n.program); return err == nil })
			if err != nil && !errors.Is(err, aptget.ErrNotRoot) {
				return "", fmt.Errorf("sandbox: install %s: %w", n.pkg, err)
			}
		}
	}
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

// findNetTools finds the programs of a sandbox's network, or fails naming the packages to install.
func findNetTools() (netTools, error) {
	var t netTools
	var missing []string
	for _, n := range netPackages {
		p, err := lookSbin(n.program)
		if err != nil {
			missing = append(missing, n.pkg)
			continue
		}
		switch n.program {
		case "slirp4netns":
			t.slirp = p
		case "nft":
			t.nft = p
		case "nsenter":
			t.nsenter = p
		case "unshare":
			t.unshare = p
		}
	}
	slices.Sort(missing)
	missing = slices.Compact(missing)
	if len(missing) > 0 {
		return t, fmt.Errorf("sandbox: the network of sandboxes needs %v: install them (e.g. `sudo apt-get install %s`)",
			missing, strings.Join(missing, " "))
	}
	return t, nil
}

// lookSbin looks a program up in PATH, then in the system's sbin directories, which a user's PATH may lack.
func lookSbin(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/bin"} {
		p := filepath.Join(dir, name)
		if executable(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found", name)
}
