//lint:file-ignore SA1019 roots are deprecated only from the 2026-07-28 protocol on; the session era the runtime speaks still has them

package mcpruntime_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/services/satellite/internal/mcpruntime"
)

// TestServerRequestsReachClientMiddleware checks that a server's own request to its client, sent while
// it serves a call, reaches Config.ClientMiddleware, and that servers are spoken to in the session era,
// where such requests are allowed.
func TestServerRequestsReachClientMiddleware(t *testing.T) {
	t.Parallel()
	server := mcp.NewServer(&mcp.Implementation{Name: "asker", Version: "1"}, nil)
	server.AddTool(&mcp.Tool{Name: "roots", InputSchema: map[string]any{"type": "object"}},
		func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			text := req.Session.InitializeParams().ProtocolVersion
			res, err := req.Session.ListRoots(ctx, nil)
			if err != nil {
				text += " error: " + err.Error()
			} else {
				for _, r := range res.Roots {
					text += " " + r.URI
				}
			}
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: text}}}, nil
		})
	srv := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, nil))
	t.Cleanup(srv.Close)

	b := setup(t, func(cfg *mcpruntime.Config) {
		cfg.ClientCapabilities = &mcp.ClientCapabilities{RootsV2: &mcp.RootCapabilities{}}
		cfg.ClientMiddleware = func(next mcp.MethodHandler) mcp.MethodHandler {
			return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
				if method == "roots/list" {
					return &mcp.ListRootsResult{Roots: []*mcp.Root{{URI: "file:///from-the-endpoint"}}}, nil
				}
				return next(ctx, method, req)
			}
		}
	})
	in := remoteInstance("asker", satellitev1.Transport_TRANSPORT_HTTP, srv.URL)
	b.apply(t, in)
	b.waitStatus(t, in.GetId(), online)
	res, err := callTool(t.Context(), b.rt, in.GetId(), &mcp.CallToolParams{Name: "roots", Arguments: map[string]any{}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := text(res), mcpruntime.DefaultProtocolVersion+" file:///from-the-endpoint"; got != want {
		t.Errorf("tool said %q, want %q", got, want)
	}
}
