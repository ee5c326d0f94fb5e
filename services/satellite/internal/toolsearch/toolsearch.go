// Package toolsearch ranks the tools of one team endpoint's user for a natural-language query, so that a
// client in search mode asks for the few tools a task needs instead of listing them all.
//
// An Index holds the tools of exactly one user in one team, as the endpoint would list them (exposed
// names, with the server prefix). Keeping one index per user, rather than one per satellite filtered by
// team, keeps the ranking statistics (document frequencies, average lengths) to the user's own tools:
// scores cannot reveal what other tenants' tools say.
//
// Ranking is BM25 over the words of a tool's name, its title, its description, and the names and
// descriptions of its input-schema properties, each field with its own weight (the sum of per-field BM25
// scores, k1 1.2, b 0.75). Names are split into words ("github__create_issue", "createIssue" and
// "API-get-user" become create, issue, github, api, get, user), and all text goes through bleve's English
// analyzer (stop words, possessives, stemming), so "creating issues" finds create_issue. The inverted
// index is this package's own: a bleve index with the same analysis and BM25 ranked the evaluation set
// alike but searched 10,000 tools an order of magnitude slower at the 99th percentile and took most of a
// second to apply one instance's changes (see BenchmarkFigures and the package's history).
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
	"math"
	"slices"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/blevesearch/bleve/v2/analysis"
	"github.com/blevesearch/bleve/v2/analysis/lang/en"
	"github.com/blevesearch/bleve/v2/registry"
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

// Fields of a tool that are searched, and their weights, chosen on the evaluation set
// (testdata/tasks.jsonl): the name and the description say most about what a tool does, parameter names
// little, a word deep in a parameter's description least.
const (
	fieldName = iota
	fieldTitle
	fieldDescription
	fieldParams
	fieldParamText
	numFields
)

var fieldBoosts = [numFields]float64{
	fieldName:        2,
	fieldTitle:       1,
	fieldDescription: 2,
	fieldParams:      0.5,
	fieldParamText:   0.1,
}

// BM25 parameters, the usual ones.
const (
	bm25K1 = 1.2
	bm25B  = 0.75
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
	analyzer analysis.Analyzer

	mu   sync.RWMutex
	docs map[string]*doc // by exposed name
	// slots holds the indexed documents by slot number, nil where free; free lists the free slots.
	slots []*doc
	free  []int32
	// postings holds, per field and term, the slots of the documents that have the term and how often.
	postings [numFields]map[string]map[int32]int32
	// totalLen is the sum of the documents' lengths per field, for the average length BM25 needs.
	totalLen [numFields]int
}

// doc is an indexed tool.
type doc struct {
	tool *mcp.Tool
	fp   string
	slot int32
	// terms counts the analyzed terms of each field; length is their sum.
	terms  [numFields]map[string]int
	length [numFields]int
}

// New returns an empty Index.
func New() (*Index, error) {
	analyzer, err := registry.NewCache().AnalyzerNamed(en.AnalyzerName)
	if err != nil {
		return nil, fmt.Errorf("toolsearch: English analyzer: %w", err)
	}
	ix := &Index{analyzer: analyzer, docs: make(map[string]*doc)}
	for f := range ix.postings {
		ix.postings[f] = make(map[string]map[int32]int32)
	}
	return ix, nil
}

// Close frees the index. It must not be used afterwards.
func (ix *Index) Close() error {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.docs, ix.slots, ix.free = nil, nil, nil
	for f := range ix.postings {
		ix.postings[f] = nil
	}
	return nil
}

// Len returns the number of indexed tools.
func (ix *Index) Len() int {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return len(ix.docs)
}

// Update makes the index hold exactly tools, keyed by their names: tools no longer there are removed,
// new and changed ones (re)indexed, unchanged ones left alone, so an update after a small change is
// cheap. A tool passed as the same pointer as last time counts as unchanged without being compared.
// Tools without a name are skipped. It reports how many tools were added, changed or removed.
func (ix *Index) Update(tools []*mcp.Tool) (changed int, err error) {
	ix.mu.RLock()
	want := make(map[string]*doc, len(tools))
	for _, t := range tools {
		if t == nil || t.Name == "" {
			continue
		}
		if have := ix.docs[t.Name]; have != nil && have.tool == t {
			want[t.Name] = have
			continue
		}
		b, err := json.Marshal(t)
		if err != nil {
			ix.mu.RUnlock()
			return 0, fmt.Errorf("toolsearch: fingerprint %q: %w", t.Name, err)
		}
		if have := ix.docs[t.Name]; have != nil && have.fp == string(b) {
			want[t.Name] = have
			continue
		}
		want[t.Name] = ix.analyze(t, string(b))
	}
	ix.mu.RUnlock()

	ix.mu.Lock()
	defer ix.mu.Unlock()
	for name, have := range ix.docs {
		if want[name] != have {
			ix.remove(have)
			changed++
		}
	}
	for name, d := range want {
		if ix.docs[name] != d {
			ix.add(d)
			if _, replaced := ix.docs[name]; !replaced {
				changed++
			}
		}
	}
	ix.docs = want
	return changed, nil
}

