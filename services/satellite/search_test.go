package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"google.golang.org/protobuf/types/known/timestamppb"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/internal/mcptest"
	"github.com/orrery/orrery/services/satellite/internal/toolsearch"
)

// TestSearchModeWithRealServerAndClients runs server-everything for two teams on one satellite and uses
// the first team's endpoint in search mode through the Go SDK and the official TypeScript SDK: the
// endpoint lists only the meta-tools, search finds the long-running operation tool and never the other
// team's tools, and calling it through call_tool brings its progress notifications to the client and
// leaves a request log naming the real tool.
func TestSearchModeWithRealServerAndClients(t *testing.T) {
	t.Parallel()
	const token, otherToken = "search-test-access-token", "search-test-other-team-token"
	srv := quickBackend(t)
	teamID, userID := uuid.NewString(), uuid.NewString()
	otherTeamID, otherUserID := uuid.NewString(), uuid.NewString()
	command, args := mcptest.Everything(t)
	srv.SetConfiguration("v1", &satellitev1.Instance{
		Id: "everything-acme-ada-1", ContentHash: "h1", InstallationId: uuid.NewString(), TeamId: teamID, TeamSlug: "acme",
		UserId: userID, UserSlug: "ada", ServerSlug: "everything", ToolPrefix: "everything",
		Transport: satellitev1.Transport_TRANSPORT_STDIO, Command: command, Args: args, RequestLoggingEnabled: true,
	}, &satellitev1.Instance{
		Id: "secretive-globex-cy-1", ContentHash: "h1", InstallationId: uuid.NewString(), TeamId: otherTeamID, TeamSlug: "globex",
		UserId: otherUserID, UserSlug: "cy", ServerSlug: "secretive", ToolPrefix: "secretive",
		Transport: satellitev1.Transport_TRANSPORT_STDIO, Command: command, Args: args,
	})
	cfg := testConfig(t, srv)
	cfg.EventFlushDelay = 10 * time.Millisecond
	base := "http://" + cfg.listener.Addr().String()
	endpoint := base + "/teams/acme/mcp?tools=search"
	srv.SetAccessToken(token, &satellitev1.IntrospectTokenResponse{
		Active: true, TeamId: teamID, TeamSlug: "acme", UserId: userID, ClientId: "client-1",
		Audience: base + "/teams/acme/mcp", Scopes: []string{"mcp:read", "mcp:tools:execute"},
		ExpiresAt: timestamppb.New(time.Now().Add(time.Hour)),
	})
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- run(ctx, cfg, testLogger(t)) }()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	srv.SetAccessToken(otherToken, &satellitev1.IntrospectTokenResponse{
		Active: true, TeamId: otherTeamID, TeamSlug: "globex", UserId: otherUserID, ClientId: "client-2",
		Audience: base + "/teams/globex/mcp", Scopes: []string{"mcp:read", "mcp:tools:execute"},
		ExpiresAt: timestamppb.New(time.Now().Add(time.Hour)),
	})
	srv.Wait(t.Context(), "both teams' servers online", time.Minute, func() bool {
		discovered := map[string]bool{}
		for _, ev := range srv.Events() {
			if len(ev.GetToolsDiscovered().GetTools()) > 0 {
				discovered[ev.GetInstanceId()] = true
			}
		}
		return len(discovered) == 2
	})

	// The client hands notifications to this handler on its own schedule: the last one may come after
	// the call's result, so the test waits for each rather than counting when the call returns.
	progress := make(chan struct{}, 16)
	client := mcp.NewClient(&mcp.Implementation{Name: "search-test", Version: "1"}, &mcp.ClientOptions{
		ProgressNotificationHandler: func(context.Context, *mcp.ProgressNotificationClientRequest) { progress <- struct{}{} },
	})
	cs, err := client.Connect(t.Context(), &mcp.StreamableClientTransport{Endpoint: endpoint,
		HTTPClient: &http.Client{Transport: withToken{token}}}, &mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer cs.Close()
	listed, err := cs.ListTools(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tool := range listed.Tools {
		names = append(names, tool.Name)
	}
	if want := []string{toolsearch.CallToolName, toolsearch.SearchToolName}; !slices.Equal(names, want) {
		t.Fatalf("tools in search mode = %v, want %v", names, want)
	}
	const query = "long running operation with progress"
	const wantTool = "everything__trigger-long-running-operation"
	res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: toolsearch.SearchToolName, Arguments: map[string]any{"query": query, "limit": 3}})
	if err != nil || res.IsError {
		t.Fatalf("search: %v %v", err, res)
	}
	var found struct {
		Tools []struct {
			Name        string         `json:"name"`
			InputSchema map[string]any `json:"inputSchema"`
		} `json:"tools"`
	}
	if err := json.Unmarshal([]byte(res.Content[0].(*mcp.TextContent).Text), &found); err != nil {
		t.Fatal(err)
	}
	if len(found.Tools) == 0 || found.Tools[0].Name != wantTool || found.Tools[0].InputSchema["properties"] == nil {
		t.Fatalf("search %q found %+v, want %s first with its input schema", query, found.Tools, wantTool)
	}
	params := &mcp.CallToolParams{Name: toolsearch.CallToolName,
		Arguments: map[string]any{"name": wantTool, "arguments": map[string]any{"duration": 1, "steps": 3}}}
	params.SetProgressToken("go-client")
	res, err = cs.CallTool(t.Context(), params)
	if err != nil || res.IsError {
		t.Fatalf("call_tool %s: %v %v", wantTool, err, res)
	}
	for n := range 3 {
		select {
		case <-progress:
		case <-time.After(10 * time.Second):
			t.Fatalf("%d progress notifications through call_tool, want 3 (one per step)", n)
		}
	}
	select {
	case <-progress:
		t.Errorf("more than 3 progress notifications through call_tool, want one per step")
	default:
	}
	// The other team's identical server is on the same satellite: its tools are never found or called.
	for _, q := range []string{"echo", "secretive echo", "secretive"} {
		res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: toolsearch.SearchToolName, Arguments: map[string]any{"query": q, "limit": 20}})
		if err != nil || res.IsError {
			t.Fatalf("search %q: %v %v", q, err, res)
		}
		if text := res.Content[0].(*mcp.TextContent).Text; strings.Contains(text, "secretive") {
			t.Errorf("search %q found the other team's tools: %s", q, text)
		}
	}
	res, err = cs.CallTool(t.Context(), &mcp.CallToolParams{Name: toolsearch.CallToolName, Arguments: map[string]any{"name": "secretive__echo",
		"arguments": map[string]any{"message": "hi"}}})
	if err != nil || !res.IsError {
		t.Errorf("call_tool of the other team's tool = %v, %v; want a tool error", res, err)
	}
	other, err := mcp.NewClient(&mcp.Implementation{Name: "search-test-other", Version: "1"}, nil).Connect(t.Context(),
		&mcp.StreamableClientTransport{Endpoint: base + "/teams/globex/mcp?tools=search", HTTPClient: &http.Client{Transport: withToken{otherToken}}},
		&mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	res, err = other.CallTool(t.Context(), &mcp.CallToolParams{Name: toolsearch.SearchToolName, Arguments: map[string]any{"query": "echo", "limit": 20}})
	if err != nil || res.IsError {
		t.Fatalf("the other team's search: %v %v", err, res)
	}
	if text := res.Content[0].(*mcp.TextContent).Text; !strings.Contains(text, "secretive__echo") || strings.Contains(text, "everything__") {
		t.Errorf("the other team's search found %s; want its own echo and nothing of acme's", text)
	}

	srv.Wait(t.Context(), "the call's request log", 10*time.Second, func() bool {
		for _, ev := range srv.Events() {
			if rl := ev.GetRequestLog(); rl != nil && rl.GetToolName() == "trigger-long-running-operation" && rl.GetSuccess() {
				return true
			}
		}
		return false
	})

	// The TypeScript SDK, with the same endpoint and token.
	node, sdkDir := mcptest.TypeScriptSDK(t)
	script, err := filepath.Abs("testdata/search-client.mjs")
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithTimeout(t.Context(), time.Minute)
	defer stop()
	out, err := exec.CommandContext(runCtx, node, script, sdkDir, endpoint, token, query, `{"duration":1,"steps":4}`).CombinedOutput()
	if err != nil {
		t.Fatalf("TypeScript client: %v\n%s", err, out)
	}
	var ts struct {
		Tools    []string `json:"tools"`
		Found    []string `json:"found"`
		Progress int      `json:"progress"`
		Result   string   `json:"result"`
	}
	if err := json.Unmarshal(out, &ts); err != nil {
		t.Fatalf("TypeScript client printed %q: %v", out, err)
	}
	if !slices.Equal(ts.Tools, []string{toolsearch.CallToolName, toolsearch.SearchToolName}) || len(ts.Found) == 0 ||
		ts.Found[0] != wantTool || ts.Progress != 4 || !strings.Contains(ts.Result, "completed") {
		t.Errorf("TypeScript client saw %+v; want the meta-tools, %s found first, 4 progress notifications and its result", ts, wantTool)
	}
}
