package toolsearch_test

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/orrery/orrery/services/satellite/internal/toolsearch"
)

// Recall floors of the evaluation set, set just under what the ranking reaches, so that a change that
// makes ranking worse fails here.
const (
	recallAt1Floor = 0.82
	recallAt3Floor = 0.91
)

// task is one labelled task of testdata/tasks.jsonl: any of tools serves it.
type task struct {
	Task  string   `json:"task"`
	Tools []string `json:"tools"`
}

// fixtureTools returns the tools recorded in testdata/servers, named as a team endpoint exposes them
// ("{server}__{tool}"), in file order.
func fixtureTools(t testing.TB) []*mcp.Tool {
	t.Helper()
	files, err := filepath.Glob("testdata/servers/*.json")
	if err != nil || len(files) < 11 {
		t.Fatalf("want the tool lists of at least 11 servers in testdata/servers, found %d (%v)", len(files), err)
	}
	var tools []*mcp.Tool
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var list mcp.ListToolsResult
		if err := json.Unmarshal(b, &list); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		server := strings.TrimSuffix(filepath.Base(f), ".json")
		for _, tool := range list.Tools {
			tool.Name = server + "__" + tool.Name
			tools = append(tools, tool)
		}
	}
	return tools
}

func evaluationTasks(t testing.TB) []task {
	t.Helper()
	f, err := os.Open("testdata/tasks.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var tasks []task
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var tk task
		if err := json.Unmarshal(sc.Bytes(), &tk); err != nil {
			t.Fatalf("tasks.jsonl line %d: %v", len(tasks)+1, err)
		}
		tasks = append(tasks, tk)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return tasks
}

// recall is the share of tasks for which a labelled tool is among the top 1 and top 3 results; missed
// lists the tasks without one in the top 3.
func recall(t testing.TB, ix *toolsearch.Index, tasks []task) (at1, at3 float64, missed []string) {
	t.Helper()
	var hits1, hits3 int
	for _, tk := range tasks {
		hits, err := ix.Search(tk.Task, 3)
		if err != nil {
			t.Fatalf("search %q: %v", tk.Task, err)
		}
		var names []string
		for _, h := range hits {
			names = append(names, h.Tool.Name)
		}
		for i, name := range names {
			if slices.Contains(tk.Tools, name) {
				if i == 0 {
					hits1++
				}
				hits3++
				break
			}
		}
		if !slices.ContainsFunc(names, func(n string) bool { return slices.Contains(tk.Tools, n) }) {
			missed = append(missed, tk.Task+" → got "+strings.Join(names, ", ")+"; want "+strings.Join(tk.Tools, " | "))
		}
	}
	n := float64(len(tasks))
	return float64(hits1) / n, float64(hits3) / n, missed
}

func TestEvaluationSet(t *testing.T) {
	t.Parallel()
	tools := fixtureTools(t)
	tasks := evaluationTasks(t)
	if len(tasks) < 150 {
		t.Fatalf("the evaluation set has %d tasks, want at least 150", len(tasks))
	}
	known := map[string]bool{}
	for _, tool := range tools {
		known[tool.Name] = true
	}
	for _, tk := range tasks {
		for _, name := range tk.Tools {
			if !known[name] {
				t.Errorf("task %q is labelled with %q, which no recorded server has", tk.Task, name)
			}
		}
	}
	at1, at3, missed := recall(t, newIndex(t, tools...), tasks)
	t.Logf("%d tools, %d tasks: recall@1 %.3f, recall@3 %.3f", len(tools), len(tasks), at1, at3)
	for _, m := range missed {
		t.Logf("not in top 3: %s", m)
	}
	if at1 < recallAt1Floor || at3 < recallAt3Floor {
		t.Errorf("recall@1 %.3f, recall@3 %.3f: want at least %.2f and %.2f", at1, at3, recallAt1Floor, recallAt3Floor)
	}
}
