package gateway

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// scrape returns the text exposition the metrics handler serves for reg.
func scrape(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("scrape: status %d", rec.Code)
	}
	b, _ := io.ReadAll(rec.Body)
	return string(b)
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	b := setup(t, setupOptions{metrics: reg, maxSessionsPerUser: 2})
	cs := b.connect(t, "ann", "acme", clientOptions{version: sessionVersion})
	b.openSession(t, "ann")
	for _, name := range []string{"alpha__echo", "alpha__echo", "alpha__fail"} {
		if _, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: name, Arguments: map[string]any{}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "alpha__no_such_tool"}); err == nil {
		t.Fatal("unknown tool called without an error")
	}
	// ann holds both sessions the limit allows.
	resp := b.do(t, http.MethodPost, "/teams/acme/mcp", "ann", initializeBody, nil)
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("third session: status %d, want 429", resp.StatusCode)
	}

	got := scrape(t, reg)
	for _, want := range []string{
		`orrery_satellite_tool_calls_total{installation="inst-alpha-1",outcome="ok",team="` + teamAcme + `",tool="echo"} 2`,
		`orrery_satellite_tool_calls_total{installation="inst-alpha-1",outcome="tool_error",team="` + teamAcme + `",tool="fail"} 1`,
		`orrery_satellite_tool_calls_total{installation="",outcome="unknown_tool",team="` + teamAcme + `",tool="other"} 1`,
		`orrery_satellite_tool_call_duration_seconds_count{installation="inst-alpha-1",outcome="ok",team="` + teamAcme + `"} 2`,
		`orrery_satellite_tool_call_duration_seconds_count{installation="inst-alpha-1",outcome="tool_error",team="` + teamAcme + `"} 1`,
		`orrery_satellite_mcp_sessions_open 2`,
		`orrery_satellite_mcp_sessions_refused_total{limit="user"} 1`,
	} {
		if !strings.Contains(got, want+"\n") {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(got, "no_such_tool") {
		t.Error("a tool name the client made up became a label")
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", got)
	}
}

func TestToolLabelIsBounded(t *testing.T) {
	t.Parallel()
	m, err := newMetrics(prometheus.NewRegistry(), newSessionSlots(1, 1, 1))
	if err != nil {
		t.Fatal(err)
	}
	for i := range maxToolLabelsPerInstallation {
		name := "t" + strings.Repeat("x", i)
		if got := m.toolLabel("inst", name); got != name {
			t.Fatalf("tool %d labelled %q", i, got)
		}
	}
	if got := m.toolLabel("inst", "one-more"); got != otherToolLabel {
		t.Errorf("tool past the bound labelled %q, want %q", got, otherToolLabel)
	}
	if got := m.toolLabel("inst", "t"); got != "t" {
		t.Errorf("a tool seen before labelled %q", got)
	}
	if got := m.toolLabel("other-inst", strings.Repeat("n", maxToolLabelLen+1)); got != otherToolLabel {
		t.Errorf("a name too long labelled %q", got)
	}
	if got := m.toolLabel("other-inst", "echo"); got != "echo" {
		t.Errorf("another installation's tool labelled %q", got)
	}
}
