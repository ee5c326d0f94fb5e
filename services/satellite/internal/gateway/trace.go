package gateway

import (
	"context"
	"net/http"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

const tracerName = "github.com/orrery/orrery/services/satellite/internal/gateway"

// startCallSpan starts the span of one tools/call of rt's instance, as a child of the W3C traceparent the
// client sent with the HTTP request, if any, so the call shows in the client's trace.
func (g *Gateway) startCallSpan(ctx context.Context, header http.Header, rt route) (context.Context, trace.Span) {
	if header != nil {
		ctx = propagation.TraceContext{}.Extract(ctx, propagation.HeaderCarrier(header))
	}
	return g.tracer.Start(ctx, "tools/call", trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(
		attribute.String("orrery.team_id", rt.inst.TeamID),
		attribute.String("orrery.installation_id", rt.inst.InstallationID),
		attribute.String("orrery.instance_id", rt.inst.ID),
		attribute.String("mcp.tool.name", truncate(rt.name, maxLoggedToolName)),
	))
}

// endCallSpan ends span with the call's outcome. An error's text is not recorded: it is response content,
// like the result, and request logging may be off.
func endCallSpan(span trace.Span, outcome string) {
	span.SetAttributes(attribute.String("orrery.outcome", outcome))
	if outcome != outcomeOK {
		span.SetStatus(codes.Error, outcome)
	}
	span.End()
}

// tracerOf is the gateway's tracer from a provider, nil meaning no tracing.
func tracerOf(tp trace.TracerProvider) trace.Tracer {
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	return tp.Tracer(tracerName)
}

// callHeader is the HTTP header of the request that carried a tools/call, when a transport kept it.
func callHeader(req *mcp.CallToolRequest) http.Header {
	if req.Extra == nil {
		return nil
	}
	return req.Extra.Header
}
