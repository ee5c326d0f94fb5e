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
	// One binary in the shared cache, replaced by a rename so that processes building at once, or running
	// the one before, never see half a file; Go's build cache makes the rebuild a link.
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "orrery-test", "bin")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(dir, "taskserver-*")
	if err != nil {
		return "", err
	}
	_ = tmp.Close()
	defer os.Remove(tmp.Name()) // gone after the rename, and after a failed build
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", tmp.Name(), taskServerPackage).CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", taskServerPackage, err, out)
	}
	// Sandboxed instances may run as another user: the binary must be readable and executable by all.
	if err := os.Chmod(tmp.Name(), 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, "taskserver")
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", err
	}
	return path, nil
}
