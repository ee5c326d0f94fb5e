// Package console serves the web console: the single-page app built from web/ into dist by
// `go tool task generate`, committed and embedded in the binary so that a build needs only Go.
package console

import (
	"bytes"
	"compress/gzip"
	"embed"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"
	"sync"
)

//go:embed all:dist
var dist embed.FS

// SecurityPolicy is the Content-Security-Policy of every console response: the app loads only its own
// scripts and styles and talks only to its own origin, so an injected string can neither run nor phone out.
const SecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"font-src 'self'; connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; " +
	"frame-ancestors 'none'"

// assetsDir holds the build's content-hashed files, which never change under one name.
const assetsDir = "assets/"

// Handler serves the console. Files of the build are served as they are; any other GET for an HTML page is
// answered with index.html, so that every route of the app can be bookmarked and reloaded.
func Handler() http.Handler {
	root, err := fs.Sub(dist, "dist")
	if err != nil {
		panic(err) // the embed pattern guarantees the directory
	}
	files := http.FileServerFS(root)
	var gzipped sync.Map // asset name → its gzip-compressed bytes, made on first request
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Set("Content-Security-Policy", SecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		name := strings.TrimPrefix(path.Clean(r.URL.Path), "/")
		if name != "" && name != "index.html" {
			if info, err := fs.Stat(root, name); err == nil && !info.IsDir() {
				if strings.HasPrefix(name, assetsDir) {
					h.Set("Cache-Control", "public, max-age=31536000, immutable")
					h.Add("Vary", "Accept-Encoding")
					if acceptsGzip(r) {
						serveGzipped(w, r, root, name, &gzipped)
						return
					}
				} else {
					h.Set("Cache-Control", "no-cache")
				}
				files.ServeHTTP(w, r)
				return
			}
			// A missing asset or a request that is not a page navigation must not get the app's HTML,
			// or a stale script reference would be answered with a page and fail confusingly.
			if strings.HasPrefix(name, assetsDir) || !acceptsHTML(r) {
				http.NotFound(w, r)
				return
			}
		}
		h.Set("Cache-Control", "no-cache")
		index, err := fs.ReadFile(root, "index.html")
		if err != nil {
			http.Error(w, "the console is not built: run `go tool task generate`", http.StatusNotFound)
			return
		}
		h.Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(index)
	})
}

// serveGzipped answers with the asset compressed, which cuts the first page's script to about a third.
func serveGzipped(w http.ResponseWriter, r *http.Request, root fs.FS, name string, cache *sync.Map) {
	body, ok := cache.Load(name)
	if !ok {
		raw, err := fs.ReadFile(root, name)
		if err != nil {
			http.NotFound(w, r)
			return
		}
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression) // the level is valid
		_, _ = zw.Write(raw)
		_ = zw.Close()
		body, _ = cache.LoadOrStore(name, buf.Bytes())
	}
	b := body.([]byte)
	h := w.Header()
	h.Set("Content-Encoding", "gzip")
	h.Set("Content-Type", mime.TypeByExtension(path.Ext(name)))
	h.Set("Content-Length", strconv.Itoa(len(b)))
	if r.Method != http.MethodHead {
		_, _ = w.Write(b)
	}
}

func acceptsGzip(r *http.Request) bool {
	for _, enc := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		if name, q, _ := strings.Cut(strings.TrimSpace(enc), ";"); strings.EqualFold(name, "gzip") && !strings.Contains(q, "q=0") {
			return true
		}
	}
	return false
}

func acceptsHTML(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "text/html")
}
