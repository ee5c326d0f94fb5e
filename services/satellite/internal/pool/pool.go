// Package pool lets the global satellites of a pool share one public URL behind any load balancer.
//
// Every satellite of the pool answers every team's endpoint on its public listener. A request that names
// a session (the Mcp-Session-Id header, or the sessionid of a legacy HTTP+SSE message endpoint) goes to
// the satellite that owns the session: session ids begin with the owner's satellite id and a dot. A
// session whose owner is not in the pool any more is answered 404, so the client starts a new one, as the
// MCP specification has it. A request without a session is authenticated here, by the gateway; when the
// token's introspection places the team on other satellites, the gateway hands it to Forward, which sends
// it to the first live, non-draining one with the identity the control plane signed for it.
//
// Satellites reach each other on an internal listener, apart from the public one so that no load
// balancer exposes it. A request on it must carry the sender's peer credential, signed by the control
// plane and not expired; a forwarded identity, when there is one, must be signed by the control plane,
// unexpired, and for the team in the URL. Identity headers arriving on the public listener are removed
// before anything reads them. Responses stream through: each event is flushed as it comes, and either
// side going away cancels the other.
package pool

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/internal/peertoken"
	"github.com/orrery/orrery/services/satellite/internal/gateway"
)

// Headers of the internal channel. They are never trusted on the public listener, where they are removed.
const (
	// HeaderCredential carries the sending satellite's peer credential.
	HeaderCredential = "Orrery-Peer-Credential"
	// HeaderIdentity carries the identity the control plane signed for a request forwarded by placement.
	HeaderIdentity = "Orrery-Forwarded-Identity"
)

// DefaultCapacity is a satellite's weight in team placement unless configured otherwise.
const DefaultCapacity = 100

// unreachableFor is how long a peer that could not be reached is passed over when forwarding by placement,
// while the control plane has yet to see it offline.
const unreachableFor = 10 * time.Second

// CredentialIssuer is the part of the control plane's SatelliteService client that issues peer
// credentials; satellitev1connect.SatelliteServiceClient is one.
type CredentialIssuer interface {
	GetPeerCredential(context.Context, *connect.Request[satellitev1.GetPeerCredentialRequest]) (*connect.Response[satellitev1.GetPeerCredentialResponse], error)
}

var _ gateway.Forwarder = (*Pool)(nil)

// Local is the satellite's own team endpoint, the gateway.
type Local interface {
	http.Handler
	// SetPoolURL makes the pool's public URL the base of endpoint URLs and token audiences.
	SetPoolURL(string)
	// OpenSessions counts the sessions open at the endpoint.
	OpenSessions() int
	// ForgetTokens drops the endpoint's cached introspections.
	ForgetTokens()
}

// Config configures a Pool.
type Config struct {
	// Local serves the requests this satellite serves. Required.
	Local Local
	// Capacity is the weight reported in heartbeats. Default DefaultCapacity.
	Capacity uint32
	// InternalURL is where peers reach this satellite's internal listener; empty while it has none.
	InternalURL string
	// MaxBodyBytes bounds the body of a forwarded request, as the gateway bounds its own. Required.
	MaxBodyBytes int64
	// Transport carries forwarded requests. Default: keep-alive HTTP/1.1 with a generous idle pool.
	Transport http.RoundTripper
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Resync, when set, fetches the configuration again, and with it the pool: Run calls it with every
	// credential refresh, and a request naming a session of a satellite this one has not heard of calls
	// it before answering 404, since the peer list may be older than the session.
	Resync func(context.Context) error
}

// Pool is a satellite's membership of a pool of global satellites.
type Pool struct {
	logger *slog.Logger
	cfg    Config
	self   atomic.Pointer[string]
	state  atomic.Pointer[satellitev1.Pool]
	cred   atomic.Pointer[credential]
	// poolSet is closed by the first SetPool with a pool, which starts the credential refresh.
	poolSet     chan struct{}
	poolSetOnce sync.Once
	proxy       *httputil.ReverseProxy

	mu          sync.Mutex
	unreachable map[string]time.Time
	// learned are peers that placements named, which the last configuration may not list yet.
	learned map[string]*satellitev1.Peer
	// ownerLookup is when a request naming an unknown session owner last asked for a refresh.
	ownerLookup time.Time
	resyncMu    sync.Mutex
	lastSync    time.Time
}

