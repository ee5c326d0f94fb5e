package gateway

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/prometheus/client_golang/prometheus"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/services/satellite/internal/toolsearch"
)

// searchTools calls search_tools and returns the names it found.
func searchTools(t *testing.T, cs *mcp.ClientSession, query string) []string {
	t.Helper()
	res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: toolsearch.SearchToolName, Arguments: map[string]any{"query": query}})
	if err != nil {
		t.Fatalf("search %q: %v", query, err)
	}
	if res.IsError {
		t.Fatalf("search %q: %s", query, callText(t, res))
	}
	var found struct {
		Tools []foundTool `json:"tools"`
	}
	if err := json.Unmarshal([]byte(callText(t, res)), &found); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range found.Tools {
		if f.InputSchema == nil {
			t.Errorf("%s came without its input schema", f.Name)
		}
		names = append(names, f.Name)
	}
	return names
}

func TestSearchModeListsMetaToolsAndCallsThroughThem(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{})
	for _, era := range eras {
		t.Run(era.name, func(t *testing.T) {
			t.Parallel()
			o := era.opts
			o.query = "?tools=search"
			cs := b.connect(t, "ann", "acme", o)
			if got := toolNames(t, cs); !slices.Equal(got, []string{toolsearch.CallToolName, toolsearch.SearchToolName}) {
				t.Fatalf("tools in search mode = %v", got)
			}
			// Resources and prompts are the same in both modes.
			if res, err := cs.ListResources(t.Context(), nil); err != nil || len(res.Resources) != 1 {
				t.Errorf("resources in search mode = %v, %v", res, err)
			}
			if got := searchTools(t, cs, "echo"); !slices.Equal(got, []string{"alpha__echo", "beta__echo"}) {
				t.Errorf("search echo = %v", got)
			}
			args := json.RawMessage(`{"z":1.50,"a":{"n":[true,null,"é"]},"m":"x"}`)
			res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: toolsearch.CallToolName,
				Arguments: map[string]any{"name": "alpha__echo", "arguments": args}})
			if err != nil {
				t.Fatal(err)
			}
			if got := callText(t, res); got != string(args) {
				t.Errorf("call_tool alpha__echo = %s, want the arguments as sent, %s", got, args)
			}
			res, err = cs.CallTool(t.Context(), &mcp.CallToolParams{Name: toolsearch.CallToolName, Arguments: map[string]any{"name": "alpha__nope"}})
			if err != nil || !res.IsError || !strings.Contains(callText(t, res), toolsearch.SearchToolName) {
				t.Errorf("call_tool of an unknown tool = %v, %v; want a tool error pointing to %s", res, err, toolsearch.SearchToolName)
			}
		})
	}
}

func TestSearchModeCallsAreLoggedAsTheRealTool(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{})
	cs := b.connect(t, "ann", "acme", clientOptions{version: sessionVersion, query: "?tools=search"})
	if _, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: toolsearch.CallToolName,
		Arguments: map[string]any{"name": "alpha__echo", "arguments": map[string]any{"q": 1}}}); err != nil {
		t.Fatal(err)
	}
	logs := b.events.requestLogs()
	if len(logs) != 1 {
		t.Fatalf("%d request logs, want 1 (searches are not tool calls of an instance)", len(logs))
	}
	rl := logs[0].GetRequestLog()
	if logs[0].GetInstanceId() != "alpha-1" || rl.GetToolName() != "echo" || rl.GetUserId() != userAnn || !rl.GetSuccess() ||
		rl.GetRequestBytes() != uint64(len(`{"q":1}`)) {
		t.Errorf("request log = %v", logs[0])
	}
}

