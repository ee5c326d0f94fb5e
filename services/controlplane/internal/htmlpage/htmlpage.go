// Package htmlpage writes the control plane's few server-rendered pages (sign-in, consent, device) with the
// headers every one of them needs: no framing, no caching, no scripts, no referrer.
package htmlpage

import (
	"bytes"
	"html/template"
	"net/http"
)

// Write renders t with data and writes it with status. A template that fails to render is the server's
// fault: the error is returned, and the client gets a bare 500.
func Write(w http.ResponseWriter, status int, t *template.Template, data any) error {
	var buf bytes.Buffer
	if err := t.Execute(&buf, data); err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return err
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	// No form-action: browsers apply it to the redirect back to the client after a form posts.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
	h.Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
	return nil
}
