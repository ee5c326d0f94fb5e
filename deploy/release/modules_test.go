package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestWorkspaceBuildsWhatIsReleased: the go.work workspace adds tools/ (the task runner) to the root
// module, and the workspace's build list is the union of both. Tests run in the workspace while go install
// and the release build the root module alone, so the task runner's dependencies must not raise the
// version of any module the services build with.
func TestWorkspaceBuildsWhatIsReleased(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	list := func(gowork string) map[string]string {
		cmd := exec.CommandContext(t.Context(), "go", "list", "-deps", "-test",
			"-f", "{{with .Module}}{{.Path}} {{.Version}}{{end}}", "./...")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "GOWORK="+gowork)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go list (GOWORK=%s): %v", gowork, err)
		}
		modules := map[string]string{}
		for line := range strings.Lines(string(out)) {
			if path, version, ok := strings.Cut(strings.TrimSpace(line), " "); ok {
				modules[path] = version
			}
		}
		return modules
	}
	alone, workspace := list("off"), list(root+"/go.work")
	if len(alone) == 0 {
		t.Fatal("go list found no modules")
	}
	for path, version := range alone {
		if workspace[path] != version {
			t.Errorf("%s is %s in the root module but %s in the workspace: pin it in go.mod (go get %s@%s) "+
				"or lower it in tools/go.mod", path, version, workspace[path], path, workspace[path])
		}
	}
}
