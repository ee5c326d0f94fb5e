// Package admission decides how much of a request the control plane reads, before it reads any of it.
//
// Connect reads a unary request's whole body before any interceptor runs, inflating a compressed one as it
// goes, and Vanguard does the same with REST bodies; checks made by interceptors or handlers come too late
// to stop a caller without credentials from making a replica read, and inflate, whatever it sends. A Gate
// stands in front of every handler instead:
//
//   - A request to a procedure that needs a caller is refused, Unauthenticated in the caller's own protocol,
//     unless its headers carry valid credentials. Its body is not read. The caller found is passed on in
//     the request's context, so the interceptors behind do not look the credentials up again.
//   - Every procedure has a read limit (see MaxBytes), which Connect applies to each message after
//     decompression, with a gzip decompressor that stops one byte past the limit instead of inflating the
//     rest to measure it. The body as sent is capped just above the limit with http.MaxBytesReader, and a
//     Content-Length above it is refused before anything is read. A procedure anyone may call reads at
//     most AnonymousMaxBytes.
//   - REST bodies are read by the gate, inflated within the limit and handed on as they would have arrived
//     uncompressed, because Vanguard inflates a body whole before anything checks its size.
//   - Any other body (OAuth forms and documents, health, metrics) is capped at OtherMaxBytes.
//   - Every body must arrive within the body timeout. The deadline is lifted as soon as the body ends, so
//     long polls and server streams, which hold the response open long after, are not cut off.
//
// Oversized requests are answered resource_exhausted in Connect, gRPC and gRPC-Web, and 413 in REST and
// plain HTTP; bodies that arrive too slowly are answered deadline_exceeded or 408.
package admission

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
)

// Defaults of Config.
const (
	// DefaultBodyTimeout is how long a request's body may take to arrive: 30 s carries the largest body
	// any procedure reads (8 MiB) over a link of about 2.5 Mbit/s, and a client that trickles holds a
	// connection no longer than that.
	DefaultBodyTimeout = 30 * time.Second
	// DefaultOtherMaxBytes bounds bodies outside the RPC and REST routes: OAuth forms and registration
	// documents are a few KiB.
	DefaultOtherMaxBytes = 64 << 10
)

// Authenticator checks a request's credentials from its headers alone, for procedure, before the body is
// read. It returns the request's context carrying the caller, or the error to answer with, a
// *connect.Error such as Unauthenticated.
type Authenticator func(r *http.Request, procedure string) (context.Context, error)

// Procedure is how requests to one procedure, or to the REST routes, are admitted.
type Procedure struct {
	// MaxBytes bounds each request message after decompression. Zero means DefaultMaxBytes.
	MaxBytes int64
	// Authenticate checks the caller before the body is read; nil admits anyone.
	Authenticate Authenticator
}

// Config configures a Gate. Zero fields take the defaults named on each.
type Config struct {
	// RESTPrefix is the path under which REST requests are transcoded, such as "/api/". Empty: none.
	RESTPrefix string
	// REST is how every REST request is admitted. Its MaxBytes must cover the largest request of every
	// procedure served over REST, and its Authenticate must refuse a request without credentials unless
	// every such procedure is open to anyone.
	REST Procedure
	// AnonymousMaxBytes bounds each message of a procedure that needs no credentials, whatever its
	// Procedure says. Default AnonymousMaxBytes.
	AnonymousMaxBytes int64
	// OtherMaxBytes bounds the body of any request that is neither an RPC the gate knows nor a REST
	// request. Default DefaultOtherMaxBytes (64 KiB).
	OtherMaxBytes int64
	// BodyTimeout is how long a request's body may take to arrive, counted from when the gate sees the
	// request's headers. Default DefaultBodyTimeout (30 s).
	BodyTimeout time.Duration
}

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.AnonymousMaxBytes <= 0 {
		c.AnonymousMaxBytes = AnonymousMaxBytes
	}
	if c.OtherMaxBytes <= 0 {
		c.OtherMaxBytes = DefaultOtherMaxBytes
	}
	if c.BodyTimeout <= 0 {
		c.BodyTimeout = DefaultBodyTimeout
	}
	return c
}

