package console_test

import (
	"bytes"
	"compress/gzip"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/orrery/orrery/services/controlplane/internal/console"
)

// builtAsset returns the path of one content-hashed file of the committed build.
func builtAsset(t *testing.T) string {
	t.Helper()
	entries, err := fs.ReadDir(os.DirFS("dist"), "assets")
	if err != nil || len(entries) == 0 {
		t.Fatalf("no built assets in dist/assets (%v): run `go tool task generate`", err)
	}
	return "/assets/" + entries[0].Name()
}

// TestAssetsAreGzipped checks that a browser asking for gzip gets the asset compressed, and the same bytes.
func TestAssetsAreGzipped(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(console.Handler())
	t.Cleanup(srv.Close)
	asset := builtAsset(t)
	want, err := os.ReadFile(filepath.Join("dist", asset))
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(t.Context(), "GET", srv.URL+asset, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept-Encoding", "gzip, deflate, br")
	resp, err := http.DefaultTransport.RoundTrip(req) // no transparent decompression
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Encoding") != "gzip" || resp.Header.Get("Vary") != "Accept-Encoding" {
		t.Fatalf("headers %v, want gzip varying by Accept-Encoding", resp.Header)
	}
	zr, err := gzip.NewReader(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(zr)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("decompressed %d bytes (%v), want the %d of %s", len(got), err, len(want), asset)
	}
	if resp.ContentLength <= 0 || resp.ContentLength >= int64(len(want)) {
		t.Errorf("compressed length %d, raw %d", resp.ContentLength, len(want))
	}
}

func TestConsoleServing(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(console.Handler())
	t.Cleanup(srv.Close)
	asset := builtAsset(t)
	tests := []struct {
		name, method, path, accept string
		status                     int
		cache, bodyHas             string
	}{
		{"index", "GET", "/", "text/html", 200, "no-cache", `<div id="root">`},
		{"a bookmarked route gets the app", "GET", "/teams/acme/instances", "text/html,*/*", 200, "no-cache", `<div id="root">`},
		{"hashed asset is cached for good", "GET", asset, "*/*", 200, "public, max-age=31536000, immutable", ""},
		{"missing asset is not answered with the page", "GET", "/assets/index-gone.js", "text/html", 404, "", ""},
		{"a non-page request for an unknown path", "GET", "/orrery.api.v1.Nope/Get", "application/json", 404, "", ""},
		{"other methods", "POST", "/", "text/html", 404, "", ""},
		{"path traversal stays inside the build", "GET", "/../console.go", "*/*", 404, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req, err := http.NewRequestWithContext(t.Context(), tt.method, srv.URL+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Accept", tt.accept)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			if got := resp.Header.Get("Content-Security-Policy"); tt.status == 200 && got != console.SecurityPolicy {
				t.Errorf("Content-Security-Policy %q", got)
			}
			if got := resp.Header.Get("Cache-Control"); got != tt.cache && tt.status == 200 {
				t.Errorf("Cache-Control %q, want %q", got, tt.cache)
			}
			if !strings.Contains(string(body), tt.bodyHas) {
				t.Errorf("body %q lacks %q", body, tt.bodyHas)
			}
		})
	}
}
