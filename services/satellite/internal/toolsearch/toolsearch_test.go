package toolsearch_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/orrery/orrery/services/satellite/internal/toolsearch"
)

func newIndex(t testing.TB, tools ...*mcp.Tool) *toolsearch.Index {
	t.Helper()
	ix, err := toolsearch.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ix.Close() })
	ix.Update(tools)
	return ix
}

func names(hits []toolsearch.Hit) []string {
	var out []string
	for _, h := range hits {
		out = append(out, h.Tool.Name)
	}
	return out
}

// wantFirst checks that the best match of q is the tool named want.
func wantFirst(t *testing.T, ix *toolsearch.Index, q, want string) {
	t.Helper()
	hits, err := ix.Search(q, 1)
	if err != nil {
		t.Fatal(err)
	}
	if got := names(hits); len(got) != 1 || got[0] != want {
		t.Errorf("Search(%q) = %v, want [%s]", q, got, want)
	}
}

func TestSearchFindsNamesTitlesDescriptionsAndParameters(t *testing.T) {
	t.Parallel()
	ix := newIndex(t,
		&mcp.Tool{Name: "github__createPullRequest", InputSchema: map[string]any{"type": "object"}},
		&mcp.Tool{Name: "maps__geocode", Title: "Address to coordinates", InputSchema: map[string]any{"type": "object"}},
		&mcp.Tool{Name: "db__run", Description: "Runs a read-only SQL statement", InputSchema: map[string]any{"type": "object"}},
		&mcp.Tool{Name: "chat__send", InputSchema: map[string]any{"type": "object",
			"properties": map[string]any{"channelId": map[string]any{"type": "string"}}}},
	)
	for q, want := range map[string]string{
		"open a pull request":       "github__createPullRequest",
		"coordinates of an address": "maps__geocode",
		"sql statements":            "db__run",
		"which channel":             "chat__send",
	} {
		wantFirst(t, ix, q, want)
	}
}

func TestUpdateReplacesTheToolSet(t *testing.T) {
	t.Parallel()
	schema := map[string]any{"type": "object"}
	echo := &mcp.Tool{Name: "a__echo", Description: "echo text back", InputSchema: schema}
	sum := &mcp.Tool{Name: "a__sum", Description: "add two numbers", InputSchema: schema}
	ix := newIndex(t, echo, sum)
	weather := &mcp.Tool{Name: "b__weather", Description: "weather forecast for a city", InputSchema: schema}
	if n := ix.Update([]*mcp.Tool{sum, weather}); n != 2 { // echo removed, weather added, sum unchanged
		t.Fatalf("Update = %d, want 2 changes", n)
	}
	if hits, _ := ix.Search("echo text", 5); len(hits) != 0 {
		t.Errorf("a removed tool is still found: %v", names(hits))
	}
	if hits, _ := ix.Search("forecast", 5); len(names(hits)) != 1 || hits[0].Tool.Name != "b__weather" {
		t.Errorf("an added tool is not found: %v", names(hits))
	}
	if n := ix.Update([]*mcp.Tool{sum, weather}); n != 0 {
		t.Errorf("an unchanged tool set made %d changes", n)
	}
	// A changed tool comes as a new definition under the same name, and is searched as it is now.
	sum2 := &mcp.Tool{Name: "a__sum", Description: "total of a column of figures", InputSchema: schema}
	if n := ix.Update([]*mcp.Tool{sum2, weather}); n != 1 {
		t.Errorf("one changed tool made %d changes, want 1", n)
	}
	if hits, _ := ix.Search("column figures", 5); len(hits) != 1 || hits[0].Tool != sum2 {
		t.Errorf("a changed tool is not found by its new description: %v", names(hits))
	}
	if hits, _ := ix.Search("numbers", 5); len(hits) != 0 {
		t.Errorf("a changed tool is still found by its old description: %v", names(hits))
	}
	if ix.Len() != 2 {
		t.Errorf("Len = %d, want 2", ix.Len())
	}
}

func TestSearchBounds(t *testing.T) {
	t.Parallel()
	var tools []*mcp.Tool
	for _, w := range strings.Fields("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau upsilon phi chi psi omega") {
		tools = append(tools, &mcp.Tool{Name: "s__" + w, Description: "tool " + w, InputSchema: map[string]any{"type": "object"}})
	}
	ix := newIndex(t, tools...)
	if _, err := ix.Search(strings.Repeat("a", toolsearch.MaxQueryBytes+1), 5); !errors.Is(err, toolsearch.ErrQueryTooLong) {
		t.Errorf("an overlong query: err = %v, want ErrQueryTooLong", err)
	}
	if _, err := ix.Search(" -- !! ", 5); !errors.Is(err, toolsearch.ErrEmptyQuery) {
		t.Errorf("a query without words: err = %v, want ErrEmptyQuery", err)
	}
	hits, err := ix.Search("tool", 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(hits) != toolsearch.MaxResults {
		t.Errorf("a limit of 1000 returned %d results, want MaxResults (%d)", len(hits), toolsearch.MaxResults)
	}
	if hits, _ := ix.Search("tool", 0); len(hits) != 1 {
		t.Errorf("a limit of 0 returned %d results, want 1", len(hits))
	}
}

func TestSearchUsesSynonymsAndPhrases(t *testing.T) {
	t.Parallel()
	schema := map[string]any{"type": "object"}
	ix := newIndex(t,
		&mcp.Tool{Name: "fs__delete_directory", InputSchema: schema},
		&mcp.Tool{Name: "fs__move_file", InputSchema: schema},
		&mcp.Tool{Name: "git__fetch_remote", InputSchema: schema},
		&mcp.Tool{Name: "git__get_branch", InputSchema: schema},
		// The same words in both names, only in the second as the phrase; the first wins a tie by name.
		&mcp.Tool{Name: "git__request_pull", InputSchema: schema},
		&mcp.Tool{Name: "vcs__pull_request", InputSchema: schema},
	)
	for q, want := range map[string]string{
		// Neither word is in any tool; both are synonyms of words that are.
		"remove a folder": "fs__delete_directory",
		"pull request":    "vcs__pull_request",
	} {
		wantFirst(t, ix, q, want)
	}
	// A tool with the query's own word ranks above one found only through a synonym.
	hits, err := ix.Search("fetch", 2)
	if err != nil {
		t.Fatal(err)
	}
	if got := names(hits); len(got) != 2 || got[0] != "git__fetch_remote" || got[1] != "git__get_branch" {
		t.Errorf("Search(fetch) = %v, want [git__fetch_remote git__get_branch]", got)
	}
}
