package mcptest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// taskServerPackage is the fixture server with tasks in the experimental 2025-11-25 form (see its
// package doc).
const taskServerPackage = "github.com/orrery/orrery/internal/mcptest/taskserver"

var taskServer struct {
	sync.Mutex
	path string
	err  error
}

// TaskServer returns the path of the task fixture server, an MCP server over stdio with the tools the
// conformance suite's tasks scenarios call, run as tasks in the experimental form. It is built once per
// test process.
func TaskServer(t testing.TB) string {
	t.Helper()
	taskServer.Lock()
	defer taskServer.Unlock()
	if taskServer.path == "" && taskServer.err == nil {
		taskServer.path, taskServer.err = buildTaskServer()
	}
	if taskServer.err != nil {
		t.Fatalf("mcptest: %v", taskServer.err)
	}
	return taskServer.path
}

func buildTaskServer() (string, error) {
	// Outside any test's TempDir, which ends with its test; the process's own directory goes with it.
	dir, err := os.MkdirTemp("", "orrery-taskserver-")
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "taskserver")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", path, taskServerPackage).CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", taskServerPackage, err, out)
	}
	// Sandboxed instances run as another user: the binary must be readable and executable by all.
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", err
	}
	return path, nil
}
