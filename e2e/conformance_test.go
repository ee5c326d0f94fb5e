package e2e_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/orrery/orrery/e2e"
	"github.com/orrery/orrery/internal/mcptest"
)

const (
	// conformanceEnv turns TestConformance on; it is off in a plain go test because it installs Node 22
	// and the suite from npm on first use.
	conformanceEnv = "ORRERY_CONFORMANCE"
	// conformanceServer is the go-sdk's reference server for the suite, built at the go-sdk version in
	// go.mod; it passes every server scenario of the suite when the suite talks to it directly.
	conformanceServer = "github.com/modelcontextprotocol/go-sdk/conformance/everything-server"
	// suiteTimeout bounds one run of the whole suite. A scenario that hangs costs the ones after it, which
	// are then reported as having no result.
	suiteTimeout = 10 * time.Minute
)

// conformanceRuns are the suite versions and protocol eras TestConformance runs, each with the baseline of
// scenarios expected to fail through the satellite.
var conformanceRuns = []struct {
	name     string
	version  string   // of @modelcontextprotocol/conformance
	args     []string // added to the suite's server command
	baseline string
	// directPasses says the reference server passes every scenario when the suite talks to it directly.
	// The tasks extension's scenarios need tools the go-sdk's server does not have, so there the direct
	// run only compares.
	directPasses bool
	// stateless runs the reference server in the SDK's stateless mode, the one that speaks 2026-07-28.
	stateless bool
}{
	{name: "v" + mcptest.ConformanceVersion, version: mcptest.ConformanceVersion,
		baseline: "../conformance/baseline.txt", directPasses: true},
	// --requirements runs what the revision requires plus, unscored, the tasks extension.
	{name: "v" + mcptest.ConformancePreviewVersion + "/2026-07-28", version: mcptest.ConformancePreviewVersion,
		args: []string{"--requirements", "2026-07-28"}, baseline: "../conformance/baseline-2026-07-28.txt", stateless: true},
}

// TestConformance runs the official MCP conformance suite's server scenarios twice per entry of
// conformanceRuns: straight against the go-sdk's conformance everything-server over Streamable HTTP (the
// reference), and against a team endpoint on a real satellite where that server is installed as a stdio
// server. The suite cannot send an Authorization header, so it talks to the endpoint through a loopback
// proxy of this test that adds the member's bearer token. Every scenario failing through the satellite
// must be listed in the run's baseline, and every listed one must still fail, so the baseline always says
// exactly what does not work yet.
//
//	ORRERY_CONFORMANCE=1 go test -count=1 -run '^TestConformance$' -v -timeout 30m ./e2e/
func TestConformance(t *testing.T) {
	if os.Getenv(conformanceEnv) == "" {
		t.Skipf("set %s=1 to run the MCP conformance suite (installs Node 22 and the suite from npm once)", conformanceEnv)
	}
	t.Parallel()
	server := buildConformanceServer(t)
	direct := map[bool]string{false: startConformanceServer(t, server, false), true: startConformanceServer(t, server, true)}
	// The suite reaches the endpoint through a proxy that passes Host and Origin on, as a proxy in front
	// of a satellite may: the satellite is told the proxy's address is a host it is reached by. Debug logs
	// of the satellite are printed when the test fails, where they show what a scenario waited for.
	proxySrv := httptest.NewUnstartedServer(nil)
	te := startTeamEndpointWith(t, []string{"ORRERY_LOG_LEVEL=debug", "ORRERY_MCP_ALLOWED_HOSTS=" + proxySrv.Listener.Addr().String()},
		"conformance", "everything", server, nil, true, "test_simple_text")
	// The tasks extension's scenarios call tools of their own, which a fixture server of the repo's has, as
	// tasks in the experimental form the satellite translates to; it is installed beside the reference.
	te.addInstallation(t, "tasks", mcptest.TaskServer(t), nil, "slow_compute")
	proxy := bearerProxy(t, proxySrv, te.endpoint, te.token)

	for _, run := range conformanceRuns {
		t.Run(run.name, func(t *testing.T) {
			baseline := readBaseline(t, run.baseline)
			reference := runConformance(t, "direct", run.version, direct[run.stateless], run.args)
			through := runConformance(t, "satellite", run.version, proxy, run.args)
			for _, name := range slices.Sorted(maps.Keys(reference)) {
				if r := reference[name]; run.directPasses && !r.passed() {
					t.Errorf("direct: %s failed against the reference server: %s", name, r.failure)
				}
				if _, ok := through[name]; !ok {
					t.Errorf("satellite: %s has no result (the suite hung or crashed before it)", name)
				}
			}
			for _, name := range slices.Sorted(maps.Keys(through)) {
				r := through[name]
				reason, expected := baseline[name]
				switch {
				case r.passed() && expected:
					t.Errorf("satellite: %s passes now; remove it from %s (listed because: %s)", name, run.baseline, reason)
				case !r.passed() && !expected:
					t.Errorf("satellite: %s fails and is not in %s: %s", name, run.baseline, r.failure)
				}
			}
			for _, name := range slices.Sorted(maps.Keys(baseline)) {
				if _, ok := through[name]; !ok {
					t.Errorf("%s lists %s, which the suite did not run", run.baseline, name)
				}
			}
		})
	}
}

