package events_test

import (
	"maps"
	"testing"
	"testing/synctest"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/orrery/orrery/services/satellite/internal/events"
)

func TestCollectorReportsStats(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{err: unavailable}
		b := newBatcher(t, r, events.Config{BufferSize: 30})
		reg := prometheus.NewRegistry()
		reg.MustRegister(b.Collector())
		for i := range 20 {
			b.Emit(logEvent(teamA, instA, i))
		}
		synctest.Wait() // the first 20 are now in flight, failing
		for i := 20; i < 100; i++ {
			b.Emit(logEvent(teamA, instA, i))
		}
		families, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]float64{}
		for _, f := range families {
			m := f.GetMetric()[0]
			got[f.GetName()] = m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
		want := map[string]float64{
			"orrery_satellite_events_buffered":      30,
			"orrery_satellite_events_unsaved":       0,
			"orrery_satellite_events_sent_total":    0,
			"orrery_satellite_events_dropped_total": 70,
		}
		if !maps.Equal(got, want) {
			t.Errorf("metrics = %v, want %v", got, want)
		}
	})
}
