package gateway

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/orrery/orrery/internal/toolselect"
)

func TestVisibleToolsFollowEachInstancesSelection(t *testing.T) {
	t.Parallel()
	tools := func(names ...string) []*mcp.Tool {
		var out []*mcp.Tool
		for _, n := range names {
			out = append(out, &mcp.Tool{Name: n, Description: "server's " + n})
		}
		return out
	}
	insts := []Instance{
		{ID: "a", Prefix: "alpha", Tools: tools("echo", "get-env", "get-sum"), Selection: toolselect.Selection{
			Deny: []string{"get-e*"}, Hidden: []string{"get-sum"}, Descriptions: map[string]string{"echo": "Repeat it."},
		}},
		// Another instance's selection is its own: the same names stay offered here.
		{ID: "b", Prefix: "beta", Tools: tools("echo", "get-env", "get-sum"), Selection: toolselect.Selection{Allow: []string{"get-*"}}},
	}
	got := visibleTools(insts)
	names := slices.Sorted(maps.Keys(got))
	if strings.Join(names, ",") != "alpha__echo,beta__get-env,beta__get-sum" {
		t.Fatalf("visible tools %v", names)
	}
	if d := got["alpha__echo"].def.Description; d != "Repeat it." {
		t.Errorf("alpha__echo described as %q, want the override", d)
	}
	if d := got["beta__get-sum"].def.Description; d != "server's get-sum" {
		t.Errorf("beta__get-sum described as %q, want the server's", d)
	}
	if rt := got["beta__get-env"].rt; rt.inst.ID != "b" || rt.name != "get-env" {
		t.Errorf("beta__get-env routed to %v", rt)
	}
	// The instance's own tools are never modified: the gateway lists copies.
	if insts[0].Tools[0].Description != "server's echo" || insts[0].Tools[0].Name != "echo" {
		t.Errorf("the runtime's tool was modified: %v", insts[0].Tools[0])
	}
}
