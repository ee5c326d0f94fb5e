// Package server routes the satellite's own HTTP endpoints. Today that is health: /healthz answers while
// the process is up and /readyz once the satellite can serve. The team MCP endpoints
// (/teams/{slug}/mcp and their OAuth metadata) are mounted here with Handle as they arrive.
package server

import (
	"io"
	"net/http"
)

// Readiness reports why the satellite cannot serve yet, or nil when it can.
type Readiness func() error

// Server is the satellite's HTTP handler.
type Server struct {
	mux   *http.ServeMux
	ready Readiness
}

// New returns a Server whose /readyz consults ready.
func New(ready Readiness) *Server {
	s := &Server{mux: http.NewServeMux(), ready: ready}
	s.mux.HandleFunc("GET /healthz", s.healthz)
	s.mux.HandleFunc("GET /readyz", s.readyz)
	return s
}

// Handle mounts h at pattern, in net/http.ServeMux syntax, such as "/teams/{slug}/mcp".
func (s *Server) Handle(pattern string, h http.Handler) {
	s.mux.Handle(pattern, h)
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mux.ServeHTTP(w, r)
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	io.WriteString(w, "ok\n")
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if err := s.ready(); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, "not ready: "+err.Error()+"\n")
		return
	}
	io.WriteString(w, "ready\n")
}
