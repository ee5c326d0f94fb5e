package mcpruntime_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"google.golang.org/protobuf/proto"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"

	"github.com/orrery/orrery/services/satellite/internal/mcpruntime"
)

// TestKeptCatalogue runs a server, stops the runtime and starts another on the same catalogue directory,
// as a restarted satellite does: the instance's tools are listed and the runtime is ready before the
// server is back, and a call waits for it. A changed configuration does not use the kept catalogue, and
// removing the instance removes it.
func TestKeptCatalogue(t *testing.T) {
	t.Parallel()
	catalogs := filepath.Join(t.TempDir(), "catalogs")
	marker := filepath.Join(t.TempDir(), "started")
	in := everythingScript(t, "kept", `if [ -e "`+marker+`" ]; then sleep 3; fi; touch "`+marker+`"; exec "$@"`)
	keep := func(c *mcpruntime.Config) { c.CatalogDir = catalogs }

	first := setup(t, keep)
	if err := first.rt.Ready(); err == nil {
		t.Error("Ready before any configuration, want an error")
	}
	first.apply(t, in)
	discovered := first.waitStatus(t, in.GetId(), online)
	if err := first.rt.Ready(); err != nil {
		t.Errorf("Ready with the instance online: %v", err)
	}
	first.stop()
	files, _ := os.ReadDir(catalogs)
	if len(files) != 1 {
		t.Fatalf("%d files kept in the catalogue directory, want 1", len(files))
	}

	second := setup(t, keep)
	second.apply(t, in)
	info := second.waitFor(t, in.GetId(), "the kept tools listed", func(i mcpruntime.InstanceInfo) bool { return len(i.Tools) > 0 })
	if info.Status == online {
		t.Fatal("the server was online before its kept tools were listed; the test proves nothing")
	}
	if !info.Available() || len(info.Tools) != len(discovered.Tools) || len(info.Resources) != len(discovered.Resources) ||
		len(info.Prompts) != len(discovered.Prompts) {
		t.Errorf("kept catalogue: available %t, %d tools, %d resources, %d prompts; discovered %d, %d, %d", info.Available(),
			len(info.Tools), len(info.Resources), len(info.Prompts), len(discovered.Tools), len(discovered.Resources), len(discovered.Prompts))
	}
	if err := second.rt.Ready(); err != nil {
		t.Errorf("Ready with the kept catalogue listed: %v", err)
	}
	callEcho(t, second.rt, in.GetId(), "waited for") // waits for the server, some three seconds
	second.stop()

	// Under a new configuration the server may offer something else: nothing is listed until it says.
	changed := proto.Clone(in).(*satellitev1.Instance)
	changed.ContentHash = "h2"
	third := setup(t, keep)
	third.apply(t, changed)
	time.Sleep(500 * time.Millisecond) // well inside the server's three-second start
	if info, _ := third.rt.Instance(in.GetId()); len(info.Tools) > 0 || info.Status == online {
		t.Errorf("with a changed configuration: %v with %d tools listed before discovery, want none", info.Status, len(info.Tools))
	}
	if err := third.rt.Ready(); err == nil {
		t.Error("Ready while the only instance starts with nothing to list, want an error")
	}
	third.waitStatus(t, in.GetId(), online)
	third.apply(t)
	// The instance leaves the runtime's list at once and stops afterwards, its catalogue with it.
	for deadline := time.Now().Add(waitLimit); ; time.Sleep(20 * time.Millisecond) {
		files, _ := os.ReadDir(catalogs)
		if len(files) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d files left in the catalogue directory after the instance was removed", len(files))
		}
	}
}

// TestCallStartWait bounds how long a call waits for a server that is starting.
func TestCallStartWait(t *testing.T) {
	t.Parallel()
	in := everythingScript(t, "sleepy", `sleep 5; exec "$@"`)
	b := setup(t, func(c *mcpruntime.Config) { c.CallStartWait = 300 * time.Millisecond })
	b.apply(t, in)
	b.waitFor(t, in.GetId(), "the instance set up", func(i mcpruntime.InstanceInfo) bool { return i.ID != "" })
	start := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
	defer cancel()
	_, err := callTool(ctx, b.rt, in.GetId(), &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"message": "x"}})
	if !errors.Is(err, mcpruntime.ErrStarting) {
		t.Fatalf("call to a starting server = %v, want ErrStarting", err)
	}
	if waited := time.Since(start); waited > 3*time.Second {
		t.Errorf("the call waited %v, want about 300ms", waited)
	}
}

// TestColdStartsStaggered starts five servers under a bound of two first starts at once: never more than
// two are connecting or discovering at a time, while the rest wait as provisioning.
func TestColdStartsStaggered(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *mcpruntime.Config) {
		c.MaxConcurrentStarts = 2
		c.StartJitter = -1
	})
	var specs []*satellitev1.Instance
	for i := range 5 {
		specs = append(specs, everythingScript(t, fmt.Sprintf("staggered%d", i), `sleep 0.5; exec "$@"`))
	}
	b.apply(t, specs...)
	maxStarting, maxWaiting := 0, 0
	deadline := time.Now().Add(2 * waitLimit)
	for {
		starting, waiting, up := 0, 0, 0
		for _, info := range b.rt.Instances("", "") {
			switch info.Status {
			case satellitev1.InstanceStatus_INSTANCE_STATUS_CONNECTING, satellitev1.InstanceStatus_INSTANCE_STATUS_DISCOVERING_TOOLS:
				starting++
			case satellitev1.InstanceStatus_INSTANCE_STATUS_PROVISIONING:
				waiting++
			case online:
				up++
			}
		}
		maxStarting, maxWaiting = max(maxStarting, starting), max(maxWaiting, waiting)
		if up == len(specs) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d servers online after %v", up, len(specs), 2*waitLimit)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if maxStarting > 2 {
		t.Errorf("%d servers starting at once, want at most 2", maxStarting)
	}
	if maxWaiting < 3 {
		t.Errorf("at most %d servers waited their turn, want 3 of 5", maxWaiting)
	}
}
