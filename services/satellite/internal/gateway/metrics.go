package gateway

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/orrery/orrery/internal/policy"
	"github.com/orrery/orrery/services/satellite/internal/toolsearch"
)

// Outcomes of a tool call, the outcome label of the tool call metrics.
const (
	// outcomeOK is a result the tool did not mark as an error.
	outcomeOK = "ok"
	// outcomeToolError is a result the tool marked as an error (isError).
	outcomeToolError = "tool_error"
	// outcomeError is a call that got no result: the instance could not be reached or answered with a
	// JSON-RPC error.
	outcomeError = "error"
	// outcomeCanceled is a call the client canceled or gave up on.
	outcomeCanceled = "canceled"
	// outcomeInputRequired is a round of a 2026-07-28 call that ended asking the client for input; only
	// the span of the round has it, the metrics count the call once, when it is answered.
	outcomeInputRequired = "input_required"
	// outcomeUnknownTool is a call of a tool the user's server does not list; the SDK refuses it.
	outcomeUnknownTool = "unknown_tool"
	// outcomePolicyDenied is a call a policy refused; it never reached the instance.
	outcomePolicyDenied = "policy_denied"
)

// Bounds of the tool label. Team and installation ids are bounded by the satellite's configuration, but
// tool names are whatever a tenant's server lists, and a server may list new ones at will.
const (
	// maxToolLabelsPerInstallation is how many distinct tool names of one installation get a label of
	// their own; calls of further tools are counted under otherToolLabel.
	maxToolLabelsPerInstallation = 50
	// maxToolLabelLen is the longest tool name used as a label.
	maxToolLabelLen = 64
	otherToolLabel  = "other"
)

// metrics are the gateway's Prometheus metrics. A nil *metrics records nothing.
type metrics struct {
	calls    *prometheus.CounterVec
	duration *prometheus.HistogramVec
	refused  *prometheus.CounterVec
	denials  *prometheus.CounterVec

	mu    sync.Mutex
	tools map[string]map[string]bool // installation id → tool names with a label of their own
}

// newMetrics registers the gateway's metrics with reg; a nil reg gives nil metrics.
func newMetrics(reg prometheus.Registerer, slots *sessionSlots) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	m := &metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orrery_satellite_tool_calls_total",
			Help: "MCP tools/call requests served, by team, installation, tool and outcome (ok, tool_error, error, canceled, unknown_tool, policy_denied).",
		}, []string{"team", "installation", "tool", "outcome"}),
		// Without the tool label: a histogram costs a series per bucket, and latency per tool is in
		// the request logs.
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "orrery_satellite_tool_call_duration_seconds",
			Help:    "Time to answer an MCP tools/call, by team, installation and outcome.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
		}, []string{"team", "installation", "outcome"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orrery_satellite_mcp_sessions_refused_total",
			Help: "MCP sessions refused because a session limit was reached, by limit (user, team, satellite).",
		}, []string{"limit"}),
		// Policy names are bounded: at most policy.MaxPerScope per team and as many global ones.
		denials: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orrery_satellite_policy_denials_total",
			Help: "Tool calls refused by a policy, by team, policy, scope (global, team) and reason (denied, not_allowed, rate_limited, error).",
		}, []string{"team", "policy", "scope", "reason"}),
		tools: make(map[string]map[string]bool),
	}
	open := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "orrery_satellite_mcp_sessions_open",
		Help: "MCP client sessions open: Streamable HTTP sessions and legacy SSE streams, as counted against the session limits.",
	}, func() float64 { return float64(slots.open()) })
	// Refusals are reported at 0 from the start, so a rate over them is 0 rather than absent.
	for _, limit := range []string{"user", "team", "satellite"} {
		m.refused.WithLabelValues(limit)
	}
	for _, c := range []prometheus.Collector{m.calls, m.duration, m.refused, m.denials, open} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// callOutcome classifies a tools/call's answer.
func callOutcome(ctx context.Context, res *mcp.CallToolResult, err error) string {
	switch {
	case err != nil && (errors.Is(err, context.Canceled) || ctx.Err() != nil):
		return outcomeCanceled
	case err != nil || res == nil:
		return outcomeError
	case res.IsError:
		return outcomeToolError
	}
	return outcomeOK
}

// observeCall records one tools/call of rt's instance.
func (m *metrics) observeCall(rt route, outcome string, d time.Duration) {
	if m == nil {
		return
	}
	team, inst := rt.inst.TeamID, rt.inst.InstallationID
	m.calls.WithLabelValues(team, inst, m.toolLabel(inst, rt.name), outcome).Inc()
	m.duration.WithLabelValues(team, inst, outcome).Observe(d.Seconds())
}

// observeUnknownTool records a tools/call of a tool the team's server does not list. Its name is the
// client's and is never a label.
func (m *metrics) observeUnknownTool(team string) {
	if m == nil {
		return
	}
	m.calls.WithLabelValues(team, "", otherToolLabel, outcomeUnknownTool).Inc()
}

// observeDenial records a call of team refused by a policy.
func (m *metrics) observeDenial(team string, d *policy.Denial) {
	if m == nil {
		return
	}
	scope := "team"
	if d.Global {
		scope = "global"
	}
	m.denials.WithLabelValues(team, d.Policy, scope, d.Reason).Inc()
}

// observeRefused records a session refused by a limit.
func (m *metrics) observeRefused(e *sessionLimitError) {
	if m == nil {
		return
	}
	m.refused.WithLabelValues(e.limit).Inc()
}

// toolLabel is tool's label among the calls of installation: the name, for the first
// maxToolLabelsPerInstallation names seen, and otherToolLabel after that or for a name too long.
func (m *metrics) toolLabel(installation, tool string) string {
	if len(tool) > maxToolLabelLen {
		return otherToolLabel
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	names := m.tools[installation]
	if names[tool] {
		return tool
	}
	if len(names) >= maxToolLabelsPerInstallation {
		return otherToolLabel
	}
	if names == nil {
		names = make(map[string]bool)
		m.tools[installation] = names
	}
	names[tool] = true
	return tool
}

// unknownToolMiddleware counts the tools/call requests of tools the user's server does not list, which
// the SDK refuses before callTool sees them. On the search-mode server (search), the meta-tools are the
// ones it lists.
func (us *userServer) unknownToolMiddleware(search bool) mcp.Middleware {
	return func(next mcp.MethodHandler) mcp.MethodHandler {
		return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
			res, err := next(ctx, method, req)
			// Only a refused call can be of an unknown tool; the lock, which a resync holds, stays off the
			// path of calls that succeed.
			if call, ok := req.(*mcp.CallToolRequest); ok && err != nil && us.g.metrics != nil && call.Params != nil {
				name := call.Params.Name
				var known bool
				if search {
					known = name == toolsearch.SearchToolName || name == toolsearch.CallToolName
				} else {
					us.syncMu.Lock()
					_, known = us.tools[name]
					us.syncMu.Unlock()
				}
				if !known {
					us.g.metrics.observeUnknownTool(us.key.teamID)
				}
			}
			return res, err
		}
	}
}