func (c Config) validate() error {
	if c.RESTPrefix != "" && c.REST.MaxBytes <= 0 {
		return errors.New("admission: REST routes need a read limit")
	}
	return nil
}

// Gate admits requests to the handlers behind it. Build every Connect handler with an option from Admit
// before serving, so that the gate knows each procedure.
type Gate struct {
	logger *slog.Logger
	cfg    Config
	errors *connect.ErrorWriter
	// slowRPC and slowREST make the answers to a body that did not arrive in time, anew each time: a
	// *connect.Error is not safe to share between requests.
	slowRPC, slowREST func() error

	mu         sync.RWMutex
	procedures map[string]Procedure
}

// New returns a Gate. A nil logger discards logs.
func New(logger *slog.Logger, cfg Config) (*Gate, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	slow := fmt.Sprintf("the request body did not arrive within %v", cfg.BodyTimeout)
	return &Gate{
		logger: logger, cfg: cfg, errors: connect.NewErrorWriter(), procedures: map[string]Procedure{},
		slowRPC: func() error { return connect.NewError(connect.CodeDeadlineExceeded, errors.New(slow)) },
		slowREST: func() error {
			return &httpError{status: http.StatusRequestTimeout, code: connect.CodeDeadlineExceeded, msg: slow}
		},
	}, nil
}

// Admit returns a Connect handler option that admits requests to each procedure of the handlers built with
// it as decide says, and gives each handler its read limit and a bounded gzip decompressor.
func (g *Gate) Admit(decide func(procedure string) Procedure) connect.HandlerOption {
	return connect.WithConditionalHandlerOptions(func(spec connect.Spec) []connect.HandlerOption {
		p := decide(spec.Procedure)
		if p.MaxBytes <= 0 {
			p.MaxBytes = DefaultMaxBytes
		}
		if p.Authenticate == nil {
			p.MaxBytes = min(p.MaxBytes, g.cfg.AnonymousMaxBytes)
		}
		g.mu.Lock()
		g.procedures[spec.Procedure] = p
		g.mu.Unlock()
		return []connect.HandlerOption{
			connect.WithReadMaxBytes(int(p.MaxBytes)),
			// Connect's own gzip, once a message passes the limit, inflates the rest of it to measure it;
			// this one stops there.
			connect.WithCompression(gzipName, nil, nil),
			connect.WithCompression(gzipName, newBoundedGzipFunc(p.MaxBytes), newGzipCompressor),
		}
	})
}

// Procedures returns how each procedure the gate knows is admitted.
func (g *Gate) Procedures() map[string]Procedure {
	g.mu.RLock()
	defer g.mu.RUnlock()
	out := make(map[string]Procedure, len(g.procedures))
	for k, v := range g.procedures {
		out[k] = v
	}
	return out
}

// REST returns how REST requests are admitted.
func (g *Gate) REST() Procedure { return g.cfg.REST }

func (g *Gate) procedure(path string) (Procedure, bool) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	p, ok := g.procedures[path]
	return p, ok
}

// Handler returns next behind the gate.
func (g *Gate) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The deadline comes first: even a refused request's body is read a little, by the server, which
		// drains up to 256 KiB of it to keep the connection.
		rc := g.startTimer(w, r)
		if p, ok := g.procedure(r.URL.Path); ok {
			g.serveRPC(w, r, rc, p, next)
			return
		}
		if g.cfg.RESTPrefix != "" && strings.HasPrefix(r.URL.Path, g.cfg.RESTPrefix) {
			g.serveREST(w, r, rc, next)
			return
		}
		g.serveOther(w, r, rc, next)
	})
}

// wireBytes is how much of a body may arrive for messages of at most maxBytes: a little more, for
// envelopes and for the framing of a gzip stream of data that does not compress.
func wireBytes(maxBytes int64) int64 { return maxBytes + maxBytes/64 + 1<<10 }

