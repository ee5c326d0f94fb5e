package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/deb"
	"github.com/goreleaser/nfpm/v2/files"
)

// writeDeb packages one service's binary with its systemd unit, environment file and system user. The
// files besides the binary come from dir (deploy/debian).
func writeDeb(s service, version, arch, bin, dir, out string) error {
	source := func(name string) string { return filepath.Join(dir, name) }
	info := nfpm.WithDefaults(&nfpm.Info{
		Name:        s.Name,
		Arch:        arch,
		Platform:    "linux",
		Version:     version,
		Section:     "net",
		Priority:    "optional",
		Maintainer:  "Orrery <orrery@example.com>",
		Description: s.Description,
		Homepage:    "https://github.com/orrery/orrery",
		License:     "Apache-2.0",
		// Packages of one version are identical whenever they are built.
		MTime: time.Unix(0, 0).UTC(),
		Overridables: nfpm.Overridables{
			Depends:    s.Depends,
			Recommends: s.Recommends,
			Contents: files.Contents{
				{Source: bin, Destination: "/usr/bin/" + s.Name, FileInfo: &files.ContentFileInfo{Mode: 0o755}},
				{Source: source(s.Name + ".service"), Destination: "/usr/lib/systemd/system/" + s.Name + ".service",
					FileInfo: &files.ContentFileInfo{Mode: 0o644}},
				{Source: source(s.Name + ".sysusers"), Destination: "/usr/lib/sysusers.d/" + s.Name + ".conf",
					FileInfo: &files.ContentFileInfo{Mode: 0o644}},
				// Secrets go in here: root's alone, and kept across upgrades.
				{Source: source(s.EnvFile), Destination: "/etc/orrery/" + s.EnvFile, Type: files.TypeConfigNoReplace,
					FileInfo: &files.ContentFileInfo{Mode: 0o600}},
			},
			Scripts: nfpm.Scripts{
				PostInstall: source("postinst"),
				PreRemove:   source("prerm"),
				PostRemove:  source("postrm"),
			},
		},
	})
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	if err := deb.Default.Package(info, f); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", out, err)
	}
	return nil
}
