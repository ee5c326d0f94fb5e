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

// Collector returns a Prometheus collector of the batcher's Stats, read at each scrape.
func (b *Batcher) Collector() prometheus.Collector { return batcherCollector{b} }

type batcherCollector struct{ b *Batcher }

func (c batcherCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- bufferedDesc
	ch <- unsavedDesc
	ch <- sentDesc
	ch <- droppedDesc
}

func (c batcherCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.b.Stats()
	ch <- prometheus.MustNewConstMetric(bufferedDesc, prometheus.GaugeValue, float64(s.Buffered))
	ch <- prometheus.MustNewConstMetric(unsavedDesc, prometheus.GaugeValue, float64(s.Unsaved))
	ch <- prometheus.MustNewConstMetric(sentDesc, prometheus.CounterValue, float64(s.Sent))
	ch <- prometheus.MustNewConstMetric(droppedDesc, prometheus.CounterValue, float64(s.Dropped))
}