func (g *Gate) serveRPC(w http.ResponseWriter, r *http.Request, rc *http.ResponseController, p Procedure, next http.Handler) {
	if p.Authenticate != nil {
		ctx, err := p.Authenticate(r, r.URL.Path)
		if err != nil {
			g.refuseRPC(w, r, err)
			return
		}
		r = r.WithContext(ctx)
	}
	limit := wireBytes(p.MaxBytes)
	if r.ContentLength > limit {
		g.logTooLarge(r, r.ContentLength, limit)
		g.refuseRPC(w, r, connect.NewError(connect.CodeResourceExhausted,
			fmt.Errorf("the request body of %d bytes is larger than the %d bytes this procedure reads", r.ContentLength, p.MaxBytes)))
		return
	}
	g.bound(w, r, rc, limit, g.slowRPC)
	next.ServeHTTP(w, r)
}

// refuseRPC answers an RPC without reading its body, in the format of the caller's protocol.
func (g *Gate) refuseRPC(w http.ResponseWriter, r *http.Request, err error) {
	closeUnread(w, r)
	if werr := g.errors.Write(w, r, err); werr != nil {
		g.logger.DebugContext(r.Context(), "write refusal", "error", werr)
	}
}

// closeUnread ends an HTTP/1 connection after the response when the request's body is left unread:
// otherwise the server would read up to 256 KiB more of it to keep the connection.
func closeUnread(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor == 1 && r.ContentLength != 0 {
		w.Header().Set("Connection", "close")
	}
}

func (g *Gate) serveREST(w http.ResponseWriter, r *http.Request, rc *http.ResponseController, next http.Handler) {
	p := g.cfg.REST
	if p.Authenticate != nil {
		ctx, err := p.Authenticate(r, "")
		if err != nil {
			writeRESTError(w, r, err)
			return
		}
		r = r.WithContext(ctx)
	}
	if hasBody(r) {
		body, err := g.readREST(w, r, rc, p.MaxBytes)
		if err != nil {
			writeRESTError(w, r, err)
			return
		}
		if r.Header.Get("Content-Encoding") == gzipName {
			r.Header.Del("Content-Encoding")
		}
		r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
	}
	next.ServeHTTP(w, r)
}

// readREST reads a REST body whole, inflating a gzip one, within maxBytes.
func (g *Gate) readREST(w http.ResponseWriter, r *http.Request, rc *http.ResponseController, maxBytes int64) ([]byte, error) {
	limit := wireBytes(maxBytes)
	tooLarge := connect.NewError(connect.CodeResourceExhausted,
		fmt.Errorf("the request body is larger than this route reads (%d bytes)", maxBytes))
	if r.ContentLength > limit {
		g.logTooLarge(r, r.ContentLength, limit)
		return nil, tooLarge
	}
	g.bound(w, r, rc, limit, g.slowREST)
	var src io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == gzipName {
		zr := &boundedGzip{max: maxBytes}
		if err := zr.Reset(r.Body); err != nil {
			return nil, restBodyError(err, tooLarge)
		}
		src = zr
	}
	body, err := io.ReadAll(io.LimitReader(src, maxBytes+1))
	if err != nil {
		return nil, restBodyError(err, tooLarge)
	}
	if int64(len(body)) > maxBytes {
		g.logTooLarge(r, int64(len(body)), maxBytes)
		return nil, tooLarge
	}
	return body, nil
}

// restBodyError is the refusal of a REST body that could not be read: too large, too slow (an *httpError
// from timedBody), inflating too far (a *connect.Error from boundedGzip) or malformed.
func restBodyError(err error, tooLarge error) error {
	var maxBytesErr *http.MaxBytesError
	var slow *httpError
	var connectErr *connect.Error
	switch {
	case errors.As(err, &maxBytesErr):
		return tooLarge
	case errors.As(err, &slow):
		return slow
	case errors.As(err, &connectErr):
		return connectErr
	default:
		return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("read the request body: %w", err))
	}
}