// analyze turns a tool into its document.
func (ix *Index) analyze(t *mcp.Tool, fp string) *doc {
	d := &doc{tool: t, fp: fp}
	for f, text := range fieldTexts(t) {
		d.terms[f] = make(map[string]int)
		for _, term := range ix.terms(text) {
			d.terms[f][term]++
			d.length[f]++
		}
	}
	return d
}

// terms returns the analyzed terms of text.
func (ix *Index) terms(text string) []string {
	if text == "" {
		return nil
	}
	stream := ix.analyzer.Analyze([]byte(text))
	out := make([]string, 0, len(stream))
	for _, tok := range stream {
		out = append(out, string(tok.Term))
	}
	return out
}

func (ix *Index) add(d *doc) {
	if n := len(ix.free); n > 0 {
		d.slot = ix.free[n-1]
		ix.free = ix.free[:n-1]
		ix.slots[d.slot] = d
	} else {
		d.slot = int32(len(ix.slots))
		ix.slots = append(ix.slots, d)
	}
	for f := range numFields {
		for term, tf := range d.terms[f] {
			p := ix.postings[f][term]
			if p == nil {
				p = make(map[int32]int32)
				ix.postings[f][term] = p
			}
			p[d.slot] = int32(tf)
		}
		ix.totalLen[f] += d.length[f]
	}
}

func (ix *Index) remove(d *doc) {
	for f := range numFields {
		for term := range d.terms[f] {
			p := ix.postings[f][term]
			delete(p, d.slot)
			if len(p) == 0 {
				delete(ix.postings[f], term)
			}
		}
		ix.totalLen[f] -= d.length[f]
	}
	ix.slots[d.slot] = nil
	ix.free = append(ix.free, d.slot)
}

// Search returns at most limit tools best matching q, best first; ties are in name order. A limit
// outside 1..MaxResults is clamped to it.
func (ix *Index) Search(q string, limit int) ([]Hit, error) {
	if len(q) > MaxQueryBytes {
		return nil, ErrQueryTooLong
	}
	words := splitWords(q)
	if len(words) > MaxQueryWords {
		words = words[:MaxQueryWords]
	}
	terms := ix.terms(strings.Join(words, " "))
	slices.Sort(terms)
	terms = slices.Compact(terms)
	if len(terms) == 0 {
		return nil, ErrEmptyQuery
	}
	limit = min(max(limit, 1), MaxResults)

	ix.mu.RLock()
	defer ix.mu.RUnlock()
	n := float64(len(ix.docs))
	scores := make([]float64, len(ix.slots))
	var touched []int32
	for f := range numFields {
		if ix.totalLen[f] == 0 {
			continue
		}
		avgLen := float64(ix.totalLen[f]) / n
		for _, term := range terms {
			p := ix.postings[f][term]
			if len(p) == 0 {
				continue
			}
			df := float64(len(p))
			idf := math.Log(1 + (n-df+0.5)/(df+0.5))
			for slot, tf := range p {
				if scores[slot] == 0 {
					touched = append(touched, slot)
				}
				norm := 1 - bm25B + bm25B*float64(ix.slots[slot].length[f])/avgLen
				scores[slot] += fieldBoosts[f] * idf * float64(tf) * (bm25K1 + 1) / (float64(tf) + bm25K1*norm)
			}
		}
	}
	// The best limit of the touched documents, kept sorted: limit is small, touched may be all.
	better := func(a, b Hit) bool {
		return a.Score > b.Score || (a.Score == b.Score && a.Tool.Name < b.Tool.Name)
	}
	hits := make([]Hit, 0, limit+1)
	for _, slot := range touched {
		h := Hit{Tool: ix.slots[slot].tool, Score: scores[slot]}
		if len(hits) == limit && !better(h, hits[limit-1]) {
			continue
		}
		i, _ := slices.BinarySearchFunc(hits, h, func(a, b Hit) int {
			if better(a, b) {
				return -1
			}
			return 1
		})
		hits = slices.Insert(hits, i, h)
		if len(hits) > limit {
			hits = hits[:limit]
		}
	}
	return hits, nil
}

// fieldTexts returns the text of each searched field of a tool.
func fieldTexts(t *mcp.Tool) [numFields]string {
	var texts [numFields]string
	texts[fieldName] = strings.Join(splitWords(t.Name), " ")
	texts[fieldTitle] = t.Title
	if texts[fieldTitle] == "" && t.Annotations != nil {
		texts[fieldTitle] = t.Annotations.Title
	}
	texts[fieldDescription] = t.Description
	var names, descs []string
	for name, desc := range schemaProperties(t.InputSchema) {
		names = append(names, splitWords(name)...)
		if desc != "" {
			descs = append(descs, desc)
		}
	}
	slices.Sort(names)
	slices.Sort(descs)
	texts[fieldParams] = strings.Join(names, " ")
	texts[fieldParamText] = strings.Join(descs, " ")
	return texts
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
