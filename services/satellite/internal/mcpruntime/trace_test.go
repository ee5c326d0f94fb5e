package mcpruntime_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"go.opentelemetry.io/otel/trace"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
)

// TestRemoteCallsCarryTraceparent calls tools of remote servers, over Streamable HTTP and legacy SSE,
// within a traced call: the HTTP request that carries each tools/call has the call's traceparent header.
func TestRemoteCallsCarryTraceparent(t *testing.T) {
	t.Parallel()
	server := mcp.NewServer(&mcp.Implementation{Name: "traced", Version: "1"}, nil)
	server.AddTool(&mcp.Tool{Name: "echo", InputSchema: map[string]any{"type": "object"}},
		func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "ok"}}}, nil
		})
	get := func(*http.Request) *mcp.Server { return server }
	mux := http.NewServeMux()
	mux.Handle("/mcp", mcp.NewStreamableHTTPHandler(get, nil))
	mux.Handle("/sse", mcp.NewSSEHandler(get, nil))
	var mu sync.Mutex
	var seen []string // traceparent headers of requests that carried a tools/call
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			if strings.Contains(string(body), `"tools/call"`) {
				mu.Lock()
				seen = append(seen, r.Header.Get("Traceparent"))
				mu.Unlock()
			}
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)

	b := setup(t, nil)
	streamable := remoteInstance("traced-http", satellitev1.Transport_TRANSPORT_HTTP, srv.URL+"/mcp")
	sse := remoteInstance("traced-sse", satellitev1.Transport_TRANSPORT_SSE, srv.URL+"/sse")
	b.apply(t, streamable, sse)
	traceID, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	spanID, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ctx := trace.ContextWithSpanContext(t.Context(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: traceID, SpanID: spanID, TraceFlags: trace.FlagsSampled,
	}))
	for _, in := range []*satellitev1.Instance{streamable, sse} {
		b.waitStatus(t, in.GetId(), online)
		if _, err := callTool(ctx, b.rt, in.GetId(), &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{}}); err != nil {
			t.Fatalf("%s: %v", in.GetServerSlug(), err)
		}
	}
	// An untraced call carries none.
	if _, err := callTool(t.Context(), b.rt, streamable.GetId(), &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{}}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	if len(seen) != 3 || seen[0] != want || seen[1] != want || seen[2] != "" {
		t.Errorf("traceparent headers of the tools/call requests = %q, want %q twice, then none", seen, want)
	}
}
