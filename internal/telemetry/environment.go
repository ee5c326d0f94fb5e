package telemetry

import "github.com/orrery/orrery/internal/configref"

// Environment lists the OpenTelemetry variables that configure tracing, for the configuration reference.
// Setup reads the first two itself; the OTLP exporter and the SDK read the others.
var Environment = []configref.Env{
	{Name: "OTEL_EXPORTER_OTLP_ENDPOINT", Usage: "base URL of an OTLP/HTTP collector, such as http://otel-collector:4318; traces are exported only when this or the next is set"},
	{Name: "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", Usage: "full URL of the collector's trace endpoint, instead of the base URL"},
	{Name: "OTEL_EXPORTER_OTLP_HEADERS", Usage: "headers sent to the collector, such as authorization=Bearer%20TOKEN (key=value pairs, comma-separated, values URL-encoded)"},
	{Name: "OTEL_EXPORTER_OTLP_TIMEOUT", Usage: "export timeout in milliseconds (default 10000)"},
	{Name: "OTEL_EXPORTER_OTLP_COMPRESSION", Usage: "gzip to compress exports"},
	{Name: "OTEL_EXPORTER_OTLP_CERTIFICATE", Usage: "CA certificate file to verify the collector with"},
	{Name: "OTEL_TRACES_SAMPLER", Usage: "sampler, such as parentbased_traceidratio (default parentbased_always_on)"},
	{Name: "OTEL_TRACES_SAMPLER_ARG", Usage: "the sampler's argument, such as 0.1 for a ratio"},
	{Name: "OTEL_RESOURCE_ATTRIBUTES", Usage: "more resource attributes, such as deployment.environment=production; service.name and service.version are always Orrery's own"},
}
