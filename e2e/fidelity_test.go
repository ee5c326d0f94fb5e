package e2e_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// TestServerRequestsThroughSatellite runs the go-sdk's conformance server as a stdio server behind a real
// satellite and talks to it with real Go SDK clients of one user:
//   - two session-era clients call a tool that elicits at the same time, and each elicitation reaches the
//     client whose call caused it;
//   - a 2026-07-28 client gets the server's own input requests (their keys included) and continues the
//     call with its answer;
//   - a 2026-07-28 client without the sampling capability is refused with -32021 by the server itself,
//     which sees the client's capabilities rather than the satellite's.
func TestServerRequestsThroughSatellite(t *testing.T) {
	t.Parallel()
	server := buildConformanceServer(t)
	te := startTeamEndpoint(t, "fidelity", "conformance-fidelity", server, nil, true, "test_elicitation")

	t.Run("two sessions of one user", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		benSent := make(chan struct{})
		var once sync.Once
		var armed atomic.Bool // Ben's POSTs from here on are his call
		ben := connectEliciting(t, ctx, te, "2025-11-25", "ben", nil, func() {
			if armed.Load() {
				once.Do(func() { close(benSent) })
			}
		})
		benResult := make(chan string, 1)
		ann := connectEliciting(t, ctx, te, "2025-11-25", "ann", func() {
			// Ann's call waits for her answer while Ben's call reaches the satellite.
			armed.Store(true)
			go func() { benResult <- callElicitation(ctx, ben) }()
			select {
			case <-benSent:
			case <-ctx.Done():
			}
		}, nil)
		if got := callElicitation(ctx, ann); !strings.Contains(got, "action=accept") || !strings.Contains(got, "username:ann") {
			t.Errorf("ann's call = %q, want her own answer", got)
		}
		if got := <-benResult; !strings.Contains(got, "action=accept") || !strings.Contains(got, "username:ben") {
			t.Errorf("ben's call = %q, want his own answer", got)
		}
	})

	t.Run("2026-07-28 input requests", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		client := mcp.NewClient(&mcp.Implementation{Name: "manual", Version: "1"}, &mcp.ClientOptions{
			ElicitationHandler: func(context.Context, *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
				return nil, errors.New("answered by hand")
			},
			MultiRoundTrip: &mcp.MultiRoundTripOptions{Disabled: true},
		})
		cs := connectWith(t, ctx, te, client, "2026-07-28")
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "test_input_required_result_elicitation", Arguments: map[string]any{}})
		if err != nil {
			t.Fatal(err)
		}
		// The key is the server's own, not one the satellite made up.
		if _, ok := res.InputRequests["user_name"].(*mcp.ElicitParams); !ok {
			t.Fatalf("first round = %+v, want the server's input request user_name", res)
		}
		res, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "test_input_required_result_elicitation", Arguments: map[string]any{},
			RequestState:   res.RequestState,
			InputResponses: mcp.InputResponseMap{"user_name": &mcp.ElicitResult{Action: "accept", Content: map[string]any{"name": "Ann"}}}})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Content) != 1 || res.Content[0].(*mcp.TextContent).Text != "Hello, Ann!" {
			t.Errorf("after the answer = %+v", res.Content)
		}
	})

	t.Run("capability refused", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		client := mcp.NewClient(&mcp.Implementation{Name: "bare", Version: "1"}, &mcp.ClientOptions{Capabilities: &mcp.ClientCapabilities{}})
		cs := connectWith(t, ctx, te, client, "2026-07-28")
		_, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "test_missing_capability", Arguments: map[string]any{}})
		var jerr *jsonrpc.Error
		if !errors.As(err, &jerr) || jerr.Code != mcp.CodeMissingRequiredClientCapabilities {
			t.Errorf("a client without sampling: %v, want error %d", err, mcp.CodeMissingRequiredClientCapabilities)
		}
	})
}

// connectEliciting connects a client of the team's member at version that answers elicitations with its
// name; beforeAnswer runs before it answers, and sent when it sends a request.
func connectEliciting(t *testing.T, ctx context.Context, te *teamEndpoint, version, name string, beforeAnswer, sent func()) *mcp.ClientSession {
	t.Helper()
	client := mcp.NewClient(&mcp.Implementation{Name: name, Version: "1"}, &mcp.ClientOptions{
		ElicitationHandler: func(context.Context, *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
			if beforeAnswer != nil {
				beforeAnswer()
			}
			return &mcp.ElicitResult{Action: "accept", Content: map[string]any{"username": name}}, nil
		},
	})
	var rt http.RoundTripper = bearerTransport{te.token}
	if sent != nil {
		rt = signalTransport{next: rt, sent: sent}
	}
	cs, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: te.endpoint, HTTPClient: &http.Client{Transport: rt}},
		&mcp.ClientSessionOptions{ProtocolVersion: version})
	if err != nil {
		t.Fatalf("connect %s: %v", name, err)
	}
	t.Cleanup(func() { _ = cs.Close() })
	return cs
}

func connectWith(t *testing.T, ctx context.Context, te *teamEndpoint, client *mcp.Client, version string) *mcp.ClientSession {
	t.Helper()
	cs, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: te.endpoint, HTTPClient: &http.Client{Transport: bearerTransport{te.token}}},
		&mcp.ClientSessionOptions{ProtocolVersion: version})
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { _ = cs.Close() })
	return cs
}

// signalTransport calls sent whenever a POST goes out.
type signalTransport struct {
	next http.RoundTripper
	sent func()
}

func (s signalTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodPost {
		s.sent()
	}
	return s.next.RoundTrip(r)
}

func callElicitation(ctx context.Context, cs *mcp.ClientSession) string {
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "test_elicitation", Arguments: map[string]any{"message": "who?"}})
	if err != nil {
		return "error: " + err.Error()
	}
	if len(res.Content) == 0 {
		return "no content"
	}
	if tc, ok := res.Content[0].(*mcp.TextContent); ok {
		return tc.Text
	}
	return "not text"
}
