// Package openapi holds the OpenAPI 3.1 document of the control plane's people-facing API. The document is
// generated from the protos into openapi.json (go tool task generate, with base.yaml for what the protos
// cannot say) and embedded, so a replica serves the description of exactly the API it was built with.
package openapi

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"net/http"
	"time"
)

//go:embed openapi.json
var document []byte

// Document returns the OpenAPI document, JSON encoded. The caller must not modify it.
func Document() []byte { return document }

// Handler serves the document as application/json, with an ETag so clients can keep a copy.
func Handler() http.Handler {
	sum := sha256.Sum256(document)
	etag := `"` + hex.EncodeToString(sum[:16]) + `"`
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("ETag", etag)
		w.Header().Set("Cache-Control", "no-cache")
		http.ServeContent(w, r, "openapi.json", time.Time{}, bytes.NewReader(document))
	})
}
