// Package toolsearch ranks the tools of one team endpoint's user for a natural-language query, so that a
// client in search mode asks for the few tools a task needs instead of listing them all.
//
// An Index holds the tools of exactly one user in one team, as the endpoint would list them (exposed
// names, with the server prefix). Keeping one index per user, rather than one per satellite filtered by
// team, keeps the ranking statistics (document frequencies, average lengths) to the user's own tools:
// scores cannot reveal what other tenants' tools say.
//
// Ranking is BM25 (bleve's scorch index with the bm25 scoring model) over the words of a tool's name,
// its title, its description, and the names and descriptions of its input-schema properties, each field
// with its own weight. Names are split into words ("github__create_issue", "createIssue" and
// "API-get-user" become create, issue, github, api, get, user) and English text is stemmed, so "creating
// issues" finds create_issue.
//
//	ix, err := toolsearch.New()
//	defer ix.Close()
//	ix.Update(tools)                    // the tools the endpoint lists, again whenever they change
//	hits, err := ix.Search("open a pull request", 5)
package toolsearch

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/blevesearch/bleve/v2"
	"github.com/blevesearch/bleve/v2/analysis/lang/en"
	"github.com/blevesearch/bleve/v2/index/scorch"
	"github.com/blevesearch/bleve/v2/mapping"
	"github.com/blevesearch/bleve/v2/search/query"
	index "github.com/blevesearch/bleve_index_api"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Bounds of a search. Queries are plain text from clients of the team endpoint.
const (
	// MaxQueryBytes bounds a query; longer ones are refused with ErrQueryTooLong.
	MaxQueryBytes = 512
	// MaxQueryWords bounds the words of a query that are searched; the rest are ignored, so that a
	// query of many one-letter words costs no more than a short one.
	MaxQueryWords = 32
	// MaxResults bounds the results of one search.
	MaxResults = 20
	// DefaultResults is the number of results when the caller asks for none in particular.
	DefaultResults = 5
)

// Field weights, chosen on the evaluation set (testdata/tasks.jsonl): the name and the description say
// most about what a tool does, parameter names little, a word deep in a parameter's description least.
var fieldBoosts = map[string]float64{
	fieldName:        2,
	fieldTitle:       1,
	fieldDescription: 2,
	fieldParams:      0.5,
	fieldParamText:   0.1,
}

const (
	fieldName        = "name"
	fieldTitle       = "title"
	fieldDescription = "description"
	fieldParams      = "params"
	fieldParamText   = "param_text"
)

// ErrQueryTooLong is returned for a query longer than MaxQueryBytes.
var ErrQueryTooLong = fmt.Errorf("query is longer than %d bytes", MaxQueryBytes)

// ErrEmptyQuery is returned for a query without a word to search for.
var ErrEmptyQuery = errors.New("query has no words to search for")

// Hit is one result of a search: a tool as the endpoint lists it, and its score.
type Hit struct {
	Tool  *mcp.Tool
	Score float64
}

// Index ranks one user's tools. It is safe for concurrent use.
type Index struct {
	mu    sync.RWMutex
	index bleve.Index
	// tools are the indexed tools by exposed name, with the fingerprint they were indexed with.
	tools map[string]indexed
}

type indexed struct {
	tool *mcp.Tool
	fp   string
}

// document is what bleve indexes for a tool.
type document struct {
	Name        string `json:"name"`
	Title       string `json:"title"`
	Description string `json:"description"`
	Params      string `json:"params"`
	ParamText   string `json:"param_text"`
}

// New returns an empty in-memory Index. Close frees it.
func New() (*Index, error) {
	ix, err := bleve.NewUsing("", newMapping(), scorch.Name, scorch.Name, nil)
	if err != nil {
		return nil, fmt.Errorf("toolsearch: new index: %w", err)
	}
	return &Index{index: ix, tools: make(map[string]indexed)}, nil
}

func newMapping() *mapping.IndexMappingImpl {
	text := func(analyzer string) *mapping.FieldMapping {
		f := bleve.NewTextFieldMapping()
		f.Analyzer = analyzer
		f.Store = false
		f.IncludeInAll = false
		f.IncludeTermVectors = false
		f.DocValues = false
		return f
	}
	doc := bleve.NewDocumentStaticMapping()
	for _, field := range []string{fieldName, fieldTitle, fieldDescription, fieldParams, fieldParamText} {
		doc.AddFieldMappingsAt(field, text(en.AnalyzerName))
	}
	m := bleve.NewIndexMapping()
	m.DefaultMapping = doc
	m.DefaultAnalyzer = en.AnalyzerName
	m.ScoringModel = index.BM25Scoring
	m.StoreDynamic = false
	m.IndexDynamic = false
	m.DocValuesDynamic = false
	return m
}

// Close frees the index. It must not be used afterwards.
func (ix *Index) Close() error {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return ix.index.Close()
}

// Len returns the number of indexed tools.
func (ix *Index) Len() int {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return len(ix.tools)
}

