package gateway

import (
	"net/http"
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