// credential is the satellite's current peer credential and the keys that verify the pool's tokens.
type credential struct {
	token   string
	expires time.Time
	keys    []ed25519.PublicKey
}

// New returns a Pool. A nil logger discards logs.
func New(logger *slog.Logger, cfg Config) (*Pool, error) {
	if cfg.Local == nil {
		return nil, errors.New("pool: Local is required")
	}
	if cfg.MaxBodyBytes <= 0 {
		return nil, errors.New("pool: MaxBodyBytes is required")
	}
	if cfg.Capacity == 0 {
		cfg.Capacity = DefaultCapacity
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Transport == nil {
		cfg.Transport = NewTransport()
	}
	p := &Pool{logger: logger, cfg: cfg, poolSet: make(chan struct{}), unreachable: make(map[string]time.Time),
		learned: make(map[string]*satellitev1.Peer)}
	p.proxy = &httputil.ReverseProxy{
		Rewrite:       p.rewrite,
		Transport:     cfg.Transport,
		FlushInterval: -1,
		ErrorHandler:  p.proxyError,
		ErrorLog:      slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	return p, nil
}

// NewTransport returns the transport of the internal channel: HTTP/1.1 with keep-alive, enough idle
// connections per peer that a burst does not dial again, and no proxy from the environment.
func NewTransport() *http.Transport {
	return &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: 0, // a tool call may take long before its first byte
		DisableCompression:    true,
	}
}

// SetSelf records the satellite's id once it is known; session ids it creates from then on name it.
func (p *Pool) SetSelf(id string) { p.self.Store(&id) }

func (p *Pool) selfID() string {
	if s := p.self.Load(); s != nil {
		return *s
	}
	return ""
}

// Capacity implements backend.PoolMember.
func (p *Pool) Capacity() uint32 { return p.cfg.Capacity }

// InternalURL implements backend.PoolMember.
func (p *Pool) InternalURL() string { return p.cfg.InternalURL }

// OpenSessions implements backend.PoolMember.
func (p *Pool) OpenSessions() int { return p.cfg.Local.OpenSessions() }

// SetPool implements backend.PoolMember: it takes the pool of each configuration.
func (p *Pool) SetPool(pool *satellitev1.Pool) {
	p.state.Store(pool)
	p.cfg.Local.SetPoolURL(pool.GetUrl())
	if pool != nil {
		// A new configuration may have moved teams here or away, or drained this satellite: a cached
		// introspection would keep serving a team here that is placed elsewhere now.
		p.cfg.Local.ForgetTokens()
	}
	if pool != nil {
		p.poolSetOnce.Do(func() { close(p.poolSet) })
	}
}

// Draining says whether the operator drains this satellite.
func (p *Pool) Draining() bool { return p.state.Load().GetDraining() }

// active says whether the satellite is in a pool and knows its id: only then are session ids routed.
func (p *Pool) active() bool { return p.state.Load() != nil && p.selfID() != "" }

// NewSessionID is the id of a new Streamable HTTP session: this satellite's id, a dot, and random text.
func (p *Pool) NewSessionID() string {
	if !p.active() {
		return rand.Text()
	}
	return p.selfID() + "." + rand.Text()
}

// peer returns the live peer with this id, from the last configuration or else a recent placement.
func (p *Pool) peer(id string) *satellitev1.Peer {
	for _, peer := range p.state.Load().GetPeers() {
		if peer.GetSatelliteId() == id {
			return peer
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.learned[id]
}

// learn remembers a peer a placement named that the configuration does not list yet.
func (p *Pool) learn(peer *satellitev1.Peer) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.learned) >= 1024 {
		clear(p.learned)
	}
	p.learned[peer.GetSatelliteId()] = peer
}

// resyncInterval spaces out configuration refreshes, which requests naming unknown satellites ask for.
const resyncInterval = 250 * time.Millisecond

// resync fetches the configuration again, unless a fetch that began after the caller asked has ended: one
// fetch answers every request waiting for it, and fetches are resyncInterval apart at least.
func (p *Pool) resync(ctx context.Context) {
	if p.cfg.Resync == nil {
		return
	}
	asked := p.cfg.Now()
	p.resyncMu.Lock()
	defer p.resyncMu.Unlock()
	if p.lastSync.After(asked) {
		return
	}
	if wait := resyncInterval - p.cfg.Now().Sub(p.lastSync); wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
	started := p.cfg.Now()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := p.cfg.Resync(ctx); err != nil {
		p.logger.WarnContext(ctx, "configuration refresh for the pool failed", slog.Any("error", err))
	}
	p.lastSync = started
}

// ownerLookupInterval spaces the refreshes that requests naming unknown session owners may ask for: anyone
// can make up an owner, and a refresh fetches the whole configuration.
const ownerLookupInterval = 5 * time.Second

// ownerLookupDue tells whether a request naming an unknown session owner may ask for a refresh, at most
// once an ownerLookupInterval; the others are answered at once, as for a session whose owner is gone.
func (p *Pool) ownerLookupDue() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.cfg.Now()
	if now.Sub(p.ownerLookup) < ownerLookupInterval {
		return false
	}
	p.ownerLookup = now
	return true
}

