package mcpruntime_test

import (
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/services/satellite/internal/mcpruntime"
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
		if f.GetName() != "orrery_satellite_instances" {
			continue
		}
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

// TestCollectorCountsRestartsAndKills gives a server that ignores SIGTERM a new configuration: the restart
// is counted by its reason, and the SIGKILL that ended the old process after the grace period as a sandbox
// kill.
func TestCollectorCountsRestartsAndKills(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *mcpruntime.Config) { c.StopGrace = 200 * time.Millisecond })
	reg := prometheus.NewRegistry()
	reg.MustRegister(b.rt.Collector())
	stubborn := everythingScript(t, "stubborn", `trap "" TERM; "$@"; sleep 60`)
	b.apply(t, stubborn)
	b.waitStatus(t, stubborn.GetId(), online)
	before := b.events.of(stubborn.GetId())
	reconfigured := proto.Clone(stubborn).(*satellitev1.Instance)
	reconfigured.ContentHash = "h2"
	b.apply(t, reconfigured)
	b.events.wait(t, stubborn.GetId(), "online again", func(evs []*satellitev1.Event) bool {
		return len(evs) > len(before) && slices.Contains(statuses(evs[len(before):]), online)
	})

	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			if c := m.GetCounter(); c != nil {
				got[f.GetName()+"/"+m.GetLabel()[0].GetValue()] = c.GetValue()
			}
		}
	}
	want := map[string]float64{
		"orrery_satellite_instance_restarts_total/error_recovery": 0,
		"orrery_satellite_instance_restarts_total/manual_restart": 0,
		"orrery_satellite_instance_restarts_total/config_reload":  1,
		"orrery_satellite_instance_restarts_total/crash":          0,
		"orrery_satellite_instance_restarts_total/other":          0,
		"orrery_satellite_sandbox_kills_total/stop_timeout":       1,
		"orrery_satellite_sandbox_kills_total/memory":             0,
		"orrery_satellite_sandbox_kills_total/cpu_time":           0,
		"orrery_satellite_sandbox_kills_total/file_size":          0,
	}
	if !maps.Equal(got, want) {
		t.Errorf("counters = %v, want %v", got, want)
	}
}