// TestSearchModeCallRefusesArgumentsThatAreNotAnObject: a tool's arguments are an object, so call_tool
// refuses any other JSON value before it reaches an instance, and takes null as no arguments.
func TestSearchModeCallRefusesArgumentsThatAreNotAnObject(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{})
	cs := b.connect(t, "ann", "acme", clientOptions{version: sessionVersion, query: "?tools=search"})
	for _, args := range []string{`"rm -rf /"`, `[1,2]`, `42`, `true`} {
		res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: toolsearch.CallToolName,
			Arguments: map[string]any{"name": "alpha__echo", "arguments": json.RawMessage(args)}})
		if err != nil || !res.IsError || !strings.Contains(callText(t, res), "must be a JSON object") {
			t.Errorf("call_tool with arguments %s = %v, %v; want a tool error saying they must be an object", args, res, err)
		}
	}
	if logs := b.events.requestLogs(); len(logs) != 0 {
		t.Fatalf("refused calls reached an instance: %v", logs)
	}
	res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: toolsearch.CallToolName,
		Arguments: map[string]any{"name": "alpha__echo", "arguments": nil}})
	if err != nil || res.IsError {
		t.Fatalf("call_tool with null arguments = %v, %v; want the call made", res, err)
	}
	if logs := b.events.requestLogs(); len(logs) != 1 || logs[0].GetRequestLog().GetToolName() != "echo" {
		t.Errorf("request logs after a call with null arguments = %v, want the echo call", logs)
	}
}

func TestSearchModeProgressAndCancellation(t *testing.T) {
	t.Parallel()
	for _, era := range eras[:2] {
		t.Run(era.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, setupOptions{})
			o := era.opts
			o.query = "?tools=search"
			o.progress = make(chan *mcp.ProgressNotificationParams, 4)
			cs := b.connect(t, "ann", "acme", o)
			params := &mcp.CallToolParams{Name: toolsearch.CallToolName, Arguments: map[string]any{"name": "alpha__slow", "arguments": map[string]any{}}}
			progressAndCancellation(t, b, cs, o.progress, params)
		})
	}
}

// TestSearchNeverCrossesTenants searches and calls, in search mode, for what another team and another
// user of the same team have on the same satellite.
func TestSearchNeverCrossesTenants(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{})
	ann := b.connect(t, "ann", "acme", clientOptions{version: sessionVersion, query: "?tools=search"})
	cid := b.connect(t, "cid", "globex", clientOptions{version: statelessVersion, query: "?tools=search"})
	bob := b.connect(t, "bob", "acme", clientOptions{version: sessionVersion, query: "?tools=search"})
	for _, q := range []string{"classified", "secretserver", "secretserver classified", "delta epsilon"} {
		if got := searchTools(t, ann, q); len(got) != 0 {
			t.Errorf("ann's search %q found %v", q, got)
		}
	}
	if got := searchTools(t, cid, "echo classified alpha beta delta"); !slices.Equal(got, []string{"secretserver__classified"}) {
		t.Errorf("cid's search found %v", got)
	}
	if got := searchTools(t, bob, "echo"); !slices.Equal(got, []string{"delta__echo", "epsilon__echo"}) {
		t.Errorf("bob's search found %v", got)
	}
	for _, tc := range []struct {
		cs   *mcp.ClientSession
		name string
	}{{ann, "secretserver__classified"}, {cid, "alpha__echo"}, {bob, "alpha__echo"}} {
		res, err := tc.cs.CallTool(t.Context(), &mcp.CallToolParams{Name: toolsearch.CallToolName, Arguments: map[string]any{"name": tc.name}})
		if err != nil || !res.IsError {
			t.Fatalf("call_tool %s of another tenant = %v, %v; want a tool error", tc.name, res, err)
		}
		msg := strings.ReplaceAll(callText(t, res), tc.name, "")
		for _, leak := range []string{"classified", "secret", "alpha-1", teamAcme, teamGlobex} {
			if strings.Contains(msg, leak) {
				t.Errorf("error %q names %s", msg, leak)
			}
		}
	}
	if logs := b.events.requestLogs(); len(logs) != 0 {
		t.Errorf("refused calls reached an instance: %v", logs)
	}
}

// awaitListChanged waits for a list_changed notification that a change made.
func awaitListChanged(t *testing.T, changed <-chan struct{}, after string) {
	t.Helper()
	select {
	case <-changed:
	case <-time.After(5 * time.Second):
		t.Fatal("no list_changed after " + after)
	}
}

