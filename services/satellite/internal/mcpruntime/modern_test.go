package mcpruntime_test

import (
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/orrery/orrery/services/satellite/internal/mcpruntime"
)

// TestModernSession: for a server that speaks both eras (the go-sdk's conformance server), the primary
// session stays in the session era while the modern lane speaks 2026-07-28 on a second process, and
// hands the server's input_required results back as they are rather than answering them itself. The
// lane ends with the instance.
func TestModernSession(t *testing.T) {
	t.Parallel()
	bin := filepath.Join(t.TempDir(), "everything-server")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/modelcontextprotocol/go-sdk/conformance/everything-server").CombinedOutput(); err != nil {
		t.Fatalf("build the go-sdk conformance server: %v\n%s", err, out)
	}
	b := setup(t, nil)
	in := stdioInstance("conf", bin)
	b.apply(t, in)
	b.waitStatus(t, in.GetId(), online)
	ctx := t.Context()

	primary, err := b.rt.Session(ctx, in.GetId())
	if err != nil {
		t.Fatal(err)
	}
	if v := primary.InitializeResult().ProtocolVersion; v != mcpruntime.DefaultProtocolVersion {
		t.Errorf("primary session speaks %s, want %s", v, mcpruntime.DefaultProtocolVersion)
	}
	lane, err := b.rt.ModernSession(ctx, in.GetId())
	if err != nil || lane == nil {
		t.Fatalf("ModernSession = %v, %v", lane, err)
	}
	if v := lane.InitializeResult().ProtocolVersion; v != mcpruntime.ModernProtocolVersion {
		t.Errorf("modern lane speaks %s, want %s", v, mcpruntime.ModernProtocolVersion)
	}
	if again, err := b.rt.ModernSession(ctx, in.GetId()); err != nil || again != lane {
		t.Errorf("a second call opened another lane (%v, %v)", again, err)
	}
	res, err := lane.CallTool(ctx, &mcp.CallToolParams{Name: "test_input_required_result_elicitation", Arguments: map[string]any{}})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := res.InputRequests["user_name"].(*mcp.ElicitParams); !ok {
		t.Errorf("result = %+v, want the server's input request user_name", res)
	}

	b.apply(t)
	b.waitFor(t, in.GetId(), "removal", func(i mcpruntime.InstanceInfo) bool { return i.ID == "" })
	ended := make(chan error, 1)
	go func() { ended <- lane.Wait() }()
	select {
	case <-ended:
	case <-time.After(waitLimit):
		t.Error("the modern lane outlived its instance")
	}
}
