package e2e_test

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/orrery/orrery/e2e"
	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	"github.com/orrery/orrery/internal/mcptest"
)

// scrape reads a Prometheus exposition.
func scrape(ctx context.Context, url string) (map[string]*dto.MetricFamily, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	return parser.TextToMetricFamilies(resp.Body)
}

// sample is the value of the series of family name whose labels are exactly labels: a counter's or
// gauge's value, or a histogram's sample count. ok is false when there is no such series.
func sample(families map[string]*dto.MetricFamily, name string, labels map[string]string) (v float64, ok bool) {
	f := families[name]
	if f == nil {
		return 0, false
	}
	for _, m := range f.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		if !maps.Equal(got, labels) {
			continue
		}
		switch {
		case m.GetHistogram() != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		case m.GetCounter() != nil:
			return m.GetCounter().GetValue(), true
		case m.GetGauge() != nil:
			return m.GetGauge().GetValue(), true
		}
	}
	return 0, false
}

// TestSatelliteMetricsAfterWorkload runs a scripted workload against a real control plane and satellite
// (tool calls, a call of a tool nobody has, a restart through the API of a server that will not stop at
// SIGTERM) and checks the values the satellite's metrics report for it.
func TestSatelliteMetricsAfterWorkload(t *testing.T) {
	t.Parallel()
	command, args := mcptest.Everything(t)
	// The shell ignores SIGTERM and outlives the server, so stopping the instance takes the grace period
	// and a SIGKILL: a sandbox kill with reason stop_timeout.
	script := `trap "" TERM; "$@"; sleep 60`
	te := startTeamEndpoint(t, "metrics", "everything", "sh", append([]string{"-c", script, "sh", command}, args...), false, "everything__echo")
	ctx := t.Context()
	// A session-era client, so that the session counts as open.
	client := mcp.NewClient(&mcp.Implementation{Name: "e2e", Version: "test"}, nil)
	session, err := client.Connect(ctx, &mcp.StreamableClientTransport{
		Endpoint: te.endpoint, HTTPClient: &http.Client{Transport: bearerTransport{te.token}},
	}, &mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
	if err != nil {
		t.Fatal(err)
	}
	defer session.Close()

	const calls = 3
	for i := range calls {
		res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "everything__echo", Arguments: map[string]any{"message": fmt.Sprint(i)}})
		if err != nil || res.IsError {
			t.Fatalf("call %d: %v %v", i, err, res)
		}
	}
	if _, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "everything__no_such_tool", Arguments: map[string]any{}}); err == nil {
		t.Fatal("a call of a tool nobody has succeeded")
	}

	team := map[string]string{"team": te.id, "installation": te.installationID}
	with := func(extra map[string]string) map[string]string {
		m := maps.Clone(team)
		maps.Copy(m, extra)
		return m
	}
	check := func(families map[string]*dto.MetricFamily, name string, labels map[string]string, want float64) error {
		got, ok := sample(families, name, labels)
		if !ok {
			return fmt.Errorf("%s%v: no such series", name, labels)
		}
		if got != want {
			return fmt.Errorf("%s%v = %v, want %v", name, labels, got, want)
		}
		return nil
	}
	families, err := scrape(ctx, te.sat.MetricsURL)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"orrery_satellite_tool_calls_total", with(map[string]string{"tool": "echo", "outcome": "ok"}), calls},
		{"orrery_satellite_tool_call_duration_seconds", with(map[string]string{"outcome": "ok"}), calls},
		{"orrery_satellite_tool_calls_total", map[string]string{"team": te.id, "installation": "", "tool": "other", "outcome": "unknown_tool"}, 1},
		{"orrery_satellite_mcp_sessions_open", map[string]string{}, 1},
		{"orrery_satellite_instances", map[string]string{"state": "online"}, 1},
		{"orrery_satellite_instances", map[string]string{"state": "crashed"}, 0},
		{"orrery_satellite_instance_restarts_total", map[string]string{"reason": "manual_restart"}, 0},
		{"orrery_satellite_sandbox_kills_total", map[string]string{"reason": "stop_timeout"}, 0},
		{"orrery_satellite_events_dropped_total", map[string]string{}, 0},
	} {
		if err := check(families, c.name, c.labels, c.want); err != nil {
			t.Error(err)
		}
	}
	for _, call := range []string{"heartbeat", "poll"} {
		if n, _ := sample(families, "orrery_satellite_control_plane_calls_total", map[string]string{"call": call, "code": "ok"}); n < 1 {
			t.Errorf("%d successful %s calls counted, want at least 1", int(n), call)
		}
	}

	// A team member's restart through the API: the server outlives SIGTERM and is killed, then comes back.
	instanceID := "everything-metrics-metrics-dev-" + te.installationID
	if _, err := te.cp.Instances().RestartInstance(ctx, connect.NewRequest(&apiv1.RestartInstanceRequest{
		TeamId: te.id, InstanceId: instanceID,
	})); err != nil {
		t.Fatal(err)
	}
	e2e.WaitFor(t, onlineTimeout, "the restart counted and the server online again", func() error {
		families, err := scrape(ctx, te.sat.MetricsURL)
		if err != nil {
			return err
		}
		for _, c := range []struct {
			name, label, value string
			want               float64
		}{
			{"orrery_satellite_instance_restarts_total", "reason", "manual_restart", 1},
			{"orrery_satellite_instance_restarts_total", "reason", "crash", 0},
			{"orrery_satellite_sandbox_kills_total", "reason", "stop_timeout", 1},
			{"orrery_satellite_sandbox_kills_total", "reason", "memory", 0},
			{"orrery_satellite_instances", "state", "online", 1},
		} {
			if err := check(families, c.name, map[string]string{c.label: c.value}, c.want); err != nil {
				return err
			}
		}
		return nil
	})

	// Every event the control plane acknowledged was timed, once the queue is empty.
	e2e.WaitFor(t, 30*time.Second, "the event queue delivered", func() error {
		families, err := scrape(ctx, te.sat.MetricsURL)
		if err != nil {
			return err
		}
		if err := check(families, "orrery_satellite_events_buffered", map[string]string{}, 0); err != nil {
			return err
		}
		sent, _ := sample(families, "orrery_satellite_events_sent_total", map[string]string{})
		if sent < calls+1 { // the request logs at least, and status changes
			return fmt.Errorf("%v events sent, want more than %d", sent, calls)
		}
		return check(families, "orrery_satellite_event_delivery_seconds", map[string]string{}, sent)
	})
}
