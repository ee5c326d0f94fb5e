package mcpruntime

import (
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/services/satellite/internal/sandbox"
)

var instancesDesc = prometheus.NewDesc("orrery_satellite_instances",
	"MCP server instances the satellite runs, by state (online, dormant, crashed, …).", []string{"state"}, nil)

// Restart reasons, the reason label of the restart metric: a crash, or the reason of a restart command or
// of a new configuration. Anything else counts as restartOther, so the label stays bounded.
const (
	restartCrash = "crash"
	restartOther = "other"
)

var restartReasons = []string{restartCrash, "manual_restart", "error_recovery", "config_reload", restartOther}

// runtimeMetrics are the runtime's counters. Every label value is known in advance and reported from the
// start, at 0, so a rate over a reason that has not happened yet is 0 rather than absent.
type runtimeMetrics struct {
	restarts *prometheus.CounterVec
	kills    *prometheus.CounterVec
}

func newRuntimeMetrics() *runtimeMetrics {
	m := &runtimeMetrics{
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orrery_satellite_instance_restarts_total",
			Help: "MCP server restarts, by reason: crash (automatic, after the server ended), manual_restart, error_recovery, config_reload, other.",
		}, []string{"reason"}),
		kills: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orrery_satellite_sandbox_kills_total",
			Help: "MCP server processes killed by the satellite, by reason: a sandbox limit (memory, cpu_time, file_size) or stop_timeout (still running after the stop grace period).",
		}, []string{"reason"}),
	}
	for _, r := range restartReasons {
		m.restarts.WithLabelValues(r)
	}
	for _, r := range sandbox.KillReasons {
		m.kills.WithLabelValues(r)
	}
	return m
}

// observeRestart counts a restart for reason.
func (m *runtimeMetrics) observeRestart(reason string) {
	if !slices.Contains(restartReasons, reason) {
		reason = restartOther
	}
	m.restarts.WithLabelValues(reason).Inc()
}

// observeExit counts a process that was killed, once it has ended.
func (m *runtimeMetrics) observeExit(p *sandbox.Process) {
	if r := p.KillReason(); r != "" {
		m.kills.WithLabelValues(r).Inc()
	}
}

// Collector returns a Prometheus collector of the runtime's instances by state, read at each scrape, and
// of its restarts and sandbox kills by reason. Every state is reported, at 0 when no instance is in it, so
// that a state's series does not vanish.
func (r *Runtime) Collector() prometheus.Collector { return runtimeCollector{r} }

type runtimeCollector struct{ r *Runtime }

func (c runtimeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- instancesDesc
	c.r.metrics.restarts.Describe(ch)
	c.r.metrics.kills.Describe(ch)
}

func (c runtimeCollector) Collect(ch chan<- prometheus.Metric) {
	counts := make(map[satellitev1.InstanceStatus]int)
	for _, in := range c.r.all() {
		counts[in.currentStatus()]++
	}
	for v := range satellitev1.InstanceStatus_name {
		s := satellitev1.InstanceStatus(v)
		if s == satellitev1.InstanceStatus_INSTANCE_STATUS_UNSPECIFIED {
			continue
		}
		ch <- prometheus.MustNewConstMetric(instancesDesc, prometheus.GaugeValue, float64(counts[s]), stateLabel(s))
	}
	c.r.metrics.restarts.Collect(ch)
	c.r.metrics.kills.Collect(ch)
}

// stateLabel is a status as a label value: INSTANCE_STATUS_ONLINE is "online".
func stateLabel(s satellitev1.InstanceStatus) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "INSTANCE_STATUS_"))
}