// scenarioResult is the outcome of one scenario, from the checks.json the suite writes for it.
type scenarioResult struct {
	scenario      string
	passes, fails int    // checks with status SUCCESS and FAILURE; WARNING and SKIPPED count for neither
	failure       string // the first failed check's id and message
}

func (r scenarioResult) passed() bool { return r.fails == 0 }

// resultDir matches the directories the suite writes: server-<scenario>-<timestamp>.
var resultDir = regexp.MustCompile(`^server-(.+)-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z$`)

// runConformance runs the suite's server scenarios at version against url, with extra arguments, logs a line
// per scenario and the totals, and returns the results by scenario.
func runConformance(t *testing.T, label, version, url string, extra []string) map[string]scenarioResult {
	t.Helper()
	node, suite := mcptest.ConformanceAt(t, version)
	out := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), suiteTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, slices.Concat(suite, []string{"server", "--url", url, "-o", out}, extra)...)
	output, err := cmd.CombinedOutput()
	// The suite exits non-zero when a scenario fails; the results on disk are what counts.
	if ctx.Err() != nil {
		t.Errorf("%s: the suite did not finish within %v; reporting the scenarios it completed", label, suiteTimeout)
	}
	entries, readErr := os.ReadDir(out)
	if readErr != nil || len(entries) == 0 {
		t.Fatalf("%s: the suite wrote no results (%v, exit %v):\n%s", label, readErr, err, output)
	}
	results := map[string]scenarioResult{}
	var passedScenarios, passedChecks, failedChecks int
	for _, e := range entries {
		m := resultDir.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		r := readChecks(t, m[1], filepath.Join(out, e.Name(), "checks.json"))
		results[r.scenario] = r
		passedChecks += r.passes
		failedChecks += r.fails
		status := "PASS"
		if !r.passed() {
			status = "FAIL " + r.failure
		} else {
			passedScenarios++
		}
		t.Logf("%s: %-32s %d passed, %d failed  %s", label, r.scenario, r.passes, r.fails, status)
	}
	t.Logf("%s: %d of %d scenarios passed; checks: %d passed, %d failed", label, passedScenarios, len(results), passedChecks, failedChecks)
	if t.Failed() {
		t.Logf("%s: suite output:\n%s", label, output)
	}
	return results
}

func readChecks(t *testing.T, scenario, path string) scenarioResult {
	t.Helper()
	r := scenarioResult{scenario: scenario}
	data, err := os.ReadFile(path)
	if err != nil {
		r.fails, r.failure = 1, "no checks.json: "+err.Error()
		return r
	}
	var checks []struct {
		ID           string `json:"id"`
		Status       string `json:"status"`
		ErrorMessage string `json:"errorMessage"`
	}
	if err := json.Unmarshal(data, &checks); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	for _, c := range checks {
		switch c.Status {
		case "SUCCESS":
			r.passes++
		case "FAILURE":
			r.fails++
			if r.failure == "" {
				r.failure = c.ID + ": " + c.ErrorMessage
			}
		}
	}
	return r
}

// readBaseline reads the expected failures: one scenario per line followed by its reason; # starts a
// comment line.
func readBaseline(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	baseline := map[string]string{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		scenario, reason, _ := strings.Cut(line, " ")
		if reason = strings.TrimSpace(reason); reason == "" {
			t.Fatalf("%s:%d: %s has no reason", path, n, scenario)
		}
		baseline[scenario] = reason
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return baseline
}

// buildConformanceServer builds the go-sdk's conformance server from the module cache, at the version this
// module requires.
func buildConformanceServer(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "everything-server")
	if out, err := exec.CommandContext(t.Context(), "go", "build", "-o", path, conformanceServer).CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", conformanceServer, err, out)
	}
	return path
}

