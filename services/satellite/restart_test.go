package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"google.golang.org/protobuf/types/known/timestamppb"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
)

// withToken adds a bearer token to every request.
type withToken struct{ token string }

func (w withToken) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+w.token)
	return http.DefaultTransport.RoundTrip(r)
}

// TestRestartedSatelliteServesAtOnce runs 50 instances of a real stdio server, stops the satellite and
// starts it again on the same state directory. As soon as /readyz says ready, a new session's first
// tools/list has every tool of every instance, although the servers are only coming back, and a call to
// one of them waits for it rather than failing as an unknown tool.
func TestRestartedSatelliteServesAtOnce(t *testing.T) {
	t.Parallel()
	const (
		instances      = 50
		toolsPerServer = 3
		token          = "restart-test-access-token"
	)
	toolserver := buildToolServer(t)
	srv := quickBackend(t)
	teamID, userID := uuid.NewString(), uuid.NewString()
	var specs []*satellitev1.Instance
	for i := range instances {
		slug := fmt.Sprintf("srv%02d", i)
		specs = append(specs, &satellitev1.Instance{
			Id: slug + "-acme-ada-" + uuid.NewString(), ContentHash: "h1", InstallationId: uuid.NewString(),
			TeamId: teamID, TeamSlug: "acme", UserId: userID, UserSlug: "ada", ServerSlug: slug, ToolPrefix: slug,
			Transport: satellitev1.Transport_TRANSPORT_STDIO, Command: toolserver,
			Env: map[string]string{"TOOLSERVER_TOOLS": fmt.Sprint(toolsPerServer)},
		})
	}
	srv.SetConfiguration("v1", specs...)

	first := testConfig(t, srv)
	first.MCPMaxConcurrentStarts = 4
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- run(ctx, first, testLogger(t)) }()
	srv.Wait(t.Context(), "every instance online", 2*time.Minute, func() bool {
		online := map[string]bool{}
		for _, ev := range srv.Events() {
			if ev.GetStatusChanged().GetStatus() == satellitev1.InstanceStatus_INSTANCE_STATUS_ONLINE {
				online[ev.GetInstanceId()] = true
			}
		}
		return len(online) == instances
	})
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("first run: %v", err)
	}

	second := testConfig(t, srv)
	second.StateDir = first.StateDir
	second.MCPMaxConcurrentStarts = 4
	base := "http://" + second.listener.Addr().String()
	srv.SetAccessToken(token, &satellitev1.IntrospectTokenResponse{
		Active: true, TeamId: teamID, TeamSlug: "acme", UserId: userID, ClientId: "client-1",
		Audience: base + "/teams/acme/mcp", Scopes: []string{"mcp:read", "mcp:tools:execute"},
		ExpiresAt: timestamppb.New(time.Now().Add(time.Hour)),
	})
	ctx, cancel = context.WithCancel(t.Context())
	defer cancel()
	errc = make(chan error, 1)
	started := time.Now()
	go func() { errc <- run(ctx, second, testLogger(t)) }()
	srv.Wait(t.Context(), "readiness after the restart", time.Minute, func() bool {
		code, _ := get(t, base+"/readyz")
		return code == http.StatusOK
	})
	ready := time.Since(started)
	_, metrics := get(t, "http://"+second.metricsListener.Addr().String()+"/metrics")
	onlineAtReady := metricValue(metrics, `orrery_satellite_instances{state="online"}`)

	client := mcp.NewClient(&mcp.Implementation{Name: "restart-test", Version: "1"}, nil)
	cs, err := client.Connect(t.Context(), &mcp.StreamableClientTransport{Endpoint: base + "/teams/acme/mcp",
		HTTPClient: &http.Client{Transport: withToken{token}}}, &mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
	if err != nil {
		t.Fatalf("connect after the restart: %v", err)
	}
	defer cs.Close()
	res, err := cs.ListTools(t.Context(), nil)
	if err != nil {
		t.Fatalf("first tools/list after the restart: %v", err)
	}
	listed := time.Since(started)
	names := map[string]bool{}
	for _, tool := range res.Tools {
		names[tool.Name] = true
	}
	for i := range instances {
		for j := range toolsPerServer {
			if name := fmt.Sprintf("srv%02d__tool_%02d", i, j); !names[name] {
				t.Errorf("first tools/list after the restart lacks %s", name)
			}
		}
	}
	if len(res.Tools) != instances*toolsPerServer {
		t.Errorf("first tools/list after the restart has %d tools, want %d", len(res.Tools), instances*toolsPerServer)
	}
	t.Logf("ready %v after the restart with %s of %d instances online; first tools/list answered at %v with %d tools",
		ready.Round(time.Millisecond), onlineAtReady, instances, listed.Round(time.Millisecond), len(res.Tools))

	// The last server in line may not be up yet: the call waits for it.
	call, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: fmt.Sprintf("srv%02d__tool_00", instances-1),
		Arguments: map[string]any{"message": "back"}})
	if err != nil || call.IsError {
		t.Fatalf("call after the restart: %v %v", err, call)
	}
	if text := call.Content[0].(*mcp.TextContent).Text; !strings.Contains(text, "back") {
		t.Errorf("call after the restart answered %q", text)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("second run: %v", err)
	}
}

// metricValue returns the value of the sample named series (name and labels as exposed), or "".
func metricValue(exposition, series string) string {
	for line := range strings.Lines(exposition) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), series+" "); ok {
			return v
		}
	}
	return ""
}