// Update makes the index hold exactly tools, keyed by their names: tools no longer there are removed,
// new and changed ones (re)indexed, unchanged ones left alone, so an update after a small change is
// cheap. Tools without a name are skipped. It reports how many tools were added, changed or removed.
func (ix *Index) Update(tools []*mcp.Tool) (changed int, err error) {
	want := make(map[string]indexed, len(tools))
	for _, t := range tools {
		if t == nil || t.Name == "" {
			continue
		}
		b, err := json.Marshal(t)
		if err != nil {
			return 0, fmt.Errorf("toolsearch: fingerprint %q: %w", t.Name, err)
		}
		want[t.Name] = indexed{tool: t, fp: string(b)}
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	batch := ix.index.NewBatch()
	for name := range ix.tools {
		if _, ok := want[name]; !ok {
			batch.Delete(name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(want)) {
		w := want[name]
		if have, ok := ix.tools[name]; ok && have.fp == w.fp {
			continue
		}
		if err := batch.Index(name, documentOf(w.tool)); err != nil {
			return 0, fmt.Errorf("toolsearch: index %q: %w", name, err)
		}
	}
	changed = batch.Size()
	if changed == 0 {
		return 0, nil
	}
	if err := ix.index.Batch(batch); err != nil {
		return 0, fmt.Errorf("toolsearch: apply batch: %w", err)
	}
	ix.tools = want
	return changed, nil
}

// Search returns at most limit tools best matching q, best first; ties keep name order. A limit outside
// 1..MaxResults is clamped to it.
func (ix *Index) Search(q string, limit int) ([]Hit, error) {
	if len(q) > MaxQueryBytes {
		return nil, ErrQueryTooLong
	}
	words := splitWords(q)
	if len(words) == 0 {
		return nil, ErrEmptyQuery
	}
	if len(words) > MaxQueryWords {
		words = words[:MaxQueryWords]
	}
	limit = min(max(limit, 1), MaxResults)
	text := strings.Join(words, " ")
	var fields []query.Query
	for field, boost := range fieldBoosts {
		m := bleve.NewMatchQuery(text)
		m.SetField(field)
		m.SetBoost(boost)
		fields = append(fields, m)
	}
	req := bleve.NewSearchRequestOptions(bleve.NewDisjunctionQuery(fields...), limit, 0, false)
	req.SortBy([]string{"-_score", "_id"})
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	res, err := ix.index.Search(req)
	if err != nil {
		return nil, fmt.Errorf("toolsearch: search: %w", err)
	}
	hits := make([]Hit, 0, len(res.Hits))
	for _, h := range res.Hits {
		if t, ok := ix.tools[h.ID]; ok {
			hits = append(hits, Hit{Tool: t.tool, Score: h.Score})
		}
	}
	return hits, nil
}

// documentOf is what is searched of a tool.
func documentOf(t *mcp.Tool) document {
	d := document{
		Name:        strings.Join(splitWords(t.Name), " "),
		Title:       t.Title,
		Description: t.Description,
	}
	if d.Title == "" && t.Annotations != nil {
		d.Title = t.Annotations.Title
	}
	var names, texts []string
	for name, desc := range schemaProperties(t.InputSchema) {
		names = append(names, splitWords(name)...)
		if desc != "" {
			texts = append(texts, desc)
		}
	}
	slices.Sort(names)
	slices.Sort(texts)
	d.Params = strings.Join(names, " ")
	d.ParamText = strings.Join(texts, " ")
	return d
}

// schemaProperties returns the names and descriptions of the top-level properties of a JSON schema, in
// whatever form the SDK holds it (a decoded map, raw JSON, or a jsonschema.Schema).
func schemaProperties(schema any) map[string]string {
	if schema == nil {
		return nil
	}
	var s struct {
		Properties map[string]struct {
			Description string `json:"description"`
		} `json:"properties"`
	}
	var b []byte
	switch v := schema.(type) {
	case json.RawMessage:
		b = v
	case []byte:
		b = v
	default:
		var err error
		if b, err = json.Marshal(schema); err != nil {
			return nil
		}
	}
	if json.Unmarshal(b, &s) != nil {
		return nil
	}
	out := make(map[string]string, len(s.Properties))
	for name, p := range s.Properties {
		out[name] = p.Description
	}
	return out
}

// splitWords splits text into lower-case words at every character that is not a letter or digit and
// at camelCase boundaries: "github__createPullRequest" is github, create, pull, request.
func splitWords(s string) []string {
	var words []string
	var cur []rune
	flush := func() {
		if len(cur) > 0 {
			words = append(words, strings.ToLower(string(cur)))
			cur = cur[:0]
		}
	}
	var prev rune
	for i, r := range s {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) {
			flush()
			prev = r
			continue
		}
		if unicode.IsUpper(r) && len(cur) > 0 {
			next, _ := utf8.DecodeRuneInString(s[i+utf8.RuneLen(r):])
			// A lower-case letter before, or an acronym ending before a lower-case letter (HTTPServer).
			if unicode.IsLower(prev) || unicode.IsDigit(prev) || (unicode.IsUpper(prev) && unicode.IsLower(next)) {
				flush()
			}
		}
		cur = append(cur, r)
		prev = r
	}
	flush()
	return words
}
