package openapi_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/orrery/orrery/services/controlplane/internal/openapi"
)

// TestHandlerServesTheDocument checks the answer and that a client holding the current copy is told so
// without the document being sent again.
func TestHandlerServesTheDocument(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(openapi.Handler())
	t.Cleanup(srv.Close)

	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		OpenAPI string
		Paths   map[string]any
	}
	err = json.NewDecoder(resp.Body).Decode(&doc)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET: %d %s %v", resp.StatusCode, resp.Header.Get("Content-Type"), err)
	}
	if doc.OpenAPI == "" || len(doc.Paths) == 0 {
		t.Errorf("the document has no version or no paths: %q, %d paths", doc.OpenAPI, len(doc.Paths))
	}
	etag := resp.Header.Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}

	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("If-None-Match", etag)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotModified {
		t.Errorf("GET with the current ETag: %d, want 304", resp.StatusCode)
	}
}
