package gateway

import (
	"context"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

const userDan = "dddddddd-dddd-4ddd-8ddd-dddddddddddd"

// TestRequestLogsWithoutBodies calls failing tools of an installation with request logging off: the
// request logs say that the calls failed, with the JSON-RPC code where there is one, and hold nothing
// the server sent, its error texts included.
func TestRequestLogsWithoutBodies(t *testing.T) {
	t.Parallel()
	const secret = "s3cret-customer-record"
	b := setup(t, setupOptions{})
	server := mcp.NewServer(&mcp.Implementation{Name: "quiet"}, nil)
	server.AddTool(&mcp.Tool{Name: "fail", InputSchema: map[string]any{"type": "object"}}, func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return &mcp.CallToolResult{IsError: true, Content: []mcp.Content{&mcp.TextContent{Text: "failed on " + secret}}}, nil
	})
	server.AddTool(&mcp.Tool{Name: "reject", InputSchema: map[string]any{"type": "object"}}, func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return nil, &jsonrpc.Error{Code: 4242, Message: "rejected " + secret}
	})
	b.backend.add(t, Instance{ID: "quiet-1", InstallationID: "inst-quiet-1", TeamID: teamAcme, UserID: userDan,
		ServerSlug: "quiet", Prefix: "quiet", Online: true, Status: "online", RequestLoggingEnabled: false}, server)
	b.token("dan", teamAcme, "acme", userDan, ScopeRead, ScopeExecute)

	for _, era := range eras {
		t.Run(era.name, func(t *testing.T) {
			cs := b.connect(t, "dan", "acme", era.opts)
			res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "quiet__fail", Arguments: map[string]any{"q": secret}})
			if err != nil || !res.IsError {
				t.Fatalf("fail: %v, %v", res, err)
			}
			// The client still gets the server's answer; only the log leaves it out.
			if _, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "quiet__reject", Arguments: map[string]any{}}); err == nil ||
				!strings.Contains(err.Error(), secret) {
				t.Fatalf("reject: %v, want the server's error", err)
			}
		})
	}
	var got []string
	for _, ev := range b.events.requestLogs() {
		if ev.GetInstanceId() != "quiet-1" {
			continue
		}
		rl := ev.GetRequestLog()
		if strings.Contains(rl.String(), secret) || strings.Contains(ev.String(), secret) {
			t.Errorf("request log holds what the server sent: %v", rl)
		}
		if rl.GetSuccess() || rl.GetRequest() != nil || rl.GetResponse() != nil {
			t.Errorf("request log %v: want a failure without bodies", rl)
		}
		got = append(got, rl.GetToolName()+": "+rl.GetError())
	}
	want := []string{"fail: error: the tool reported an error", "reject: error: JSON-RPC code 4242"}
	if len(got) != 2*len(eras) {
		t.Fatalf("request logs %q, want %q in each of %d eras", got, want, len(eras))
	}
	for i, g := range got {
		if g != want[i%2] {
			t.Errorf("request log %d = %q, want %q", i, g, want[i%2])
		}
	}
}
