package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

// config says what to build and where.
type config struct {
	// Version is stamped into the binaries and names the artifacts; see releaseVersion.
	Version string
	// Out is the directory the artifacts are written to.
	Out string
	// Repo is the root of the repository, the module the services are built from.
	Repo string
	// Arches are GOARCH values, all for GOOS=linux.
	Arches []string
}

// service is one binary Orrery ships and the Debian package around it.
type service struct {
	// Name is the package, program, unit and system user name.
	Name string
	// Pkg is the Go package built into the binary.
	Pkg string
	// EnvFile names the file under deploy/debian installed as /etc/orrery/<EnvFile>.
	EnvFile     string
	Description string
	// Depends and Recommends are Debian package relations.
	Depends, Recommends []string
}

var services = []service{
	{
		Name: "orrery-controlplane", Pkg: "./services/controlplane", EnvFile: "controlplane.env",
		Description: "Orrery control plane: teams, the MCP server catalog, credentials and the satellite fleet",
		Recommends:  []string{"postgresql-client"},
	},
	{
		Name: "orrery-satellite", Pkg: "./services/satellite", EnvFile: "satellite.env",
		Description: "Orrery satellite: runs teams' MCP servers in sandboxes behind one endpoint per team",
		// bubblewrap isolates the servers; slirp4netns and nftables make each sandbox's network and its
		// egress rules; util-linux's nsenter, unshare and prlimit set them up and bound the servers;
		// e2fsprogs makes the file systems of home quotas.
		Depends:    []string{"bubblewrap", "slirp4netns", "nftables", "util-linux"},
		Recommends: []string{"e2fsprogs"},
	},
}

// versionPattern is what a version must look like once normalised: semver with a leading v, as Go's module
// versions and nfpm's version parser expect.
var versionPattern = regexp.MustCompile(`^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$`)

// releaseVersion accepts a semver tag and git describe's output for one (v1.2.3-4-gabcdef-dirty). A bare
// commit, which git describe gives on a repository without tags, becomes a pre-release of v0.0.0.
func releaseVersion(v string) (string, error) {
	if v == "" {
		return "", errors.New("no version: pass -version, such as v1.2.3")
	}
	if !strings.HasPrefix(v, "v") && regexp.MustCompile(`^[0-9a-f]{7,40}(-dirty)?$`).MatchString(v) {
		v = "v0.0.0-" + v
	}
	if !versionPattern.MatchString(v) {
		return "", fmt.Errorf("version %q is not a semantic version such as v1.2.3", v)
	}
	return v, nil
}

// run builds every artifact and writes SHA256SUMS beside them. It returns the artifacts' paths.
func run(ctx context.Context, cfg config) ([]string, error) {
	version, err := releaseVersion(cfg.Version)
	if err != nil {
		return nil, err
	}
	if len(cfg.Arches) == 0 {
		return nil, errors.New("no architecture to build for")
	}
	if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
		return nil, err
	}
	var artifacts []string
	for _, arch := range cfg.Arches {
		for _, s := range services {
			bin := filepath.Join(cfg.Out, fmt.Sprintf("%s_%s_linux_%s", s.Name, version, arch))
			if err := build(ctx, cfg.Repo, s.Pkg, version, arch, bin); err != nil {
				return nil, err
			}
			deb := filepath.Join(cfg.Out, fmt.Sprintf("%s_%s_%s.deb", s.Name, strings.TrimPrefix(version, "v"), arch))
			if err := writeDeb(s, version, arch, bin, filepath.Join(cfg.Repo, "deploy", "debian"), deb); err != nil {
				return nil, fmt.Errorf("package %s for %s: %w", s.Name, arch, err)
			}
			artifacts = append(artifacts, bin, deb)
		}
	}
	sums := filepath.Join(cfg.Out, "SHA256SUMS")
	if err := writeChecksums(sums, artifacts); err != nil {
		return nil, err
	}
	return append(artifacts, sums), nil
}

// build compiles one service the way go install from the module proxy would (the workspace off, so only
// the root module's requirements count) without cgo, so the binary depends on no C library.
func build(ctx context.Context, repo, pkg, version, arch, out string) error {
	out, err := filepath.Abs(out)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath",
		"-ldflags", "-s -w -X github.com/orrery/orrery/internal/buildinfo.version="+version,
		"-o", out, pkg)
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch, "GOWORK=off")
	if output, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build %s for linux/%s: %w\n%s", pkg, arch, err, output)
	}
	return nil
}

// writeChecksums writes files' SHA-256 sums in the format sha256sum -c reads.
func writeChecksums(path string, files []string) error {
	var b strings.Builder
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		h := sha256.New()
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return fmt.Errorf("checksum %s: %w", name, err)
		}
		fmt.Fprintf(&b, "%s  %s\n", hex.EncodeToString(h.Sum(nil)), filepath.Base(name))
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}
