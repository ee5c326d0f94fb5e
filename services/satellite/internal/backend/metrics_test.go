package backend_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// calls reads orrery_satellite_control_plane_calls_total{call, code} from reg.
func calls(t *testing.T, reg *prometheus.Registry, call, code string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "orrery_satellite_control_plane_calls_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["call"] == call && labels["code"] == code {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func TestCountsCallOutcomes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.srv.SetNextHeartbeat(10 * time.Millisecond)
	reg := prometheus.NewRegistry()
	b.cfg.Prometheus = reg
	c, _ := start(t, b.cfg)
	b.waitReady(t, c)
	b.srv.Wait(t.Context(), "a heartbeat and a poll counted", waitLimit, func() bool {
		return calls(t, reg, "heartbeat", "ok") > 0 && calls(t, reg, "poll", "ok") > 0
	})

	b.srv.SetDown(true)
	b.srv.Wait(t.Context(), "failed heartbeats and polls counted", waitLimit, func() bool {
		return calls(t, reg, "heartbeat", "unavailable") > 0 && calls(t, reg, "poll", "unavailable") > 0
	})
	b.srv.SetDown(false)
	ok := calls(t, reg, "heartbeat", "ok")
	b.srv.Wait(t.Context(), "heartbeats counted after the outage", waitLimit, func() bool {
		return calls(t, reg, "heartbeat", "ok") > ok
	})
}
