package sandbox_test

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/orrery/orrery/services/satellite/internal/sandbox"
)

// TestDirectRunsInTheApp runs a program from its own tree, the way a server built from source runs: the
// tree is the working directory, and a relative command is found in it, not where the satellite runs.
func TestDirectRunsInTheApp(t *testing.T) {
	t.Parallel()
	app := t.TempDir()
	if err := os.MkdirAll(filepath.Join(app, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(app, "bin", "server"), []byte("#!/bin/sh\npwd\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	p, err := sandbox.Direct{}.Start(sandbox.Spec{Command: "bin/server", App: app, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop(time.Second)
	out, _ := io.ReadAll(p.Stdout)
	<-p.Done()
	if got := strings.TrimSpace(string(out)); got != app || p.ExitCode() != 0 {
		t.Fatalf("the program ran in %q (exit %d), want %q", got, p.ExitCode(), app)
	}
}
