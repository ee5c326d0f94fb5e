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
// client sent, so the call shows in the client's trace: the HTTP request's header, or else the call's
// params._meta, where MCP clients put it on transports without headers.
func (g *Gateway) startCallSpan(ctx context.Context, req *mcp.CallToolRequest, rt route) (context.Context, trace.Span) {
	if header := callHeader(req); header != nil {
		ctx = propagation.TraceContext{}.Extract(ctx, propagation.HeaderCarrier(header))
	}
	if !trace.SpanContextFromContext(ctx).IsRemote() && req.Params != nil {
		ctx = propagation.TraceContext{}.Extract(ctx, metaCarrier(req.Params.Meta))
	}
	ctx, span := g.tracer.Start(ctx, "tools/call", trace.WithSpanKind(trace.SpanKindServer))
	// Without tracing (or when the sampler drops the call) the span records nothing, and the attributes
	// would be built for nothing on every call.
	if span.IsRecording() {
		span.SetAttributes(
			attribute.String("orrery.team_id", rt.inst.TeamID),
			attribute.String("orrery.installation_id", rt.inst.InstallationID),
			attribute.String("orrery.instance_id", rt.inst.ID),
			attribute.String("mcp.tool.name", truncate(rt.name, maxLoggedToolName)),
		)
	}
	return ctx, span
}

// endCallSpan ends span with the call's outcome. An error's text is not recorded: it is response content,
// like the result, and request logging may be off.
func endCallSpan(span trace.Span, outcome string) {
	if !span.IsRecording() {
		span.End()
		return
	}
	span.SetAttributes(attribute.String("orrery.outcome", outcome))
	if outcome != outcomeOK {
		span.SetStatus(codes.Error, outcome)
	}
	span.End()
}

// metaCarrier reads W3C Trace Context keys (traceparent, tracestate) from a request's _meta.
func metaCarrier(meta mcp.Meta) propagation.MapCarrier {
	carrier := propagation.MapCarrier{}
	for _, key := range (propagation.TraceContext{}).Fields() {
		if v, ok := meta[key].(string); ok {
			carrier[key] = v
		}
	}
	return carrier
}

// withTraceContext returns meta for a downstream request with the call's span as the traceparent, the
// way the MCP community carries Trace Context to servers: in params._meta, which reaches stdio servers
// too. Keys the client sent are replaced, since the downstream call's parent is the satellite's span.
func withTraceContext(ctx context.Context, meta mcp.Meta) mcp.Meta {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return meta
	}
	carrier := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, carrier)
	if meta == nil {
		meta = make(mcp.Meta, len(carrier))
	}
	for _, key := range (propagation.TraceContext{}).Fields() {
		delete(meta, key)
	}
	for k, v := range carrier {
		meta[k] = v
	}
	return meta
}

// traceIDOf is the trace id of ctx's span for a request log, or empty.
func traceIDOf(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.HasTraceID() {
		return ""
	}
	return sc.TraceID().String()
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