// sessionOwner splits a session id into its owner and the rest; owner is empty for an id without one.
func sessionOwner(id string) (owner, rest string) {
	owner, rest, ok := strings.Cut(id, ".")
	if !ok {
		return "", id
	}
	return owner, rest
}

// requestSession returns the session a request names and whether it is a legacy SSE one.
func requestSession(r *http.Request) (id string, legacy bool) {
	if id := r.Header.Get("Mcp-Session-Id"); id != "" {
		return id, false
	}
	if id := r.URL.Query().Get("sessionid"); id != "" {
		return id, true
	}
	return "", false
}

// Public is the handler of the public listener, in front of the gateway.
func (p *Pool) Public() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Header.Del(HeaderCredential)
		r.Header.Del(HeaderIdentity)
		if !p.active() {
			p.cfg.Local.ServeHTTP(w, r)
			return
		}
		id, _ := requestSession(r)
		if owner, _ := sessionOwner(id); owner != "" && owner != p.selfID() {
			peer := p.peer(owner)
			if peer == nil && p.ownerLookupDue() {
				// A satellite that joined since the last configuration may own it.
				p.resync(r.Context())
				peer = p.peer(owner)
			}
			if peer == nil || peer.GetInternalUrl() == "" {
				http.Error(w, "session not found", http.StatusNotFound)
				return
			}
			p.forward(w, r, peer, "", true)
			return
		}
		p.serveLocal(w, r)
	})
}

// Internal is the handler of the internal listener, where peers send what they forward.
func (p *Pool) Internal() http.Handler {
	mux := http.NewServeMux()
	h := http.HandlerFunc(p.serveInternal)
	mux.Handle("/teams/{team_slug}/mcp", h)
	mux.Handle("/teams/{team_slug}/sse", h)
	return mux
}

func (p *Pool) serveInternal(w http.ResponseWriter, r *http.Request) {
	cred := p.cred.Load()
	if cred == nil || !p.active() {
		http.Error(w, "not in a pool", http.StatusServiceUnavailable)
		return
	}
	now := p.cfg.Now()
	var pc satellitev1.PeerCredential
	if err := peertoken.Verify(cred.keys, peertoken.PeerCredential, r.Header.Get(HeaderCredential), &pc); err != nil ||
		pc.GetSatelliteId() == "" || pc.GetExpiresAt() == nil || !now.Before(pc.GetExpiresAt().AsTime()) {
		p.logger.WarnContext(r.Context(), "internal request refused: invalid peer credential", slog.String("remote", r.RemoteAddr))
		http.Error(w, "invalid peer credential", http.StatusUnauthorized)
		return
	}
	r.Header.Del(HeaderCredential)
	token := r.Header.Get(HeaderIdentity)
	r.Header.Del(HeaderIdentity)
	if token != "" && r.Header.Get("Authorization") == "" {
		// The gateway reads the identity, not a token, but its SDK layer wants a bearer header.
		r.Header.Set("Authorization", "Bearer forwarded-identity")
	}
	if token == "" {
		// Forwarded for its session: the session must be this satellite's, and the request is
		// authenticated by its bearer token like any other.
		id, _ := requestSession(r)
		if owner, _ := sessionOwner(id); owner == "" || owner != p.selfID() {
			http.Error(w, "session not found", http.StatusNotFound)
			return
		}
		p.serveLocal(w, r)
		return
	}
	var info satellitev1.IntrospectTokenResponse
	slug := r.PathValue("team_slug")
	if err := peertoken.Verify(cred.keys, peertoken.ForwardedIdentity, token, &info); err != nil ||
		!info.GetActive() || info.GetTeamSlug() != slug || info.GetExpiresAt() == nil || !now.Before(info.GetExpiresAt().AsTime()) {
		p.logger.WarnContext(r.Context(), "internal request refused: invalid forwarded identity",
			slog.String("peer", pc.GetSatelliteId()), slog.String("team_slug", slug))
		http.Error(w, "invalid forwarded identity", http.StatusForbidden)
		return
	}
	p.serveLocal(w, r.WithContext(gateway.WithForwardedIdentity(r.Context(), &info)))
}

