package events_test

import (
	"maps"
	"math"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/orrery/orrery/services/satellite/internal/backoff"
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
			// Nothing acknowledged, nothing timed.
			"orrery_satellite_event_delivery_seconds": 0,
		}
		if !maps.Equal(got, want) {
			t.Errorf("metrics = %v, want %v", got, want)
		}
	})
}

// TestDeliveryLatency times events from Emit to acknowledgement: a batch waits for the flush delay, and one
// that fails waits for the retry as well.
func TestDeliveryLatency(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{}
		b := newBatcher(t, r, events.Config{FlushDelay: 3 * time.Second, Backoff: backoff.Policy{Min: 2 * time.Second, Max: 2 * time.Second, Rand: almostOne}})
		reg := prometheus.NewRegistry()
		reg.MustRegister(b.Collector())
		for i := range 4 {
			b.Emit(logEvent(teamA, instA, i))
		}
		time.Sleep(5 * time.Second)
		synctest.Wait()
		r.setErr(unavailable)
		b.Emit(logEvent(teamB, instB, 0))
		time.Sleep(4 * time.Second) // flushed at 3 s, fails, retried 2 s later
		r.setErr(nil)
		time.Sleep(10 * time.Second)
		synctest.Wait()

		families, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range families {
			if f.GetName() != "orrery_satellite_event_delivery_seconds" {
				continue
			}
			h := f.GetMetric()[0].GetHistogram()
			if h.GetSampleCount() != 5 || math.Abs(h.GetSampleSum()-(4*3+5)) > 0.01 {
				t.Errorf("delivery: %d events in %vs, want 5 in 17s (four after 3 s, one after 5 s)", h.GetSampleCount(), h.GetSampleSum())
			}
			return
		}
		t.Error("no delivery histogram")
	})
}
