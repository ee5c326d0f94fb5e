package mcpruntime_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/internal/mcptest"
	"github.com/orrery/orrery/services/satellite/internal/mcpruntime"
)

func remoteInstance(name string, transport satellitev1.Transport, url string) *satellitev1.Instance {
	in := stdioInstance(name, "")
	in.Transport, in.Url = transport, url
	return in
}

func TestRemoteServers(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	http := remoteInstance("remote-http", satellitev1.Transport_TRANSPORT_HTTP, mcptest.EverythingHTTP(t))
	sse := remoteInstance("remote-sse", satellitev1.Transport_TRANSPORT_SSE, mcptest.EverythingSSE(t))
	b.apply(t, http, sse)
	for _, in := range []*satellitev1.Instance{http, sse} {
		info := b.waitStatus(t, in.GetId(), online)
		if !slices.ContainsFunc(info.Tools, func(t *mcp.Tool) bool { return t.Name == "echo" }) || len(info.Prompts) == 0 {
			t.Errorf("%s discovered tools %v and %d prompts", in.GetServerSlug(),
				names(info.Tools, func(t *mcp.Tool) string { return t.Name }), len(info.Prompts))
		}
		want := []satellitev1.InstanceStatus{
			satellitev1.InstanceStatus_INSTANCE_STATUS_PROVISIONING,
			satellitev1.InstanceStatus_INSTANCE_STATUS_CONNECTING,
			satellitev1.InstanceStatus_INSTANCE_STATUS_DISCOVERING_TOOLS,
			online,
		}
		if got := statuses(b.events.of(in.GetId())); !slices.Equal(got, want) {
			t.Errorf("%s went through %v, want %v", in.GetServerSlug(), got, want)
		}
		if info.Pid != 0 || len(lifecycles(b.events.of(in.GetId()))) != 0 {
			t.Errorf("%s: a remote server has a pid (%d) or process lifecycle events", in.GetServerSlug(), info.Pid)
		}
		callEcho(t, b.rt, in.GetId(), "over "+in.GetServerSlug())
	}
}

// guardedServer is an MCP server that pages its lists two items at a time and refuses requests without the
// API key header and tenant query parameter, unless refuse is set, when it refuses everything.
type guardedServer struct {
	URL    string // of the Streamable HTTP endpoint; the SSE endpoint is at /sse
	refuse atomic.Bool
}

