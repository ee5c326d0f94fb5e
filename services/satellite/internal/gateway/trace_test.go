package gateway

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// traceparent adds a W3C traceparent header to every request.
type traceparent struct {
	value string
	next  http.RoundTripper
}

func (tp traceparent) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Traceparent", tp.value)
	return tp.next.RoundTrip(r)
}

func TestToolCallSpansContinueTheClientsTrace(t *testing.T) {
	t.Parallel()
	recorder := tracetest.NewSpanRecorder()
	b := setup(t, setupOptions{tracer: sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder))})
	const (
		traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
		parent  = "00f067aa0ba902b7"
	)
	client := mcp.NewClient(&mcp.Implementation{Name: "test-client", Version: "1"}, nil)
	cs, err := client.Connect(t.Context(), &mcp.StreamableClientTransport{
		Endpoint:   b.url + "/teams/acme/mcp",
		HTTPClient: &http.Client{Transport: traceparent{value: "00-" + traceID + "-" + parent + "-01", next: bearer{token: "ann"}}},
	}, &mcp.ClientSessionOptions{ProtocolVersion: sessionVersion})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close() })
	for _, name := range []string{"alpha__echo", "alpha__fail"} {
		if _, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: name, Arguments: map[string]any{}}); err != nil {
			t.Fatal(err)
		}
	}

	spans := recorder.Ended()
	if len(spans) != 2 {
		t.Fatalf("%d spans ended, want 2", len(spans))
	}
	for i, want := range []struct {
		tool, outcome string
		status        codes.Code
	}{{"echo", outcomeOK, codes.Unset}, {"fail", outcomeToolError, codes.Error}} {
		s := spans[i]
		if s.Name() != "tools/call" || s.SpanContext().TraceID().String() != traceID || s.Parent().SpanID().String() != parent {
			t.Errorf("span %d: %q in trace %s under %s, want tools/call in the client's trace", i, s.Name(),
				s.SpanContext().TraceID(), s.Parent().SpanID())
		}
		attrs := map[string]string{}
		for _, kv := range s.Attributes() {
			attrs[string(kv.Key)] = kv.Value.String()
		}
		if attrs["mcp.tool.name"] != want.tool || attrs["orrery.outcome"] != want.outcome ||
			attrs["orrery.team_id"] != teamAcme || attrs["orrery.installation_id"] != "inst-alpha-1" {
			t.Errorf("span %d attributes = %v", i, attrs)
		}
		if s.Status().Code != want.status {
			t.Errorf("span %d status = %v, want %v", i, s.Status().Code, want.status)
		}
	}
}

// TestTraceContextReachesServerAndRequestLog sends a traceparent the two ways MCP clients do, as an HTTP
// header and in params._meta (without tracing configured on the satellite, and with): the downstream
// server gets the call's trace in its request's _meta, and the request log records the trace id.
func TestTraceContextReachesServerAndRequestLog(t *testing.T) {
	t.Parallel()
	const (
		traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
		parent  = "00f067aa0ba902b7"
		header  = "00-" + traceID + "-" + parent + "-01"
	)
	for _, tc := range []struct {
		name   string
		traced bool
		inMeta bool
	}{
		{"header, no tracing", false, false},
		{"_meta, no tracing", false, true},
		{"header, tracing", true, false},
		{"_meta, tracing", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var opts setupOptions
			recorder := tracetest.NewSpanRecorder()
			if tc.traced {
				opts.tracer = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder))
			}
			b := setup(t, opts)
			seen := make(chan mcp.Meta, 1)
			b.alpha.server.AddTool(&mcp.Tool{Name: "meta", InputSchema: map[string]any{"type": "object"}},
				func(_ context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
					seen <- req.Params.Meta
					return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "ok"}}}, nil
				})
			b.backend.rediscover(t, "alpha-1")

			var transport http.RoundTripper = bearer{token: "ann"}
			params := &mcp.CallToolParams{Name: "alpha__meta", Arguments: map[string]any{}}
			if tc.inMeta {
				params.Meta = mcp.Meta{"traceparent": header, "tracestate": "vendor=1"}
			} else {
				transport = traceparent{value: header, next: transport}
			}
			client := mcp.NewClient(&mcp.Implementation{Name: "test-client", Version: "1"}, nil)
			cs, err := client.Connect(t.Context(), &mcp.StreamableClientTransport{
				Endpoint: b.url + "/teams/acme/mcp", HTTPClient: &http.Client{Transport: transport},
			}, &mcp.ClientSessionOptions{ProtocolVersion: sessionVersion})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cs.Close() })
			if _, err := cs.CallTool(t.Context(), params); err != nil {
				t.Fatal(err)
			}

			meta := <-seen
			got, _ := meta["traceparent"].(string)
			parts := strings.Split(got, "-")
			if len(parts) != 4 || parts[1] != traceID {
				t.Fatalf("downstream _meta.traceparent = %q, want one in trace %s", got, traceID)
			}
			if tc.traced {
				spans := recorder.Ended()
				if len(spans) != 1 || spans[0].SpanContext().SpanID().String() != parts[2] || spans[0].Parent().SpanID().String() != parent {
					t.Errorf("downstream parent %s; want the satellite's span, itself under the client's %s", parts[2], parent)
				}
			} else if parts[2] != parent {
				t.Errorf("downstream parent %s without tracing, want the client's %s", parts[2], parent)
			}
			if tc.inMeta && meta["tracestate"] != "vendor=1" {
				t.Errorf("downstream _meta.tracestate = %v, want the client's", meta["tracestate"])
			}
			logs := b.events.requestLogs()
			if len(logs) != 1 || logs[0].GetRequestLog().GetTraceId() != traceID {
				t.Errorf("request logs %v, want one with trace id %s", logs, traceID)
			}
		})
	}
}

// TestUntracedCallHasNoTraceID keeps trace ids out of request logs of calls nobody traced.
func TestUntracedCallHasNoTraceID(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{})
	cs := b.connect(t, "ann", "acme", clientOptions{version: sessionVersion})
	if _, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "alpha__echo", Arguments: map[string]any{}}); err != nil {
		t.Fatal(err)
	}
	if logs := b.events.requestLogs(); len(logs) != 1 || logs[0].GetRequestLog().GetTraceId() != "" {
		t.Errorf("request logs %v, want one without a trace id", logs)
	}
}
