package backend

import (
	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics count the outcomes of the calls that keep the satellite in touch with the control plane. A
// nil *metrics counts nothing.
type metrics struct {
	calls *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	m := &metrics{calls: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "orrery_satellite_control_plane_calls_total",
		Help: "Heartbeats and command polls sent to the control plane, by call (heartbeat, poll) and code (ok or the Connect error code, such as unavailable).",
	}, []string{"call", "code"})}
	if err := reg.Register(m.calls); err != nil {
		return nil, err
	}
	return m, nil
}

// observe counts one call's outcome. The codes are Connect's fixed set, so the label stays bounded.
func (m *metrics) observe(call string, err error) {
	if m == nil {
		return
	}
	code := "ok"
	if err != nil {
		code = connect.CodeOf(err).String()
	}
	m.calls.WithLabelValues(call, code).Inc()
}
