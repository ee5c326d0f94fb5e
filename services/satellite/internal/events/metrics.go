package events

import "github.com/prometheus/client_golang/prometheus"

var (
	bufferedDesc = prometheus.NewDesc("orrery_satellite_events_buffered",
		"Events waiting for the control plane, including the batch in flight.", nil, nil)
	unsavedDesc = prometheus.NewDesc("orrery_satellite_events_unsaved",
		"Accepted events not yet committed to disk: what a crash now could lose.", nil, nil)
	sentDesc = prometheus.NewDesc("orrery_satellite_events_sent_total",
		"Events the control plane acknowledged.", nil, nil)
	droppedDesc = prometheus.NewDesc("orrery_satellite_events_dropped_total",
		"Events given up on, such as because the buffer was full.", nil, nil)
)

func newDeliveryHistogram() prometheus.Histogram {
	return prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "orrery_satellite_event_delivery_seconds",
		Help: "Time from an event's emission to the control plane's acknowledgement of its batch; an event kept on disk across a restart counts from when it occurred.",
		// Batches wait up to the flush delay (3 s by default) and retry with backoff through outages.
		Buckets: []float64{.01, .05, .1, .25, .5, 1, 2, 3, 4, 5, 10, 30, 60, 300, 1800},
	})
}

// Collector returns a Prometheus collector of the batcher's Stats, read at each scrape.
func (b *Batcher) Collector() prometheus.Collector { return batcherCollector{b} }

type batcherCollector struct{ b *Batcher }

func (c batcherCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- bufferedDesc
	ch <- unsavedDesc
	ch <- sentDesc
	ch <- droppedDesc
	c.b.delivery.Describe(ch)
}

func (c batcherCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.b.Stats()
	ch <- prometheus.MustNewConstMetric(bufferedDesc, prometheus.GaugeValue, float64(s.Buffered))
	ch <- prometheus.MustNewConstMetric(unsavedDesc, prometheus.GaugeValue, float64(s.Unsaved))
	ch <- prometheus.MustNewConstMetric(sentDesc, prometheus.CounterValue, float64(s.Sent))
	ch <- prometheus.MustNewConstMetric(droppedDesc, prometheus.CounterValue, float64(s.Dropped))
	c.b.delivery.Collect(ch)
}
