package gateway

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

func TestEmergencyStopRefusesCallsByName(t *testing.T) {
	t.Parallel()
	for _, era := range eras {
		t.Run(era.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, setupOptions{})
			o := era.opts
			o.listChanged = make(chan struct{}, 1)
			ann := b.connect(t, "ann", "acme", o)
			bob := b.connect(t, "bob", "acme", clientOptions{version: sessionVersion})
			if got := toolNames(t, ann); !slices.Contains(got, "alpha__echo") {
				t.Fatalf("tools = %v before the stop", got)
			}

			const why = `the MCP server "alpha" is stopped everywhere by an emergency stop: CVE-2026-0001`
			b.backend.update("alpha-1", func(inst *Instance) { inst.Online, inst.EmergencyStop = false, why })
			select {
			case <-o.listChanged:
			case <-time.After(5 * time.Second):
				t.Fatal("no tools/list_changed after the stop")
			}
			if got := toolNames(t, ann); slices.Contains(got, "alpha__echo") || !slices.Contains(got, "beta__echo") {
				t.Fatalf("tools = %v after alpha stopped", got)
			}
			res, err := ann.CallTool(t.Context(), &mcp.CallToolParams{Name: "alpha__echo", Arguments: map[string]any{}})
			if err != nil {
				t.Fatal(err)
			}
			if !res.IsError || !strings.Contains(callText(t, res), why) {
				t.Fatalf("a call by name of a stopped tool answered %q", callText(t, res))
			}
			// An instance listed online with a stop (a mix-up in the runtime) is never offered.
			b.backend.update("alpha-1", func(inst *Instance) { inst.Online = true })
			if got := toolNames(t, ann); slices.Contains(got, "alpha__echo") {
				t.Fatalf("tools = %v with alpha online but stopped", got)
			}
			// Ann's stop is hers: Bob, who has no alpha, learns nothing of it.
			if res, err := bob.CallTool(t.Context(), &mcp.CallToolParams{Name: "alpha__echo", Arguments: map[string]any{}}); err == nil && strings.Contains(callText(t, res), "CVE") {
				t.Fatalf("another user's call named ann's stop: %q", callText(t, res))
			}
			// Lifted, the tools come back.
			b.backend.update("alpha-1", func(inst *Instance) { inst.EmergencyStop = "" })
			select {
			case <-o.listChanged:
			case <-time.After(5 * time.Second):
				t.Fatal("no tools/list_changed after the stop was lifted")
			}
			if got := toolNames(t, ann); !slices.Contains(got, "alpha__echo") {
				t.Fatalf("tools = %v after the stop was lifted", got)
			}
		})
	}
}
