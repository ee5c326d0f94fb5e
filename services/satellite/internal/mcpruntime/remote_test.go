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
	"google.golang.org/protobuf/types/known/structpb"

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
	res, err := b.rt.CallTool(ctx, good.GetId(), &mcp.CallToolParams{Name: "tool-4", Arguments: map[string]any{"message": "paged"}}, nil)
	if err != nil || text(res) != "Echo: paged" {
		t.Errorf("call through the headers and query parameters: %v %v", res, err)
	}
	info := b.waitStatus(t, badKey.GetId(), satellitev1.InstanceStatus_INSTANCE_STATUS_REQUIRES_REAUTH)
	if !strings.Contains(info.Message, "401") {
		t.Errorf("requires_reauth message %q does not name the refusal", info.Message)
	}
	b.waitStatus(t, unreachable.GetId(), satellitev1.InstanceStatus_INSTANCE_STATUS_ERROR)
	b.waitStatus(t, misconfigured.GetId(), satellitev1.InstanceStatus_INSTANCE_STATUS_ERROR)

	// health_check credential_validation, as the control plane sends it, for the whole team.
	check := func(t *testing.T, installationID string) []any {
		t.Helper()
		out, err := b.rt.Execute(ctx, &satellitev1.Command{
			Id: uuid.NewString(), Type: satellitev1.CommandType_COMMAND_TYPE_HEALTH_CHECK, TeamId: teamID,
			Payload: payload(t, map[string]any{"check_type": "credential_validation", "installation_id": installationID}),
		})
		if err != nil {
			t.Fatal(err)
		}
		return out["outcomes"].([]any)
	}
	outcome := func(t *testing.T, installationID string) map[string]any {
		t.Helper()
		list := check(t, installationID)
		if len(list) != 1 {
			t.Fatalf("%d outcomes, want 1", len(list))
		}
		return list[0].(map[string]any)
	}
	if o := outcome(t, good.GetInstallationId()); o["status"] != "online" {
		t.Errorf("valid credentials: %v", o)
	}
	if o := outcome(t, badKey.GetInstallationId()); o["status"] != "requires_reauth" {
		t.Errorf("refused credentials: %v", o)
	}
	if o := outcome(t, unreachable.GetInstallationId()); o["status"] != "error" {
		t.Errorf("unreachable server: %v", o)
	}
	if o := outcome(t, misconfigured.GetInstallationId()); o["skipped"] == nil {
		t.Errorf("a stdio server's credentials were checked: %v", o)
	}

	// The server stops accepting the key: the next check says so, and calls stop; accepted again, online.
	gs.refuse.Store(true)
	if o := outcome(t, good.GetInstallationId()); o["status"] != "requires_reauth" {
		t.Errorf("revoked credentials: %v", o)
	}
	if _, err := b.rt.CallTool(ctx, good.GetId(), &mcp.CallToolParams{Name: "tool-1"}, nil); err == nil {
		t.Error("a call went through while the credentials are refused")
	}
	gs.refuse.Store(false)
	if o := outcome(t, good.GetInstallationId()); o["status"] != "online" {
		t.Errorf("credentials accepted again: %v", o)
	}
	if _, err := b.rt.CallTool(ctx, good.GetId(), &mcp.CallToolParams{Name: "tool-1", Arguments: map[string]any{"message": "again"}}, nil); err != nil {
		t.Errorf("call after the credentials were accepted again: %v", err)
	}

	// mcp_recovery reconnects and discovers again.
	before := len(statuses(b.events.of(goodSSE.GetId())))
	out, err := b.rt.Execute(ctx, &satellitev1.Command{
		Id: uuid.NewString(), Type: satellitev1.CommandType_COMMAND_TYPE_CONFIGURE,
		Payload: payload(t, map[string]any{"event": "mcp_recovery", "installation_id": goodSSE.GetInstallationId()}),
	})
	if err != nil {
		t.Fatal(err)
	}
	if o := out["outcomes"].([]any)[0].(map[string]any); o["status"] != "online" {
		t.Errorf("recovery outcome %v", o)
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

func payload(t *testing.T, m map[string]any) *structpb.Struct {
	t.Helper()
	s, err := structpb.NewStruct(m)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestCommandsThatCannotRun(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.apply(t, stdioInstance("misconfigured", ""))
	cases := []struct {
		name    string
		cmd     *satellitev1.Command
		wantErr string
	}{
		{"no instance named", &satellitev1.Command{Type: satellitev1.CommandType_COMMAND_TYPE_RESTART}, "names no instance"},
		{"unknown instance", &satellitev1.Command{Type: satellitev1.CommandType_COMMAND_TYPE_KILL,
			Payload: payload(t, map[string]any{"instance_id": "nope"})}, "no such MCP server instance"},
		{"other team", &satellitev1.Command{Type: satellitev1.CommandType_COMMAND_TYPE_SPAWN, TeamId: uuid.NewString(),
			Payload: payload(t, map[string]any{"team_id": teamID, "installation_id": uuid.NewString()})}, "contradicts"},
		{"unknown check", &satellitev1.Command{Type: satellitev1.CommandType_COMMAND_TYPE_HEALTH_CHECK,
			Payload: payload(t, map[string]any{"check_type": "vibes", "installation_id": uuid.NewString()})}, "unknown check_type"},
		{"recovery without installation", &satellitev1.Command{Type: satellitev1.CommandType_COMMAND_TYPE_CONFIGURE,
			Payload: payload(t, map[string]any{"event": "mcp_recovery"})}, "needs installation_id"},
		{"update", &satellitev1.Command{Type: satellitev1.CommandType_COMMAND_TYPE_UPDATE}, "does not carry out"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := b.rt.Execute(t.Context(), tc.cmd); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Execute: %v, want an error saying %q", err, tc.wantErr)
			}
		})
	}
	if _, err := b.rt.Acquire(t.Context(), "no-such-instance"); err != mcpruntime.ErrUnknownInstance {
		t.Errorf("Acquire of an unknown id: %v", err)
	}
}
