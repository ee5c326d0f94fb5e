package e2e_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	dto "github.com/prometheus/client_model/go"

	"github.com/orrery/orrery/internal/mcptest"
)

// dashboardDir holds the Grafana dashboards of both services.
const dashboardDir = "../deploy/grafana"

// seriesNames are the names samples of families are exposed under: a histogram's _bucket, _sum and
// _count, a summary's own name, _sum and _count, and any other family's own name.
func seriesNames(families map[string]*dto.MetricFamily) map[string]bool {
	names := map[string]bool{}
	for name, f := range families {
		switch f.GetType() {
		case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
			names[name+"_bucket"], names[name+"_sum"], names[name+"_count"] = true, true, true
		case dto.MetricType_SUMMARY:
			names[name], names[name+"_sum"], names[name+"_count"] = true, true, true
		default:
			names[name] = true
		}
	}
	return names
}

// dashboardQueries returns every PromQL expression of a Grafana dashboard (panel targets' expr, in rows
// too) and the metrics its template variables query (label_values(metric, label)).
func dashboardQueries(t *testing.T, path string) (exprs, variableMetrics []string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var dashboard map[string]any
	if err := json.Unmarshal(data, &dashboard); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if expr, ok := v["expr"].(string); ok {
				exprs = append(exprs, expr)
			}
			for _, child := range v {
				walk(child)
			}
		case []any:
			for _, child := range v {
				walk(child)
			}
		}
	}
	walk(dashboard["panels"])
	labelValues := regexp.MustCompile(`label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)`)
	templating, _ := dashboard["templating"].(map[string]any)
	list, _ := templating["list"].([]any)
	for _, v := range list {
		variable, _ := v.(map[string]any)
		query, _ := variable["query"].(string)
		if q, ok := variable["query"].(map[string]any); ok {
			query, _ = q["query"].(string)
		}
		for _, m := range labelValues.FindAllStringSubmatch(query, -1) {
			variableMetrics = append(variableMetrics, m[1])
		}
	}
	return exprs, variableMetrics
}

// promqlKeywords are the words of PromQL that are neither functions nor metrics.
var promqlKeywords = []string{"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
	"unless", "offset", "inf", "nan"}

// aggregations are PromQL's aggregation operators, which may be followed by a by (…) or without (…)
// clause before their parenthesized argument.
var aggregations = []string{"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
	"bottomk", "topk", "quantile", "limitk", "limit_ratio"}

// grouping are the keywords followed by a parenthesized list of label names.
var grouping = []string{"by", "without", "on", "ignoring", "group_left", "group_right"}

// metricNames returns the metric names a PromQL expression selects, after replacing Grafana's variables:
// identifiers outside label matchers ({…}), ranges ([…]) and strings that are not functions or
// aggregations (followed by "("), keywords, or label names in by (…), on (…) and the like. It fails on
// brackets that do not pair up.
func metricNames(expr string) ([]string, error) {
	expr = regexp.MustCompile(`\$\{?[A-Za-z_][A-Za-z0-9_]*\}?`).ReplaceAllString(expr, "5m")
	var names []string
	var stack []byte
	pairs := map[byte]byte{')': '(', '}': '{', ']': '['}
	lastWord := ""
	for i := 0; i < len(expr); {
		c := expr[i]
		inMatcher := len(stack) > 0 && (stack[len(stack)-1] == '{' || stack[len(stack)-1] == '[')
		switch {
		case c == '"' || c == '\'' || c == '`':
			end := strings.IndexByte(expr[i+1:], c)
			if end < 0 {
				return nil, fmt.Errorf("unterminated string at %d", i)
			}
			i += end + 2
			continue
		case c == '(' || c == '{' || c == '[':
			stack = append(stack, c)
			if c == '(' && slices.Contains(grouping, lastWord) {
				// A list of label names: skip to its end.
				end := strings.IndexByte(expr[i:], ')')
				if end < 0 {
					return nil, fmt.Errorf("unclosed label list at %d", i)
				}
				stack = stack[:len(stack)-1]
				i += end + 1
				lastWord = ""
				continue
			}
		case c == ')' || c == '}' || c == ']':
			if len(stack) == 0 || stack[len(stack)-1] != pairs[c] {
				return nil, fmt.Errorf("unpaired %q at %d", c, i)
			}
			stack = stack[:len(stack)-1]
		case isIdentStart(c) && !inMatcher:
			j := i
			for j < len(expr) && isIdentPart(expr[j]) {
				j++
			}
			word := expr[i:j]
			k := j
			for k < len(expr) && expr[k] == ' ' {
				k++
			}
			isCall := k < len(expr) && expr[k] == '('
			lower := strings.ToLower(word)
			if !isCall && !slices.Contains(promqlKeywords, lower) && !slices.Contains(aggregations, lower) {
				names = append(names, word)
			}
			lastWord = lower
			i = j
			continue
		case c >= '0' && c <= '9' && !inMatcher:
			for i < len(expr) && (isIdentPart(expr[i]) || expr[i] == '.') {
				i++
			}
			continue
		}
		if c != ' ' && c != '\n' && c != '\t' {
			lastWord = ""
		}
		i++
	}
	if len(stack) > 0 {
		return nil, fmt.Errorf("unclosed %q", stack[len(stack)-1])
	}
	return names, nil
}

