// Package toolsearch ranks the tools of one team endpoint's user for a natural-language query, so that a
// client in search mode asks for the few tools a task needs instead of listing them all.
//
// An Index holds the tools of exactly one user in one team, as the endpoint would list them (exposed
// names, with the server prefix). Keeping one index per user, rather than one per satellite filtered by
// team, keeps the ranking statistics (document frequencies, average lengths) to the user's own tools:
// scores cannot reveal what other tenants' tools say.
//
// Ranking is BM25F over the words of a tool's name, its title, its description, and the names and
// descriptions of its input-schema properties: each field's term frequency is normalised by that field's
// length and weighed, and their sum saturates once (k1 1.2, b 0.75). Two query words next to each other
// in a tool's name add a phrase bonus, and a small table of synonyms (get/fetch/read, create/add/new,
// folder/directory, ...) lets a query find a tool that names the same action with another common word.
// Names are split into words ("github__create_issue", "createIssue" and
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

// phraseBoost weighs two query words found next to each other in a tool's name, relative to their
// inverse document frequencies.
const phraseBoost = 1.0

// synonymWeight weighs a word found through the synonym table against the query's own words, so that
// a tool with the user's own word still ranks first.
const synonymWeight = 0.5

// synonyms are groups of words that tool authors and users use for the same thing: the common verbs of
// tool names and a few nouns that are often abbreviated. A query word of a group also searches the
// others, at synonymWeight. The table is kept small and generic on purpose: it names no server.
var synonyms = [][]string{
	{"get", "fetch", "read", "retrieve"},
	{"create", "make", "add", "new"},
	{"delete", "remove"},
	{"list", "show", "enumerate"},
	{"search", "find", "query", "look"},
	{"update", "edit", "modify", "change"},
	{"directory", "folder", "dir"},
	{"repository", "repo"},
	{"database", "db"},
}

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
	// synonyms maps an analyzed term to the analyzed terms of its synonym group, itself excluded.
	synonyms map[string][]string

	mu   sync.RWMutex
	docs map[string]*doc // by exposed name
	// slots holds the indexed documents by slot number, nil where free; free lists the free slots.
	slots []*doc
	free  []int32
	// postings holds, per field and term, the slots of the documents that have the term and how often.
	postings [numFields]map[string]map[int32]int32
	// totalLen is the sum of the documents' lengths per field, for the average length BM25 needs.
	totalLen [numFields]int
	// lengths holds each slot's field lengths, beside the documents so that scoring reads them without
	// following a pointer per posting.
	lengths [][numFields]int32
}

// doc is an indexed tool.
type doc struct {
	tool *mcp.Tool
	slot int32
	// terms counts the analyzed terms of each field; length is their sum.
	terms  [numFields]map[string]int
	length [numFields]int
	// name holds the analyzed terms of the name in order, for phrases.
	name []string
}

// New returns an empty Index.
func New() (*Index, error) {
	analyzer, err := registry.NewCache().AnalyzerNamed(en.AnalyzerName)
	if err != nil {
		return nil, fmt.Errorf("toolsearch: English analyzer: %w", err)
	}
	ix := &Index{analyzer: analyzer, docs: make(map[string]*doc), synonyms: make(map[string][]string)}
	for f := range ix.postings {
		ix.postings[f] = make(map[string]map[int32]int32)
	}
	for _, group := range synonyms {
		terms := ix.terms(strings.Join(group, " "))
		for _, t := range terms {
			for _, other := range terms {
				if other != t && !slices.Contains(ix.synonyms[t], other) {
					ix.synonyms[t] = append(ix.synonyms[t], other)
				}
			}
		}
	}
	return ix, nil
}

// expand returns the terms to search for a query's terms, with their weights: the query's own at 1, their
// synonyms at synonymWeight.
func (ix *Index) expand(seq []string) map[string]float64 {
	terms := make(map[string]float64, len(seq))
	for _, t := range seq {
		terms[t] = 1
	}
	for _, t := range seq {
		for _, syn := range ix.synonyms[t] {
			if _, ok := terms[syn]; !ok {
				terms[syn] = synonymWeight
			}
		}
	}
	return terms
}

