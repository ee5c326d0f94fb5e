package mcptest_test

import (
	"context"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/orrery/orrery/internal/mcptest"
)

func toolNames(t *testing.T, transport mcp.Transport) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	client := mcp.NewClient(&mcp.Implementation{Name: "mcptest-test", Version: "1"}, nil)
	cs, err := client.Connect(ctx, transport, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	var names []string
	for tool, err := range cs.Tools(ctx, nil) {
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, tool.Name)
	}
	return names
}

func TestEverything(t *testing.T) {
	t.Parallel()
	t.Run("stdio", func(t *testing.T) {
		t.Parallel()
		command, args := mcptest.Everything(t)
		// The server does not exit when its stdin closes; do not wait the default 5 s for it.
		names := toolNames(t, &mcp.CommandTransport{Command: exec.Command(command, args...), TerminateDuration: 100 * time.Millisecond})
		if !slices.Contains(names, "echo") {
			t.Errorf("tools %v lack echo", names)
		}
	})
	t.Run("streamableHttp", func(t *testing.T) {
		t.Parallel()
		names := toolNames(t, &mcp.StreamableClientTransport{Endpoint: mcptest.EverythingHTTP(t)})
		if !slices.Contains(names, "echo") {
			t.Errorf("tools %v lack echo", names)
		}
	})
	t.Run("sse", func(t *testing.T) {
		t.Parallel()
		names := toolNames(t, &mcp.SSEClientTransport{Endpoint: mcptest.EverythingSSE(t)})
		if !slices.Contains(names, "echo") {
			t.Errorf("tools %v lack echo", names)
		}
	})
}