func isIdentStart(c byte) bool {
	return c == '_' || c == ':' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

func isIdentPart(c byte) bool { return isIdentStart(c) || (c >= '0' && c <= '9') }

func TestMetricNamesOfPromQL(t *testing.T) {
	t.Parallel()
	for expr, want := range map[string][]string{
		`sum by (team, outcome) (rate(orrery_satellite_tool_calls_total{team=~"$team", outcome!="ok"}[$__rate_interval]))`: {"orrery_satellite_tool_calls_total"},
		`histogram_quantile(0.95, sum by (le) (rate(x_seconds_bucket[5m]))) / on (instance) group_left (job) up`:           {"x_seconds_bucket", "up"},
		`process_resident_memory_bytes{job="satellite"} > bool 1e9 or vector(0)`:                                           {"process_resident_memory_bytes"},
		`sum(increase(a_total[1h] offset 1d)) without (le) - b`:                                                            {"a_total", "b"},
	} {
		got, err := metricNames(expr)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("metricNames(%q) = %q, %v; want %q", expr, got, err, want)
		}
	}
	for _, bad := range []string{`sum(rate(x[5m])`, `x{a="b"`, `rate(x[5m)]`} {
		if _, err := metricNames(bad); err == nil {
			t.Errorf("metricNames(%q) accepted unpaired brackets", bad)
		}
	}
}

// TestDashboardsNameRealMetrics checks the Grafana dashboards in deploy/grafana against what the services
// expose: every metric a query names must be one the running satellite or control plane serves, after a
// tool call has made their metrics appear.
func TestDashboardsNameRealMetrics(t *testing.T) {
	t.Parallel()
	command, args := mcptest.Everything(t)
	te := startTeamEndpoint(t, "dashboards", "everything", command, args, false, "everything__echo")
	ctx := t.Context()
	session, err := connectMCP(ctx, te.endpoint, te.token)
	if err != nil {
		t.Fatal(err)
	}
	defer session.Close()
	if _, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "everything__echo", Arguments: map[string]any{"message": "x"}}); err != nil {
		t.Fatal(err)
	}
	served := map[string]map[string]bool{}
	for service, url := range map[string]string{"satellite": te.sat.MetricsURL, "controlplane": te.cp.URL + "/metrics"} {
		families, err := scrape(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		served[service] = seriesNames(families)
	}

	files, err := filepath.Glob(filepath.Join(dashboardDir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards in %s: %v", dashboardDir, err)
	}
	checked := map[string]int{}
	for _, path := range files {
		service := strings.TrimSuffix(filepath.Base(path), ".json")
		known := served[service]
		if known == nil {
			t.Errorf("%s: a dashboard of no known service (want one of satellite.json, controlplane.json)", path)
			continue
		}
		exprs, variableMetrics := dashboardQueries(t, path)
		if len(exprs) == 0 {
			t.Errorf("%s: no queries", path)
		}
		for _, expr := range exprs {
			names, err := metricNames(expr)
			if err != nil {
				t.Errorf("%s: %q: %v", path, expr, err)
				continue
			}
			if len(names) == 0 {
				t.Errorf("%s: %q names no metric", path, expr)
			}
			for _, name := range names {
				if !known[name] {
					t.Errorf("%s: %q names %s, which the %s does not serve", path, expr, name, service)
				}
				checked[service]++
			}
		}
		for _, name := range variableMetrics {
			if !known[name] {
				t.Errorf("%s: a variable queries %s, which the %s does not serve", path, name, service)
			}
		}
	}
	t.Logf("metric references checked: %v", checked)
}
