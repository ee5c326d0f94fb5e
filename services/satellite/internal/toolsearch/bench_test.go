package toolsearch_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/pkoukk/tiktoken-go"
	tiktokenloader "github.com/pkoukk/tiktoken-go-loader"

	"github.com/orrery/orrery/services/satellite/internal/toolsearch"
)

// servers builds n servers of perServer tools each from the recorded real tools, taken in turn (and
// again from the start when they run out), named "{server}{i}__{tool}" as an endpoint would list them.
func servers(real []*mcp.Tool, n, perServer int) [][]*mcp.Tool {
	out := make([][]*mcp.Tool, n)
	k := 0
	for i := range n {
		for range perServer {
			t := *real[k%len(real)]
			server, tool, _ := strings.Cut(t.Name, "__")
			t.Name = fmt.Sprintf("%s%d__%s", server, i+1, tool)
			out[i] = append(out[i], &t)
			k++
		}
	}
	return out
}

// cl100kTokens counts the tokens of v's JSON with the cl100k_base encoding, from the BPE ranks embedded
// in tiktoken-go-loader (no download).
func cl100kTokens(b *testing.B, v any) int {
	b.Helper()
	tiktoken.SetBpeLoader(tiktokenloader.NewOfflineLoader())
	enc, err := tiktoken.GetEncoding("cl100k_base")
	if err != nil {
		b.Fatal(err)
	}
	data, err := json.Marshal(v)
	if err != nil {
		b.Fatal(err)
	}
	return len(enc.EncodeOrdinary(string(data)))
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	return sorted[min(len(sorted)-1, int(float64(len(sorted))*p))]
}

// BenchmarkFigures prints the figures of search mode: the tokens of the initial tools/list for 20
// servers of 20 tools each in both modes, recall over the evaluation set, search latency over 10,000
// indexed tools, and the time to update the index when one instance's tools change. It runs once,
// whatever -benchtime says (go tool task bench).
func BenchmarkFigures(b *testing.B) {
	real := fixtureTools(b)
	tasks := evaluationTasks(b)
	var table strings.Builder
	tw := tabwriter.NewWriter(&table, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "figure\tvalue\ttarget")

	// Tokens of tools/list, as the endpoint answers it in each mode.
	fleet := servers(real, 20, 20)
	full := &mcp.ListToolsResult{Tools: slices.Concat(fleet...)}
	search, call := toolsearch.MetaTools()
	meta := &mcp.ListToolsResult{Tools: []*mcp.Tool{call, search}}
	fullTokens, metaTokens := cl100kTokens(b, full), cl100kTokens(b, meta)
	fmt.Fprintf(tw, "tools/list tokens, 20 servers x 20 tools, full mode\t%d\t\n", fullTokens)
	fmt.Fprintf(tw, "tools/list tokens, search mode\t%d\t\n", metaTokens)
	fmt.Fprintf(tw, "tokens saved by search mode\t%.1f%%\t>= 90%%\n", 100*(1-float64(metaTokens)/float64(fullTokens)))
	ix := newIndex(b, full.Tools...)
	hits, err := ix.Search("open a pull request", toolsearch.DefaultResults)
	if err != nil {
		b.Fatal(err)
	}
	found := make([]*mcp.Tool, 0, len(hits))
	for _, h := range hits {
		found = append(found, h.Tool)
	}
	fmt.Fprintf(tw, "tokens of one search_tools answer (%d tools with schemas)\t%d\t\n", len(found), cl100kTokens(b, map[string]any{"tools": found}))

	// Recall over the evaluation set, on the recorded servers.
	evalIx := newIndex(b, real...)
	at1, at3, _ := recall(b, evalIx, tasks)
	fmt.Fprintf(tw, "recall@1 (%d tasks, %d tools of %d servers)\t%.3f\t\n", len(tasks), len(real), 13, at1)
	fmt.Fprintf(tw, "recall@3\t%.3f\t>= 0.9\n", at3)

	// Search latency over 10,000 tools, with the evaluation tasks as queries.
	big := slices.Concat(servers(real, 500, 20)...)
	start := time.Now()
	bigIx := newIndex(b, big...)
	fmt.Fprintf(tw, "index build, %d tools\t%v\t\n", len(big), time.Since(start).Round(time.Millisecond))
	var lat, cpu []time.Duration
	for range 5 {
		for _, tk := range tasks {
			start := time.Now()
			d, ok := onCPU(func() {
				if _, err := bigIx.Search(tk.Task, toolsearch.DefaultResults); err != nil {
					b.Fatal(err)
				}
			})
			lat = append(lat, time.Since(start))
			if ok {
				cpu = append(cpu, d)
			}
		}
	}
	slices.Sort(lat)
	slices.Sort(cpu)
	fmt.Fprintf(tw, "search latency p50, %d tools (%d searches)\t%v\t\n", len(big), len(lat), percentile(lat, 0.5).Round(time.Microsecond))
	fmt.Fprintf(tw, "search latency p99\t%v\t< 5ms\n", percentile(lat, 0.99).Round(time.Microsecond))
	if len(cpu) > 0 {
		fmt.Fprintf(tw, "search CPU time p50 / p99 (thread CPU clock, unaffected by waiting for a core)\t%v / %v\t\n",
			percentile(cpu, 0.5).Round(time.Microsecond), percentile(cpu, 0.99).Round(time.Microsecond))
	}

	// Index update when one instance's 20 tools change, in an index of 20 x 20 and of 10,000 tools.
	for _, set := range [][]*mcp.Tool{full.Tools, big} {
		ix := newIndex(b, set...)
		var took []time.Duration
		for round := range 20 {
			next := slices.Clone(set)
			for i := range 20 {
				t := *next[i]
				t.Description = fmt.Sprintf("%s (revision %d)", t.Description, round)
				next[i] = &t
			}
			start := time.Now()
			if n := ix.Update(next); n != 20 {
				b.Fatalf("update: %d changes, want 20", n)
			}
			took = append(took, time.Since(start))
		}
		slices.Sort(took)
		fmt.Fprintf(tw, "index update, 20 changed tools of %d, p50 / max of 20\t%v / %v\t\n", len(set),
			percentile(took, 0.5).Round(time.Microsecond), took[len(took)-1].Round(time.Microsecond))
	}
	tw.Flush()
	b.Logf("tool search figures (tokens: cl100k_base over the JSON of the result):\n%s", table.String())
}