func (g *Gate) serveOther(w http.ResponseWriter, r *http.Request, rc *http.ResponseController, next http.Handler) {
	if r.ContentLength > g.cfg.OtherMaxBytes {
		g.logTooLarge(r, r.ContentLength, g.cfg.OtherMaxBytes)
		closeUnread(w, r)
		http.Error(w, fmt.Sprintf("the request body is larger than %d bytes", g.cfg.OtherMaxBytes),
			http.StatusRequestEntityTooLarge)
		return
	}
	g.bound(w, r, rc, g.cfg.OtherMaxBytes, nil)
	next.ServeHTTP(w, r)
}

func hasBody(r *http.Request) bool {
	return r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0
}

// startTimer gives r's body, if it has one, the body timeout, and returns the controller that lifts it;
// nil when there is no body or the response writer is not a server's, which then bounds the size only.
func (g *Gate) startTimer(w http.ResponseWriter, r *http.Request) *http.ResponseController {
	if !hasBody(r) {
		return nil
	}
	rc := http.NewResponseController(w)
	if err := rc.SetReadDeadline(time.Now().Add(g.cfg.BodyTimeout)); err != nil {
		return nil
	}
	return rc
}

// bound caps r's body at limit bytes and, with rc, lifts its deadline once it has ended. A read that times
// out fails with slow's error, or with the network's when slow is nil.
func (g *Gate) bound(w http.ResponseWriter, r *http.Request, rc *http.ResponseController, limit int64, slow func() error) {
	if !hasBody(r) {
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	if rc != nil {
		r.Body = &timedBody{ReadCloser: r.Body, rc: rc, slow: slow}
	}
}

// timedBody lifts the read deadline when the body has ended, and names a timeout for the caller.
type timedBody struct {
	io.ReadCloser
	rc    *http.ResponseController
	slow  func() error
	ended atomic.Bool
}

func (b *timedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if errors.Is(err, io.EOF) && b.ended.CompareAndSwap(false, true) {
		// What the handler does after the body, such as holding a long poll or a stream open, is the
		// handler's time, not the client's. (net/http lifts an HTTP/1 deadline itself when it starts
		// watching the connection after the body, and HTTP/2 stops a stream's timer when its body ends, but
		// neither is promised.) A body that did not end keeps its deadline, which also bounds the server's
		// draining of it after the handler.
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	if b.slow != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		return n, b.slow()
	}
	return n, err
}

// httpError is a refusal whose HTTP status is not the one its code maps to.
type httpError struct {
	status int
	code   connect.Code
	msg    string
}

func (e *httpError) Error() string { return e.msg }

// writeRESTError answers a REST request as Vanguard answers errors: a google.rpc.Status in JSON.
func writeRESTError(w http.ResponseWriter, r *http.Request, err error) {
	status, code, msg := http.StatusInternalServerError, connect.CodeInternal, "internal error"
	var he *httpError
	var ce *connect.Error
	switch {
	case errors.As(err, &he):
		status, code, msg = he.status, he.code, he.msg
	case errors.As(err, &ce):
		code, msg = ce.Code(), ce.Message()
		status = restStatus(code)
	}
	closeUnread(w, r)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}{int(code), msg})
}

// restStatus is the HTTP status of a refusal the gate makes.
func restStatus(code connect.Code) int {
	switch code {
	case connect.CodeUnauthenticated:
		return http.StatusUnauthorized
	case connect.CodePermissionDenied:
		return http.StatusForbidden
	case connect.CodeResourceExhausted:
		return http.StatusRequestEntityTooLarge
	case connect.CodeInvalidArgument:
		return http.StatusBadRequest
	case connect.CodeDeadlineExceeded:
		return http.StatusRequestTimeout
	case connect.CodeUnavailable:
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

func (g *Gate) logTooLarge(r *http.Request, size, limit int64) {
	g.logger.WarnContext(r.Context(), "request body too large; refused", "security_event", "request_too_large",
		"path", r.URL.Path, "peer", r.RemoteAddr, "bytes", size, "limit", limit)
}
