package build

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Build steps by runtime, run with /bin/sh -c in the tree. A Python server gets a virtual environment in
// .venv: `uv sync` where the sandbox has uv, else the system's python3 with its own packages visible
// (--system-site-packages) and pip without build isolation, so the build backend (setuptools) comes from
// the system rather than from a download; the server's dependencies still come from the package index.
const (
	npmCI      = "npm ci --no-audit --no-fund"
	npmInstall = "npm install --no-audit --no-fund"
	npmBuild   = "npm run build"
	pythonVenv = "if command -v uv >/dev/null 2>&1; then uv sync; else python3 -m venv --system-site-packages .venv && " +
		".venv/bin/python -m pip install --no-build-isolation ."
	goBuild = "go build -trimpath -o bin/server ."
)

// plan returns the shell script that builds the tree in app, and what it does in words; an empty
// script means nothing to build. An explicit command wins over detection.
func plan(app, command string) (script, what string, err error) {
	if command != "" {
		return command, "running the template's build command", nil
	}
	has := func(name string) bool {
		info, err := os.Lstat(filepath.Join(app, name))
		return err == nil && info.Mode().IsRegular()
	}
	switch {
	case has("package.json"):
		steps := []string{npmInstall}
		if has("package-lock.json") || has("npm-shrinkwrap.json") {
			steps[0] = npmCI
		}
		build, err := hasBuildScript(filepath.Join(app, "package.json"))
		if err != nil {
			return "", "", err
		}
		if build {
			steps = append(steps, npmBuild)
		}
		script = strings.Join(steps, " && ")
		return script, "Node.js: " + script, nil
	case has("pyproject.toml"):
		return pythonVenv + "; fi", "Python: a virtual environment in .venv (uv sync, or pip install)", nil
	case has("go.mod"):
		return goBuild, "Go: " + goBuild, nil
	}
	return "", "", nil
}

// hasBuildScript reports whether a package.json names a build script.
func hasBuildScript(file string) (bool, error) {
	f, err := os.Open(file)
	if err != nil {
		return false, err
	}
	defer f.Close()
	var pkg struct {
		Scripts map[string]string `json:"scripts"`
	}
	// A package.json is small; a huge one is a mistake or an attack.
	if err := json.NewDecoder(io.LimitReader(f, 1<<20)).Decode(&pkg); err != nil {
		return false, fmt.Errorf("package.json: %w", err)
	}
	return pkg.Scripts["build"] != "", nil
}
