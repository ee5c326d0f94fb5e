package cli

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestArchiveSum(t *testing.T) {
	t.Parallel()
	body := []byte("an archive")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/huge" {
			chunk := make([]byte, 1<<20)
			for range maxArchiveBytes>>20 + 1 {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
			return
		}
		_, _ = w.Write(body)
	}))
	defer srv.Close()
	a := &App{HTTPClient: srv.Client()}
	want := sha256.Sum256(body)
	if got, err := a.archiveSum(t.Context(), srv.URL+"/a.tar.gz"); err != nil || got != hex.EncodeToString(want[:]) {
		t.Fatalf("archiveSum = %q, %v", got, err)
	}
	if _, err := a.archiveSum(t.Context(), srv.URL+"/huge"); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("archiveSum of an oversize archive: %v", err)
	}
}
