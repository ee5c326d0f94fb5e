package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestNoCommittedBinaries keeps compiled programs out of the repository: they bloat every clone forever
// and cannot be reviewed.
func TestNoCommittedBinaries(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	magics := map[string][]byte{
		"ELF": []byte("\x7fELF"), "Mach-O": []byte("\xcf\xfa\xed\xfe"), "PE": []byte("MZ"), "ar archive": []byte("!<arch>\n"),
	}
	for _, name := range worktreeFiles(t, root) {
		f, err := os.Open(filepath.Join(root, name))
		if err != nil {
			t.Fatal(err)
		}
		head := make([]byte, 8)
		n, _ := f.Read(head)
		f.Close()
		for kind, magic := range magics {
			if bytes.HasPrefix(head[:n], magic) {
				t.Errorf("%s is an %s binary: build output does not belong in the repository", name, kind)
			}
		}
	}
}

// TestBuildOutputIgnored checks that what the tasks and a bare go build write stays out of git status.
func TestBuildOutputIgnored(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	for _, path := range []string{
		"bin/controlplane", "dist/SHA256SUMS", "deploy/dist/orrery-satellite_1.0.0_amd64.deb", "controlplane", "satellite",
		"services/controlplane/controlplane", "services/satellite/satellite", ".orrery/dev-secrets.json", "coverage.out",
		"deploy/release/release",
	} {
		if err := exec.CommandContext(t.Context(), "git", "-C", root, "check-ignore", "--quiet", "--no-index", path).Run(); err != nil {
			t.Errorf("%s is not ignored by .gitignore: %v", path, err)
		}
	}
}