// startConformanceServer serves the conformance server over Streamable HTTP on a free loopback port and
// returns its endpoint. Stateful for the session era, because its sampling and elicitation scenarios need
// a session for the server's requests to the client; stateless for the 2026-07-28 era, which the SDK
// speaks only there. The satellite's endpoint serves both on one URL.
func startConformanceServer(t *testing.T, server string, stateless bool) string {
	t.Helper()
	addr := freeAddr(t)
	proc := e2e.StartProcess(t, "conformance everything-server", server, []string{"-http", addr, fmt.Sprintf("-stateless=%t", stateless)}, nil)
	e2e.WaitFor(t, 10*time.Second, "the conformance server to listen", func() error {
		if proc.Exited() {
			t.Fatalf("conformance server exited:\n%s", proc.Output())
		}
		conn, err := net.Dial("tcp", addr)
		if err == nil {
			_ = conn.Close()
		}
		return err
	})
	return "http://" + addr + "/mcp"
}

// bearerProxy serves, on srv, a loopback URL that forwards every request to endpoint with an Authorization
// header added, as a user's MCP client configured with the token would send it. Like a reverse proxy that
// does not rewrite them, it passes Host and Origin on unchanged, so the endpoint's own DNS-rebinding checks
// see what the suite sends. Nothing else changes.
func bearerProxy(t *testing.T, srv *httptest.Server, endpoint, token string) string {
	t.Helper()
	target, err := url.Parse(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = bearerHandler(target, token)
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL + "/mcp"
}

// bearerHandler is bearerProxy's handler.
func bearerHandler(target *url.URL, token string) http.Handler {
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.Out.URL.Scheme, r.Out.URL.Host, r.Out.URL.Path, r.Out.URL.RawPath = target.Scheme, target.Host, target.Path, ""
			r.Out.Host = r.In.Host
			r.Out.Header.Set("Authorization", "Bearer "+token)
		},
		FlushInterval: -1, // SSE streams event by event
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Without full duplex, net/http closes the request body as soon as the response starts. The
		// upstream answers with an SSE stream while the transport may still be finishing the body, and
		// the closed body then cuts the stream: the client sees a response without its result.
		if err := http.NewResponseController(w).EnableFullDuplex(); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		proxy.ServeHTTP(w, r)
	})
}

// TestBearerProxyStreamsDuringRequestBody holds the proxy to what the conformance suite relies on: a
// response may stream while the request body is still arriving, and the body still reaches the upstream.
func TestBearerProxyStreamsDuringRequestBody(t *testing.T) {
	t.Parallel()
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := http.NewResponseController(w).EnableFullDuplex(); err != nil {
			t.Error(err)
		}
		_, _ = io.WriteString(w, "started\n")
		_ = http.NewResponseController(w).Flush()
		body, err := io.ReadAll(r.Body)
		if err != nil {
			_, _ = io.WriteString(w, "body: "+err.Error()+"\n")
			return
		}
		_, _ = io.WriteString(w, "body: "+string(body)+"\n")
	}))
	t.Cleanup(upstream.Close)
	target, err := url.Parse(upstream.URL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httptest.NewServer(bearerHandler(target, "token"))
	t.Cleanup(proxy.Close)

	// Without full duplex the exchange stalls rather than fails; the deadline turns that into an error.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	bodyReader, bodyWriter := io.Pipe()
	context.AfterFunc(ctx, func() { _ = bodyWriter.CloseWithError(ctx.Err()) })
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, proxy.URL, bodyReader)
	if err != nil {
		t.Fatal(err)
	}
	firstSent := make(chan struct{})
	go func() {
		_, _ = io.WriteString(bodyWriter, "first ")
		close(firstSent)
	}()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := bufio.NewReader(resp.Body)
	if line, err := lines.ReadString('\n'); line != "started\n" {
		t.Fatalf("first line = %q, %v; want the stream to start before the body ends", line, err)
	}
	<-firstSent // the response may start before the transport has read any of the body
	_, _ = io.WriteString(bodyWriter, "second")
	_ = bodyWriter.Close()
	if line, err := lines.ReadString('\n'); line != "body: first second\n" {
		t.Fatalf("second line = %q, %v; want the whole body to reach the upstream", line, err)
	}
}
