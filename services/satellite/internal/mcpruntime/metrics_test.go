package mcpruntime_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
)

func TestCollectorCountsInstancesByState(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	reg := prometheus.NewRegistry()
	reg.MustRegister(b.rt.Collector())
	misconfigured := stdioInstance("misconfigured", "") // a stdio server without a command
	b.apply(t, misconfigured)
	b.waitStatus(t, misconfigured.GetId(), satellitev1.InstanceStatus_INSTANCE_STATUS_ERROR)

	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			got[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
		}
	}
	if len(got) != len(satellitev1.InstanceStatus_name)-1 {
		t.Errorf("%d states reported, want every state but unspecified: %v", len(got), got)
	}
	if got["error"] != 1 || got["online"] != 0 || got["dormant"] != 0 {
		t.Errorf("instances by state = %v, want one in error", got)
	}
}