// serveLocal serves a request here. The legacy SSE session ids the SDK chooses are shown to clients with
// this satellite's id in front, and taken off again when a client posts to its message endpoint.
func (p *Pool) serveLocal(w http.ResponseWriter, r *http.Request) {
	if !p.active() || !strings.HasSuffix(r.URL.Path, "/sse") {
		p.cfg.Local.ServeHTTP(w, r)
		return
	}
	if id := r.URL.Query().Get("sessionid"); id != "" {
		owner, rest := sessionOwner(id)
		if owner != "" {
			q := r.URL.Query()
			q.Set("sessionid", rest)
			r = r.Clone(r.Context())
			r.URL.RawQuery = q.Encode()
			r.RequestURI = r.URL.RequestURI()
		}
	}
	if r.Method == http.MethodGet {
		w = &endpointWriter{ResponseWriter: w, prefix: p.selfID() + "."}
	}
	p.cfg.Local.ServeHTTP(w, r)
}

// Forward implements gateway.Forwarder: a request without a session for a team placed on other
// satellites goes to the first live, non-draining, reachable one. It serves the request here (returning
// false) when that satellite is this one.
func (p *Pool) Forward(w http.ResponseWriter, r *http.Request, info *satellitev1.IntrospectTokenResponse) bool {
	if !p.active() {
		return false
	}
	now := p.cfg.Now()
	for _, placed := range info.GetPlacement() {
		if placed.GetSatelliteId() == p.selfID() {
			return false
		}
		peer := p.peer(placed.GetSatelliteId())
		if peer == nil && placed.GetInternalUrl() != "" {
			// The introspection is fresher than this satellite's peer list.
			peer = placed
			p.learn(placed)
		}
		if peer == nil || peer.GetDraining() || placed.GetDraining() || peer.GetInternalUrl() == "" || p.isUnreachable(peer.GetSatelliteId(), now) {
			continue
		}
		if info.GetForwardedIdentity() == "" {
			break
		}
		p.forward(w, r, peer, info.GetForwardedIdentity(), false)
		return true
	}
	w.Header().Set("Retry-After", "1")
	http.Error(w, "no satellite of the pool serves this team now", http.StatusServiceUnavailable)
	return true
}

type forwardKey struct{}

type forwardTarget struct {
	peer     *satellitev1.Peer
	identity string
	session  bool
}

// forward sends r to peer's internal listener and streams the answer back.
func (p *Pool) forward(w http.ResponseWriter, r *http.Request, peer *satellitev1.Peer, identity string, session bool) {
	cred := p.cred.Load()
	if cred == nil || !p.cfg.Now().Before(cred.expires) {
		w.Header().Set("Retry-After", "1")
		http.Error(w, "satellite has no peer credential yet", http.StatusServiceUnavailable)
		return
	}
	if r.ContentLength > p.cfg.MaxBodyBytes {
		http.Error(w, http.StatusText(http.StatusRequestEntityTooLarge), http.StatusRequestEntityTooLarge)
		return
	}
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = http.MaxBytesReader(w, r.Body, p.cfg.MaxBodyBytes)
	}
	ctx := context.WithValue(r.Context(), forwardKey{}, &forwardTarget{peer: peer, identity: identity, session: session})
	p.proxy.ServeHTTP(w, r.WithContext(ctx))
}

func (p *Pool) rewrite(pr *httputil.ProxyRequest) {
	t := pr.In.Context().Value(forwardKey{}).(*forwardTarget)
	target, err := url.Parse(t.peer.GetInternalUrl())
	if err != nil {
		// Rewrite cannot fail; an unparsable URL makes the request fail in the transport.
		target = &url.URL{Scheme: "http", Host: "invalid."}
	}
	pr.SetURL(target)
	// The gateway there checks the Host the client addressed, as it would here.
	pr.Out.Host = pr.In.Host
	pr.SetXForwarded()
	pr.Out.Header.Set(HeaderCredential, p.cred.Load().token)
	if t.identity != "" {
		pr.Out.Header.Set(HeaderIdentity, t.identity)
	}
}