func newGuardedServer(t *testing.T) *guardedServer {
	t.Helper()
	server := mcp.NewServer(&mcp.Implementation{Name: "guarded", Version: "1"}, &mcp.ServerOptions{PageSize: 2})
	type echoArgs struct {
		Message string `json:"message"`
	}
	for i := range 5 {
		mcp.AddTool(server, &mcp.Tool{Name: fmt.Sprintf("tool-%d", i), Description: "repeats its message"},
			func(_ context.Context, _ *mcp.CallToolRequest, in echoArgs) (*mcp.CallToolResult, any, error) {
				return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "Echo: " + in.Message}}}, nil, nil
			})
	}
	for i := range 3 {
		server.AddPrompt(&mcp.Prompt{Name: fmt.Sprintf("prompt-%d", i)}, func(context.Context, *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
			return &mcp.GetPromptResult{}, nil
		})
		uri := fmt.Sprintf("test://resource/%d", i)
		server.AddResource(&mcp.Resource{Name: fmt.Sprintf("resource-%d", i), URI: uri}, func(context.Context, *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
			return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: uri, Text: "content"}}}, nil
		})
	}
	get := func(*http.Request) *mcp.Server { return server }
	mux := http.NewServeMux()
	mux.Handle("/mcp", mcp.NewStreamableHTTPHandler(get, nil))
	sse := mcp.NewSSEHandler(get, nil)
	mux.Handle("/sse", sse)
	gs := &guardedServer{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if gs.refuse.Load() || r.Header.Get("X-Api-Key") != "good" || r.URL.Query().Get("tenant") != "acme" {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	gs.URL = srv.URL + "/mcp"
	return gs
}

func TestRemoteCredentials(t *testing.T) {
	t.Parallel()
	gs := newGuardedServer(t) // first, so that it closes after the runtime closed its streams
	b := setup(t, nil)

	good := remoteInstance("good", satellitev1.Transport_TRANSPORT_HTTP, gs.URL)
	good.Headers = map[string]string{"X-Api-Key": "good"}
	good.QueryParams = map[string]string{"tenant": "acme"}
	goodSSE := remoteInstance("good-sse", satellitev1.Transport_TRANSPORT_SSE, strings.TrimSuffix(gs.URL, "/mcp")+"/sse")
	goodSSE.Headers, goodSSE.QueryParams = good.Headers, good.QueryParams
	badKey := remoteInstance("bad-key", satellitev1.Transport_TRANSPORT_HTTP, gs.URL)
	badKey.Headers = map[string]string{"X-Api-Key": "stale"}
	badKey.QueryParams = good.QueryParams
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := "http://" + ln.Addr().String() + "/mcp"
	ln.Close()
	unreachable := remoteInstance("unreachable", satellitev1.Transport_TRANSPORT_HTTP, closedPort)
	misconfigured := stdioInstance("misconfigured", "") // a stdio server without a command
	b.apply(t, good, goodSSE, badKey, unreachable, misconfigured)

	// Discovery follows pagination: the server returns two items a page.
	for _, in := range []*satellitev1.Instance{good, goodSSE} {
		info := b.waitStatus(t, in.GetId(), online)
		if len(info.Tools) != 5 || len(info.Prompts) != 3 || len(info.Resources) != 3 {
			t.Errorf("%s discovered %d tools, %d prompts, %d resources; want 5, 3, 3", in.GetServerSlug(),
				len(info.Tools), len(info.Prompts), len(info.Resources))
		}
	}
	ctx := t.Context()
	res, err := callTool(ctx, b.rt, good.GetId(), &mcp.CallToolParams{Name: "tool-4", Arguments: map[string]any{"message": "paged"}})
	if err != nil || text(res) != "Echo: paged" {
		t.Errorf("call through the headers and query parameters: %v %v", res, err)
	}
	info := b.waitStatus(t, badKey.GetId(), satellitev1.InstanceStatus_INSTANCE_STATUS_REQUIRES_REAUTH)
	if !strings.Contains(info.Message, "401") {
		t.Errorf("requires_reauth message %q does not name the refusal", info.Message)
	}
	b.waitStatus(t, unreachable.GetId(), satellitev1.InstanceStatus_INSTANCE_STATUS_ERROR)
	b.waitStatus(t, misconfigured.GetId(), satellitev1.InstanceStatus_INSTANCE_STATUS_ERROR)

	// A credential validation health check, as the control plane sends it, for the whole team.
	outcome := func(t *testing.T, installationID string) *satellitev1.InstanceOutcome {
		t.Helper()
		list, err := b.rt.CheckCredentials(ctx, teamID, installationID)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 1 {
			t.Fatalf("%d outcomes, want 1", len(list))
		}
		return list[0]
	}
	reauth := satellitev1.InstanceStatus_INSTANCE_STATUS_REQUIRES_REAUTH
	if o := outcome(t, good.GetInstallationId()); o.GetStatus() != online {
		t.Errorf("valid credentials: %v", o)
	}
	if o := outcome(t, badKey.GetInstallationId()); o.GetStatus() != reauth {
		t.Errorf("refused credentials: %v", o)
	}
	if o := outcome(t, unreachable.GetInstallationId()); o.GetStatus() != satellitev1.InstanceStatus_INSTANCE_STATUS_ERROR {
		t.Errorf("unreachable server: %v", o)
	}
	if o := outcome(t, misconfigured.GetInstallationId()); o.GetSkipped() == "" {
		t.Errorf("a stdio server's credentials were checked: %v", o)
	}

	// The server stops accepting the key: the next check says so, and calls stop; accepted again, online.
	gs.refuse.Store(true)
	if o := outcome(t, good.GetInstallationId()); o.GetStatus() != reauth {
		t.Errorf("revoked credentials: %v", o)
	}
	if _, err := callTool(ctx, b.rt, good.GetId(), &mcp.CallToolParams{Name: "tool-1"}); err == nil {
		t.Error("a call went through while the credentials are refused")
	}
	gs.refuse.Store(false)
	if o := outcome(t, good.GetInstallationId()); o.GetStatus() != online {
		t.Errorf("credentials accepted again: %v", o)
	}
	if _, err := callTool(ctx, b.rt, good.GetId(), &mcp.CallToolParams{Name: "tool-1", Arguments: map[string]any{"message": "again"}}); err != nil {
		t.Errorf("call after the credentials were accepted again: %v", err)
	}

	// Recovery reconnects and discovers again.
	before := len(statuses(b.events.of(goodSSE.GetId())))
	outcomes, err := b.rt.Recover(ctx, teamID, goodSSE.GetInstallationId())
	if err != nil {
		t.Fatal(err)
	}
	if len(outcomes) != 1 || outcomes[0].GetStatus() != online {
		t.Errorf("recovery outcomes %v", outcomes)
	}
	want := []satellitev1.InstanceStatus{
		satellitev1.InstanceStatus_INSTANCE_STATUS_CONNECTING,
		satellitev1.InstanceStatus_INSTANCE_STATUS_DISCOVERING_TOOLS,
		online,
	}
	if got := statuses(b.events.of(goodSSE.GetId()))[before:]; !slices.Equal(got, want) {
		t.Errorf("recovery went through %v, want %v", got, want)
	}
}

func TestCommandsThatCannotRun(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	in := stdioInstance("misconfigured", "")
	b.apply(t, in)
	manual := satellitev1.RestartReason_RESTART_REASON_MANUAL_RESTART
	byInstallation := &satellitev1.InstanceSelector{Target: &satellitev1.InstanceSelector_InstallationId{InstallationId: in.GetInstallationId()}}
	cases := []struct {
		name    string
		run     func(context.Context) ([]*satellitev1.InstanceOutcome, error)
		wantErr string
	}{
		{"no instance named", func(ctx context.Context) ([]*satellitev1.InstanceOutcome, error) {
			return b.rt.Restart(ctx, teamID, &satellitev1.InstanceSelector{}, manual)
		}, "names no instance"},
		{"unknown instance", func(ctx context.Context) ([]*satellitev1.InstanceOutcome, error) {
			return b.rt.Kill(ctx, teamID, &satellitev1.InstanceSelector{Target: &satellitev1.InstanceSelector_InstanceId{InstanceId: "nope"}})
		}, "no such MCP server instance"},
		{"another team's installation", func(ctx context.Context) ([]*satellitev1.InstanceOutcome, error) {
			return b.rt.Spawn(ctx, uuid.NewString(), byInstallation)
		}, "no such MCP server instance"},
		{"another team's credential check", func(ctx context.Context) ([]*satellitev1.InstanceOutcome, error) {
			return b.rt.CheckCredentials(ctx, uuid.NewString(), in.GetInstallationId())
		}, "no such MCP server instance"},
		{"another user's instance", func(ctx context.Context) ([]*satellitev1.InstanceOutcome, error) {
			sel := &satellitev1.InstanceSelector{Target: byInstallation.Target, UserId: uuid.NewString()}
			return b.rt.Kill(ctx, teamID, sel)
		}, "no such MCP server instance"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if out, err := tc.run(t.Context()); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("got %v, %v; want an error saying %q", out, err, tc.wantErr)
			}
		})
	}
	if _, err := b.rt.Acquire(t.Context(), "no-such-instance"); err != mcpruntime.ErrUnknownInstance {
		t.Errorf("Acquire of an unknown id: %v", err)
	}
}
