package mcpruntime

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
)

var instancesDesc = prometheus.NewDesc("orrery_satellite_instances",
	"MCP server instances the satellite runs, by state (online, dormant, crashed, …).", []string{"state"}, nil)

// Collector returns a Prometheus collector of the runtime's instances by state, read at each scrape. Every
// state is reported, at 0 when no instance is in it, so that a state's series does not vanish.
func (r *Runtime) Collector() prometheus.Collector { return runtimeCollector{r} }

type runtimeCollector struct{ r *Runtime }

func (c runtimeCollector) Describe(ch chan<- *prometheus.Desc) { ch <- instancesDesc }

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
}

// stateLabel is a status as a label value: INSTANCE_STATUS_ONLINE is "online".
func stateLabel(s satellitev1.InstanceStatus) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "INSTANCE_STATUS_"))
}