// idf is the inverse document frequency of a term in a field, as BM25 has it. The caller holds ix.mu.
func (ix *Index) idf(f int, term string) float64 {
	n := float64(len(ix.docs))
	df := float64(len(ix.postings[f][term]))
	return math.Log(1 + (n-df+0.5)/(df+0.5))
}

// adjacent reports whether b follows a directly in seq.
func adjacent(seq []string, a, b string) bool {
	for i := 1; i < len(seq); i++ {
		if seq[i-1] == a && seq[i] == b {
			return true
		}
	}
	return false
}

// Close frees the index. It must not be used afterwards.
func (ix *Index) Close() error {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.docs, ix.slots, ix.free, ix.lengths = nil, nil, nil, nil
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
// cheap. A tool is unchanged when it is passed as the same pointer as last time; the caller, which
// already knows which of its tools changed, passes a new one for a changed tool and must not modify a
// tool it passed. Tools without a name are skipped. It reports how many tools were added, changed or
// removed.
func (ix *Index) Update(tools []*mcp.Tool) (changed int) {
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
		want[t.Name] = ix.analyze(t)
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
	return changed
}

// analyze turns a tool into its document.
func (ix *Index) analyze(t *mcp.Tool) *doc {
	d := &doc{tool: t}
	for f, text := range fieldTexts(t) {
		d.terms[f] = make(map[string]int)
		terms := ix.terms(text)
		for _, term := range terms {
			d.terms[f][term]++
			d.length[f]++
		}
		if f == fieldName {
			d.name = terms
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
		ix.lengths = append(ix.lengths, [numFields]int32{})
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
		ix.lengths[d.slot][f] = int32(d.length[f])
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
	seq := ix.terms(strings.Join(words, " "))
	if len(seq) == 0 {
		return nil, ErrEmptyQuery
	}
	terms := ix.expand(seq)
	limit = min(max(limit, 1), MaxResults)

	ix.mu.RLock()
	defer ix.mu.RUnlock()
	n := float64(len(ix.docs))
	scores := make([]float64, len(ix.slots))
	var touched []int32
	// BM25F: a term's frequencies in the fields, each normalised by its field's length and weighed,
	// add up to one frequency that saturates once, so a word repeated across fields counts less than
	// the same number of different words.
	tf := make([]float64, len(ix.slots)) // of the current term, for the slots in withTerm
	var withTerm []int32
	for term, weight := range terms {
		withTerm = withTerm[:0]
		for f := range numFields {
			p := ix.postings[f][term]
			if len(p) == 0 {
				continue
			}
			avgLen := float64(ix.totalLen[f]) / n
			for slot, freq := range p {
				if tf[slot] == 0 {
					withTerm = append(withTerm, slot)
				}
				norm := 1 - bm25B + bm25B*float64(ix.lengths[slot][f])/avgLen
				tf[slot] += fieldBoosts[f] * float64(freq) / norm
			}
		}
		df := float64(len(withTerm))
		idf := math.Log(1 + (n-df+0.5)/(df+0.5))
		for _, slot := range withTerm {
			if scores[slot] == 0 {
				touched = append(touched, slot)
			}
			t := tf[slot]
			tf[slot] = 0
			scores[slot] += weight * idf * t * (bm25K1 + 1) / (t + bm25K1)
		}
	}
	// Two query words next to each other in a tool's name ("pull request", "create issue") say more
	// than the same words apart.
	for i := 1; i < len(seq); i++ {
		a, b := seq[i-1], seq[i]
		if a == b {
			continue
		}
		pa, pb := ix.postings[fieldName][a], ix.postings[fieldName][b]
		if len(pa) == 0 || len(pb) == 0 {
			continue
		}
		bonus := phraseBoost * (ix.idf(fieldName, a) + ix.idf(fieldName, b))
		fewer, other := pa, pb // walk the shorter list
		if len(pb) < len(pa) {
			fewer, other = pb, pa
		}
		for slot := range fewer {
			if _, ok := other[slot]; ok && adjacent(ix.slots[slot].name, a, b) {
				scores[slot] += bonus
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