func (p *Pool) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	t := r.Context().Value(forwardKey{}).(*forwardTarget)
	if r.Context().Err() != nil {
		return // the client went away
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		http.Error(w, http.StatusText(http.StatusRequestEntityTooLarge), http.StatusRequestEntityTooLarge)
		return
	}
	p.markUnreachable(t.peer.GetSatelliteId())
	p.logger.WarnContext(r.Context(), "forward to peer failed", slog.String("peer", t.peer.GetSatelliteId()), slog.Any("error", err))
	if t.session {
		// The session's owner is gone, and its sessions with it: the client starts a new one.
		http.Error(w, "session not found", http.StatusNotFound)
		return
	}
	w.Header().Set("Retry-After", "1")
	http.Error(w, "satellite unreachable", http.StatusBadGateway)
}

func (p *Pool) markUnreachable(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.unreachable[id] = p.cfg.Now().Add(unreachableFor)
}

func (p *Pool) isUnreachable(id string, now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	until, ok := p.unreachable[id]
	if ok && !now.Before(until) {
		delete(p.unreachable, id)
		return false
	}
	return ok
}

// Run keeps a peer credential from issuer fresh from the first pool on, until ctx is done. It returns nil
// then.
func (p *Pool) Run(ctx context.Context, issuer CredentialIssuer) error {
	select {
	case <-ctx.Done():
		return nil
	case <-p.poolSet:
	}
	const minWait, maxWait = time.Second, 30 * time.Second
	wait := minWait
	for {
		next, err := p.refresh(ctx, issuer)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			p.logger.WarnContext(ctx, "peer credential refresh failed", slog.Any("error", err), slog.Duration("retry_in", wait))
			next, wait = wait, min(2*wait, maxWait)
		} else {
			wait = minWait
			// Peers join and drain without this satellite being told; their list is refreshed as often
			// as the credential.
			p.resync(ctx)
		}
		t := time.NewTimer(next)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// refresh fetches a credential and returns how long to wait before the next: half its remaining life.
func (p *Pool) refresh(ctx context.Context, issuer CredentialIssuer) (time.Duration, error) {
	resp, err := issuer.GetPeerCredential(ctx, connect.NewRequest(&satellitev1.GetPeerCredentialRequest{}))
	if err != nil {
		return 0, err
	}
	keys := make([]ed25519.PublicKey, 0, len(resp.Msg.GetVerificationKeys()))
	for _, k := range resp.Msg.GetVerificationKeys() {
		if len(k) == ed25519.PublicKeySize {
			keys = append(keys, ed25519.PublicKey(slices.Clone(k)))
		}
	}
	if resp.Msg.GetCredential() == "" || resp.Msg.GetExpiresAt() == nil || len(keys) == 0 {
		return 0, errors.New("pool: incomplete peer credential")
	}
	c := &credential{token: resp.Msg.GetCredential(), expires: resp.Msg.GetExpiresAt().AsTime(), keys: keys}
	p.cred.Store(c)
	return max(time.Second, c.expires.Sub(p.cfg.Now())/2), nil
}

// endpointWriter puts the satellite's id in front of the session id of a legacy SSE stream's endpoint
// event, the first event the SDK writes.
type endpointWriter struct {
	http.ResponseWriter
	prefix string
	done   bool
}

func (e *endpointWriter) Write(b []byte) (int, error) {
	if e.done {
		return e.ResponseWriter.Write(b)
	}
	e.done = true
	s := string(b)
	if !strings.HasPrefix(s, "event: endpoint\n") {
		return e.ResponseWriter.Write(b)
	}
	_, after, ok := strings.Cut(s, "?sessionid=")
	if id, _, _ := strings.Cut(after, "\n"); !ok || strings.Contains(id, ".") {
		// Already named by the satellite that serves the stream, which this one forwarded it to.
		return e.ResponseWriter.Write(b)
	}
	s = strings.Replace(s, "?sessionid=", "?sessionid="+url.QueryEscape(e.prefix), 1)
	if _, err := e.ResponseWriter.Write([]byte(s)); err != nil {
		return 0, err
	}
	return len(b), nil
}

func (e *endpointWriter) Flush() {
	if f, ok := e.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (e *endpointWriter) Unwrap() http.ResponseWriter { return e.ResponseWriter }