func TestSearchIndexFollowsToolChanges(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{})
	search := b.connect(t, "ann", "acme", clientOptions{version: sessionVersion, query: "?tools=search"})
	changed := make(chan struct{}, 1)
	// A session of the same user in full mode says when a resync happened; the index is brought up to
	// date in the same resync.
	b.connect(t, "ann", "acme", clientOptions{version: sessionVersion, listChanged: changed})
	if got := searchTools(t, search, "frobnicate"); len(got) != 0 {
		t.Fatalf("found %v before the tool existed", got)
	}
	b.alpha.addTool("frobnicate")
	b.backend.rediscover(t, "alpha-1")
	awaitListChanged(t, changed, "a tool was added")
	if got := searchTools(t, search, "frobnicate"); !slices.Equal(got, []string{"alpha__frobnicate"}) {
		t.Errorf("search after the tool was added = %v", got)
	}
	// A changed description is a new definition of the tool, which the index analyzes again.
	b.backend.update("alpha-1", func(inst *Instance) {
		inst.Selection.Descriptions = map[string]string{"frobnicate": "Polishes brass doorknobs"}
	})
	awaitListChanged(t, changed, "a description changed")
	if got := searchTools(t, search, "doorknobs"); !slices.Equal(got, []string{"alpha__frobnicate"}) {
		t.Errorf("search for the new description = %v", got)
	}
	b.backend.update("alpha-1", func(inst *Instance) { inst.Online, inst.Status = false, "crashed" })
	awaitListChanged(t, changed, "an instance went down")
	if got := searchTools(t, search, "frobnicate echo"); !slices.Equal(got, []string{"beta__echo"}) {
		t.Errorf("search after alpha went down = %v", got)
	}
}

func TestToolsModeChoice(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{})
	all := []string{"alpha__bad_name", "alpha__echo", "alpha__fail", "alpha__slow", PublicName("alpha", longTool), "beta__echo"}
	slices.Sort(all)
	meta := []string{toolsearch.CallToolName, toolsearch.SearchToolName}
	b.token("ann-search", teamAcme, "acme", userAnn, ScopeRead, ScopeExecute)
	b.intro.mu.Lock()
	b.intro.tokens["ann-search"].ToolsMode = satellitev1.ToolsMode_TOOLS_MODE_SEARCH
	b.intro.mu.Unlock()
	for _, tc := range []struct {
		name, token, query string
		want               []string
	}{
		{"default", "ann", "", all},
		{"client asks for all", "ann", "?tools=all", all},
		{"client asks for search", "ann", "?tools=search", meta},
		{"user or team chose search", "ann-search", "", meta},
		{"client wins over user and team", "ann-search", "?tools=all", all},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for _, era := range eras {
				o := era.opts
				o.query = tc.query
				if got := toolNames(t, b.connect(t, tc.token, "acme", o)); !slices.Equal(got, tc.want) {
					t.Errorf("%s: tools = %v, want %v", era.name, got, tc.want)
				}
			}
		})
	}
	resp := b.do(t, http.MethodPost, "/teams/acme/mcp?tools=some", "ann", initializeBody, nil)
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("an unknown tool mode: status %d, want 400", resp.StatusCode)
	}
}

// TestSearchModeMetrics counts calls through call_tool under the real tool, and a failing one as that
// tool's error rather than a call of an unknown tool; a tool the search-mode server does not list, called
// directly, is unknown there.
func TestSearchModeMetrics(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	b := setup(t, setupOptions{metrics: reg})
	cs := b.connect(t, "bob", "acme", clientOptions{version: sessionVersion, query: "?tools=search"})
	if _, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: toolsearch.CallToolName,
		Arguments: map[string]any{"name": "delta__echo", "arguments": map[string]any{}}}); err != nil {
		t.Fatal(err)
	}
	// epsilon's instance is broken: the call fails downstream.
	if _, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: toolsearch.CallToolName,
		Arguments: map[string]any{"name": "epsilon__echo"}}); err == nil {
		t.Fatal("a call of a broken instance's tool succeeded")
	}
	if _, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "delta__echo"}); err == nil {
		t.Fatal("a tool the search-mode server does not list was called directly")
	}
	got := scrape(t, reg)
	for _, want := range []string{
		`orrery_satellite_tool_calls_total{installation="inst-delta-1",outcome="ok",team="` + teamAcme + `",tool="echo"} 1`,
		`orrery_satellite_tool_calls_total{installation="inst-epsilon-1",outcome="error",team="` + teamAcme + `",tool="echo"} 1`,
		`orrery_satellite_tool_calls_total{installation="",outcome="unknown_tool",team="` + teamAcme + `",tool="other"} 1`,
	} {
		if !strings.Contains(got, want+"\n") {
			t.Errorf("metrics lack %s", want)
		}
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", got)
	}
}
