// Package gateway serves a satellite's team MCP endpoints: one MCP server per team and user that
// aggregates the tools, resources and prompts of that user's online instances behind a single URL.
//
// For a team with slug "acme" the gateway answers
//
//	{public_url}/teams/acme/mcp   Streamable HTTP (POST, GET, DELETE; sessions)
//	{public_url}/teams/acme/sse   legacy HTTP+SSE; its message endpoint is the same path with ?sessionid=
//	{public_url}/.well-known/oauth-protected-resource/teams/acme/mcp   RFC 9728 metadata
//
// Every request but the metadata document carries an OAuth bearer token issued by the control plane. The
// gateway introspects it (results cached by the SHA-256 of the token for at most a minute and never past
// its expiry), requires its audience to be the team's /mcp URL and its team to be the team in the path,
// and answers 401 with a WWW-Authenticate header naming the metadata document otherwise. Sessions belong
// to the team, user and OAuth client that created them.
//
// # Protocol eras
//
// The session era (2024-11-05 … 2025-11-25) is served by a stateful Streamable HTTP handler. A POST
// without an Mcp-Session-Id that speaks the stateless 2026-07-28 era (by its MCP-Protocol-Version header,
// by the protocol version in a request's _meta, or because it is server/discover) goes to a stateless
// handler on the same URL instead; list_changed then reaches the client through subscriptions/listen.
// A client asking for a version neither handler knows is answered with a supported one by the SDK's
// negotiation (initialize answers with the newest session-era version; server/discover lists them all).
// A plain tools/call, in either era, is answered as the SDK's server would answer it without going
// through it (rawcall.go, sessioncall.go): the gateway finds a session by its id and keeps its idle
// timeout itself; what needs the SDK's stream or its own checks still goes to the SDK.
//
// # Naming
//
// A downstream tool "echo" of server "github" is listed as "github__echo". Names keep to 64 characters
// of [A-Za-z0-9_-]: other characters become "_", and a name that is too long is cut and ends in "_" and
// eight hex digits of the SHA-256 of the unsanitized name, so it is stable across restarts. When two
// tools still end up with one name, the first in (raw name, instance id) order keeps it and the others
// get a suffix hashed from their instance id as well. Prompts are named the same way. Resources keep
// their URIs, because clients and models quote them; their names get the prefix. When two instances
// offer the same URI, the instance first in (server slug, instance id) order serves it and the others'
// copy is left out. Resource templates are treated like resources: URI templates unchanged, names
// prefixed; a URI no listed resource has is read from the instance whose template matches it.
//
// # Search mode
//
// With ?tools=search on the endpoint URL (or, when the client names no mode, when the token's
// introspection says the user or the team chose search mode) a session lists two meta-tools instead of
// the user's tools: search_tools ranks the tools the endpoint would list for a query (package toolsearch)
// and returns the best matches with their exposed names, descriptions and input schemas, and call_tool
// calls one by its exposed name. ?tools=all asks for every tool whatever the user and team chose. Search
// covers exactly the user's listed tools, in an index per team user built on the first search-mode
// request and brought up to date by every resync; a call through call_tool runs the tool's own handler,
// so it is logged, counted, traced, and carries progress and cancellation like a direct call. Resources
// and prompts are the same in both modes.
//
// # Beyond calls
//
// completion/complete goes to the instance of the prompt or resource template it refers to, and
// resources/subscribe to the instance serving the resource; that instance's
// notifications/resources/updated reach the subscribed sessions. A session's logging/setLevel is applied
// to the user's instances as the most verbose level any of the user's sessions asked for, and each
// session gets log messages at its own level.
//
// An instance's own requests to its client (sampling/createMessage, elicitation/create, roots/list) and
// its log messages go to the client session whose request the instance is serving (see
// Gateway.ClientMiddleware, which the runtime installs on its sessions). Instances are per user, so
// this never crosses users; nothing on a session-era connection says which call a request belongs to,
// so once an instance has asked, its session serves the calls of one of the user's client sessions at a
// time and the others' calls wait their turn (a first request that comes while several sessions' calls
// run is held until it can be attributed). Instances that never ask serve every session at once. A client of the stateless 2026-07-28 era cannot be sent requests: when
// the server speaks that era too, the client's calls go to the instance's second, 2026-07-28 connection
// (ModernBackend) with the client's capabilities, and input_required results pass through as the server
// wrote them; otherwise it gets the instance's request in an input_required result of the gateway's, and
// its retry with the answer continues the waiting downstream call. A request the client did not declare
// the capability for is refused with MissingRequiredClientCapability (-32021).
//
// # Lifetime
//
// A user's aggregated server is built on the user's first request and freed, with everything the
// gateway keeps for the user, once the user has had no open session and no request in progress for
// Config.UserIdleTimeout; the next request builds it again from the runtime's instances. A session's
// log level and subscriptions are forgotten when it closes (a DELETE, a legacy SSE stream ending, or
// Config.SessionIdleTimeout passing without a request), and the instances' subscriptions nobody needs
// any more are ended. What the gateway keeps for an instance goes when the instance leaves the runtime.
//
// Sessions are capped per user (Config.MaxSessionsPerUser, across the user's teams), per team
// (Config.MaxSessionsPerTeam) and per satellite (Config.MaxSessions), counting Streamable HTTP sessions and legacy SSE streams. A request that would
// open one more is refused before the SDK creates it: 429, or 503 with Retry-After when the satellite
// is full, with a JSON-RPC error naming the limit. A session's place is free again when it closes.
// Stateless 2026-07-28 requests hold no session and are not counted.
//
// # Metrics and traces
//
// With Config.Metrics set, every tools/call the gateway serves is counted by team, installation, tool and
// outcome and timed, where its request log is built; calls of tools the user's server does not list are
// counted too, without the client's name for them. Sessions open and sessions refused by a limit are
// reported as well. Tool names become labels only for the first names seen per installation, since a
// tenant chooses them. With Config.TracerProvider set, each tools/call is a span that continues the
// client's W3C traceparent.
//
// # Policies
//
// SetPolicies hands the gateway the policies of each configuration (internal/policy): a team's apply to
// its calls alone, the global ones to every team's. Every tools/call, on every transport, is checked when
// it starts, before it reaches the instance: allow and deny policies, then rate limits. A refused call is
// answered with a tool error naming the policy, logged as a security event (security_event=policy_denied),
// kept in its request log with that error, and counted in orrery_satellite_policy_denials_total. Redact
// policies hide fields and patterns of the bodies in request logs.
//
// # Scopes
//
// Listing and reading need mcp:read, calling tools mcp:tools:execute. The decision is made once per
// request, before the SDK sees it, from the body decoded with the SDK's own decoder the way the
// transport at hand decodes it; a body the SDK would not decode is refused. A token with both scopes
// may send any method, so its bodies are decoded only where they route the request.
package gateway

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/internal/policy"
	"github.com/orrery/orrery/internal/scope"
	"github.com/orrery/orrery/internal/toolselect"
	"github.com/orrery/orrery/services/satellite/internal/sdkjson"
)

// Scopes the endpoint understands.
const (
	// ScopeRead allows listing tools, resources and prompts and reading resources and prompts.
	ScopeRead = scope.Read
	// ScopeExecute allows calling tools.
	ScopeExecute = scope.Execute
)

// Defaults of Config.
const (
	// DefaultMaxBodyBytes bounds a request body; JSON-RPC messages of MCP clients are far smaller.
	DefaultMaxBodyBytes = 4 << 20
	// DefaultCacheTTL is how long an introspection result is reused at most.
	DefaultCacheTTL = 60 * time.Second
	// DefaultCacheSize bounds the introspection cache.
	DefaultCacheSize = 10_000
	// DefaultSessionIdleTimeout closes Streamable HTTP sessions that had no POST for that long. Clients
	// that vanish without a DELETE (closed laptops, killed editors) are the common case, and only this
	// timeout ends their sessions. The SDK does not count an open GET stream as use, so a client that
	// stays connected but quiet for longer is told 404 on its next request and initializes a new
	// session, as the protocol requires; half an hour keeps that rare in interactive use while an
	// abandoned session holds its user's endpoint for at most this plus DefaultUserIdleTimeout.
	DefaultSessionIdleTimeout = 30 * time.Minute
	// DefaultUserIdleTimeout is how long a user's aggregated server is kept after the user's last
	// session closed and last request ended. Rebuilding it costs one look at the runtime's instances.
	DefaultUserIdleTimeout = 10 * time.Minute
	// DefaultMaxLoggedBodyBytes bounds each request or response body copied into a request log.
	DefaultMaxLoggedBodyBytes = 64 << 10
	// DefaultMaxSessionsPerUser bounds the MCP sessions one user holds on a satellite. A client keeps one
	// session per endpoint, and one that reconnects (a laptop waking up, an editor restarting) leaves its
	// old session behind until DefaultSessionIdleTimeout ends it; a hundred leaves room for many clients
	// and reconnects, and for agents that run a few dozen sessions at once.
	DefaultMaxSessionsPerUser = 100
	// DefaultMaxSessionsPerTeam bounds the MCP sessions of one team's members and OAuth clients on a
	// satellite together, so that no team can take a shared satellite's every session.
	DefaultMaxSessionsPerTeam = 1_000
	// DefaultMaxSessions bounds the MCP sessions of all users of a satellite together. An idle session
	// costs about 30 KB, so the default holds them to some 300 MB.
	DefaultMaxSessions = 10_000
)

// Backend is the MCP runtime as the gateway sees it.
type Backend interface {
	// Instances returns the instances of userID in teamID, online or not, with the features they
	// last reported.
	Instances(teamID, userID string) []Instance
	// Session returns a connected client session to the instance, starting it if it is dormant.
	Session(ctx context.Context, instanceID string) (*mcp.ClientSession, error)
	// Subscribe returns a channel that receives a value whenever any instance's status or features
	// change, and a function that ends the subscription. A signal is sent after the change is visible
	// through Instances; signals may be coalesced.
	Subscribe() (<-chan struct{}, func())
}

// ModernBackend is a Backend that also reaches instances in the stateless 2026-07-28 era. The gateway
// serves clients of that era there when the server speaks it, so that their input requests come back in
// results rather than as requests it would have to attribute to one of the user's clients.
type ModernBackend interface {
	Backend
	// ModernSession returns a client session to the instance in the 2026-07-28 era, with multi-round-trip
	// handling left to the caller, or nil and no error when the server does not speak that era.
	ModernSession(ctx context.Context, instanceID string) (*mcp.ClientSession, error)
}

// Instance is one MCP server instance of a user, as the runtime last saw it.
type Instance struct {
	ID             string
	InstallationID string
	TeamID         string
	UserID         string
	ServerSlug     string
	// ServerName is the server's display name, for messages to people; empty means ServerSlug.
	ServerName string
	// Prefix goes before the instance's tool and prompt names, joined by "__"; empty means the names are
	// listed as they are.
	Prefix string
	// Online says whether the instance may be offered to clients. A dormant instance that respawns
	// on demand counts as online.
	Online bool
	// Status is the instance's status, such as "online" or "error".
	Status    string
	Tools     []*mcp.Tool
	Resources []*mcp.Resource
	// ResourceTemplates are listed like resources: URI templates unchanged, names prefixed.
	ResourceTemplates []*mcp.ResourceTemplate
	Prompts           []*mcp.Prompt
	// RequestLoggingEnabled says whether request logs carry request and response bodies.
	RequestLoggingEnabled bool
	// Selection decides which of Tools the user is offered, and with what descriptions; the zero value
	// offers every tool as the server describes it.
	Selection toolselect.Selection
	// EmergencyStop, when set, says why the instance is out of service. It is never online, and calls of
	// its tools, listed or not, are answered with this reason.
	EmergencyStop string
	// ConnectAccountURL, when set, is where the user connects their account at a server that authorizes
	// each person: the instance has no credential and does not run. Its Tools (those known of the server)
	// are listed, and calls of them, listed or not, are answered with this link.
	ConnectAccountURL string
}

// Introspector checks access tokens with the control plane, such as through
// SatelliteService.IntrospectToken.
type Introspector interface {
	Introspect(ctx context.Context, token string) (*satellitev1.IntrospectTokenResponse, error)
}

// EventSink receives mcp.request.logs events. The satellite's event batcher is one.
type EventSink interface {
	Emit(*satellitev1.Event)
}

// Config configures a Gateway. Backend, Introspector and PublicURL are required.
type Config struct {
	// Forwarder, when set, takes the requests of teams other satellites of the pool serve.
	Forwarder Forwarder
	// NewSessionID, when set, chooses the ids of new Streamable HTTP sessions; a pool's satellites put
	// their own id in them so that any of them can route a session's requests.
	NewSessionID func() string
	// PublicURL is the satellite's external base URL, such as https://sat.example.com; endpoint URLs,
	// token audiences and the metadata document derive from it.
	PublicURL string
	// AuthorizationServer is the issuer URL of the control plane's OAuth authorization server, named
	// in the protected-resource metadata.
	AuthorizationServer string
	// Backend is the MCP runtime.
	Backend Backend
	// Introspector checks bearer tokens.
	Introspector Introspector
	// Events receives request logs. Nil discards them.
	Events EventSink
	// AllowedOrigins lists browser origins, such as https://console.example.com, that may call the
	// endpoint besides the public URL's own origin. Requests without an Origin header are allowed.
	AllowedOrigins []string
	// AllowedHosts lists hosts, as host or host:port (an entry without a port matches every port), that
	// clients may address the endpoint by besides the public URL's host: what a proxy or load balancer
	// in front of the satellite passes on in Host when it does not rewrite it, such as localhost:8080.
	// When set, a request whose Host is neither the public URL's nor listed is refused with 403, and an
	// http or https Origin of a listed host is allowed like the public origin. Empty, the default, checks
	// no Host: bearer tokens bound to the endpoint URL and the Origin check already keep a DNS-rebinding
	// page out, and a proxy that rewrites Host needs nothing.
	AllowedHosts []string
	// MaxBodyBytes caps request bodies; larger ones get 413. Default DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// CacheTTL bounds how long an introspection result is reused. Default DefaultCacheTTL; it is
	// never raised above DefaultCacheTTL.
	CacheTTL time.Duration
	// CacheSize bounds the number of cached introspection results. Default DefaultCacheSize.
	CacheSize int
	// SessionIdleTimeout closes Streamable HTTP sessions without a POST for that long. Default
	// DefaultSessionIdleTimeout.
	SessionIdleTimeout time.Duration
	// UserIdleTimeout frees a user's aggregated server, and all the gateway keeps for the user, once
	// the user had no open session and no request in progress for that long; the next request builds
	// it again. Default DefaultUserIdleTimeout.
	UserIdleTimeout time.Duration
	// MaxLoggedBodyBytes bounds the JSON of a body copied into a request log; a larger body is
	// replaced by a note of its size. Default DefaultMaxLoggedBodyBytes.
	MaxLoggedBodyBytes int
	// MaxSessionsPerUser bounds the MCP sessions a user holds open on the satellite, across the user's
	// teams: Streamable HTTP sessions and legacy SSE streams alike. A request that would open one more is
	// refused with 429 and a JSON-RPC error naming the limit. Stateless 2026-07-28 requests hold no
	// session and are not counted. Default DefaultMaxSessionsPerUser.
	MaxSessionsPerUser int
	// MaxSessionsPerTeam bounds the MCP sessions of one team's users together, refused past it like
	// MaxSessionsPerUser. Default DefaultMaxSessionsPerTeam.
	MaxSessionsPerTeam int
	// MaxSessions bounds the MCP sessions of all users together; past it a new session is refused with
	// 503 and Retry-After. Default DefaultMaxSessions.
	MaxSessions int
	// Metrics, when set, receives the gateway's Prometheus metrics: tool calls by team, installation,
	// tool and outcome with their latency, and MCP sessions open and refused (see the README for the
	// names). Nil records none.
	Metrics prometheus.Registerer
	// TracerProvider, when set, traces every tools/call in a span that continues the traceparent the
	// client sent with the HTTP request. Nil traces nothing.
	TracerProvider trace.TracerProvider
	// TaskKey keys the HMAC that binds the task ids clients see to their team and user (see tasks.go).
	// Default: 32 random bytes, so ids do not outlive the process, as its servers' tasks do not either.
	TaskKey []byte
	// Version is reported as the server version to MCP clients.
	Version string
	// Now returns the current time. Default time.Now.
	Now func() time.Time
}

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	c.PublicURL = strings.TrimRight(c.PublicURL, "/")
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.CacheTTL <= 0 || c.CacheTTL > DefaultCacheTTL {
		c.CacheTTL = DefaultCacheTTL
	}
	if c.CacheSize <= 0 {
		c.CacheSize = DefaultCacheSize
	}
	if c.SessionIdleTimeout <= 0 {
		c.SessionIdleTimeout = DefaultSessionIdleTimeout
	}
	if c.UserIdleTimeout <= 0 {
		c.UserIdleTimeout = DefaultUserIdleTimeout
	}
	if c.MaxLoggedBodyBytes <= 0 {
		c.MaxLoggedBodyBytes = DefaultMaxLoggedBodyBytes
	}
	if c.MaxSessionsPerUser <= 0 {
		c.MaxSessionsPerUser = DefaultMaxSessionsPerUser
	}
	if c.MaxSessionsPerTeam <= 0 {
		c.MaxSessionsPerTeam = DefaultMaxSessionsPerTeam
	}
	if c.MaxSessions <= 0 {
		c.MaxSessions = DefaultMaxSessions
	}
	if c.Version == "" {
		c.Version = "dev"
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

func (c Config) validate() error {
	if c.Backend == nil {
		return errors.New("gateway: Backend is required")
	}
	if c.Introspector == nil {
		return errors.New("gateway: Introspector is required")
	}
	u, err := url.Parse(c.PublicURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("gateway: PublicURL %q is not an absolute http(s) URL", c.PublicURL)
	}
	return nil
}

// Gateway is the http.Handler of the team MCP endpoints. Run keeps the aggregated tool lists in step
// with the runtime.
type Gateway struct {
	logger       *slog.Logger
	cfg          Config
	publicOrigin string
	publicHost   string
	// poolURL is the pool's public URL when the satellite shares one (SetPoolURL).
	poolURL   atomic.Pointer[string]
	tokens    *tokenCache
	slots     *sessionSlots
	mux       *http.ServeMux
	stateful  *mcp.StreamableHTTPHandler
	stateless *mcp.StreamableHTTPHandler
	progress  progressRoutes
	bridge    *bridge
	inputs    inputRounds
	tasks     taskIDs
	ext       *extTasks
	metrics   *metrics
	tracer    trace.Tracer
	// policies is the compiled policies of the last configuration (see SetPolicies); limiter keeps the
	// rates of its rate_limit policies.
	policies atomic.Pointer[policy.Book]
	limiter  *policy.Limiter

	// sessions finds open Streamable HTTP sessions by id, for the calls served before the SDK and for the
	// idle timeout the gateway keeps in the SDK's place.
	sessions sessionIndex
	// sessionCallsToSDK leaves every session-era call to the SDK, and sessionCallsServed counts those
	// served before it: tests hold the two paths to the same answers.
	sessionCallsToSDK  bool
	sessionCallsServed atomic.Int64

	// mu guards users and the reference counts of their servers (see acquire).
	mu    sync.Mutex
	users map[userKey]*userServer
}

// New returns a Gateway. A nil logger discards logs.
func New(logger *slog.Logger, cfg Config) (*Gateway, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	u, _ := url.Parse(cfg.PublicURL)
	g := &Gateway{
		logger:       logger,
		cfg:          cfg,
		publicOrigin: u.Scheme + "://" + u.Host,
		publicHost:   u.Host,
		tokens:       newTokenCache(cfg.Introspector, cfg.CacheSize, cfg.CacheTTL, cfg.Now),
		slots:        newSessionSlots(cfg.MaxSessionsPerUser, cfg.MaxSessionsPerTeam, cfg.MaxSessions),
		mux:          http.NewServeMux(),
		users:        make(map[userKey]*userServer),
		limiter:      policy.NewLimiter(cfg.Now, 0),
	}
	g.tracer = tracerOf(cfg.TracerProvider)
	var err error
	if g.metrics, err = newMetrics(cfg.Metrics, g.slots); err != nil {
		return nil, fmt.Errorf("gateway: register metrics: %w", err)
	}
	g.progress.routes = make(map[string]progressRoute)
	g.bridge = newBridge(logger)
	g.inputs.rounds = make(map[string]*inputRound)
	g.ext = newExtTasks()
	g.tasks.key = cfg.TaskKey
	if len(g.tasks.key) == 0 {
		g.tasks.key = make([]byte, 32)
		if _, err := rand.Read(g.tasks.key); err != nil {
			return nil, fmt.Errorf("gateway: task key: %w", err)
		}
	}
	// Bearer tokens and the Origin check below already defeat DNS rebinding, and the SDK's own
	// loopback check would refuse every request a reverse proxy on the same host forwards.
	g.sessions.byID = make(map[string]*openSession)
	// The SDK's idle timer would only count the POSTs its handler serves; the gateway serves some itself
	// (serveSessionCall) and keeps the timeout for all (sessionUse).
	g.stateful = mcp.NewStreamableHTTPHandler(g.serverFor, &mcp.StreamableHTTPOptions{
		Logger:                     logger,
		DisableLocalhostProtection: true,
		MaxRequestBodyBytes:        cfg.MaxBodyBytes,
	})
	g.stateless = mcp.NewStreamableHTTPHandler(g.serverFor, &mcp.StreamableHTTPOptions{
		Logger:                       logger,
		Stateless:                    true,
		DisableLocalhostProtection:   true,
		MaxRequestBodyBytes:          cfg.MaxBodyBytes,
		PropagateRequestCancellation: true,
	})
	g.mux.HandleFunc("/.well-known/oauth-protected-resource/teams/{team_slug}/mcp", g.serveMetadata)
	g.mux.Handle("/teams/{team_slug}/mcp", g.guard(streamableHTTP, http.HandlerFunc(g.serveStreamable)))
	g.mux.Handle("/teams/{team_slug}/sse", g.guard(legacySSE, http.HandlerFunc(g.serveSSE)))
	return g, nil
}

// Patterns are the net/http.ServeMux patterns the Gateway answers; mount it under each.
func Patterns() []string {
	return []string{
		"/teams/{team_slug}/mcp",
		"/teams/{team_slug}/sse",
		"/.well-known/oauth-protected-resource/teams/{team_slug}/mcp",
	}
}

// ServeHTTP implements http.Handler.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g.mux.ServeHTTP(w, r)
}

// Run re-synchronizes every user's aggregated server whenever the backend signals a change, until
// ctx is done. It returns nil then.
func (g *Gateway) Run(ctx context.Context) error {
	changes, cancel := g.cfg.Backend.Subscribe()
	defer cancel()
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-changes:
			if !ok {
				<-ctx.Done()
				return nil
			}
			g.syncAll()
		}
	}
}

func (g *Gateway) syncAll() {
	g.mu.Lock()
	users := make([]*userServer, 0, len(g.users))
	for _, us := range g.users {
		users = append(users, us)
	}
	g.mu.Unlock()
	for _, us := range users {
		us.sync()
	}
}

// endpointURL is the team's Streamable HTTP URL, which is also the audience of its tokens.
func (g *Gateway) endpointURL(slug string) string {
	return g.baseURL() + "/teams/" + slug + "/mcp"
}

// metadataURL is where the team endpoint's RFC 9728 metadata is served.
func (g *Gateway) metadataURL(slug string) string {
	return g.baseURL() + "/.well-known/oauth-protected-resource/teams/" + slug + "/mcp"
}

// serverFor returns the aggregated server of the request's principal, which serveStreamable put in its
// context.
func (g *Gateway) serverFor(r *http.Request) *mcp.Server {
	us := userServerFrom(r.Context())
	if us == nil {
		return nil
	}
	return us.serverForMode(toolsModeFrom(r.Context()))
}

func (g *Gateway) serveStreamable(w http.ResponseWriter, r *http.Request) {
	p := principalFrom(r.Context())
	mode, err := toolsModeOf(r, p)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r = withToolsMode(r, mode)
	opens := r.Method == http.MethodPost && r.Header.Get("Mcp-Session-Id") == ""
	if opens && statelessEra(r) {
		us, release := g.acquire(p.teamID, p.userID)
		defer release()
		if s, _ := r.Context().Value(rpcSummaryKey{}).(*rpcSummary); s != nil && slices.Equal(s.methods, []string{"server/discover"}) &&
			g.userCallsTasks(us) {
			dw := &initializeWriter{ResponseWriter: w, edit: addTasksExtension}
			defer dw.finish(nil)
			w = dw
		}
		g.stateless.ServeHTTP(w, withUserServerRequest(r, us))
		return
	}
	// Every POST without a session id makes the SDK create a session, which it keeps if the POST
	// initialized it; the slot is taken before, and kept only for a session that stays.
	var sl *slot
	if opens {
		var refused *sessionLimitError
		if sl, refused = g.slots.take(p.userID, p.teamID); refused != nil {
			g.metrics.observeRefused(refused)
			refused.write(w, requestID(r))
			return
		}
	}
	us, release := g.acquire(p.teamID, p.userID)
	defer release()
	if s, _ := r.Context().Value(rpcSummaryKey{}).(*rpcSummary); s != nil && slices.Equal(s.methods, []string{"initialize"}) {
		if caps := g.userTaskCapability(us); caps != nil {
			iw := &initializeWriter{ResponseWriter: w}
			defer iw.finish(caps)
			w = iw
		}
	}
	if open := g.sessions.of(r, p); open != nil {
		defer g.useSession(open, r)()
	}
	g.stateful.ServeHTTP(w, withUserServerRequest(r, us))
	if sl != nil {
		us.keepSlot(sl, w.Header().Get("Mcp-Session-Id"))
	}
}

// useSession counts a request of an open session that the SDK serves, as the SDK's handler counted it for
// the session's idle timeout, and returns the function that ends it: a POST is use, a GET stream is not
// but carries what the session's instances ask mid-call. A DELETE ends the session: no call is served
// before the SDK from then on. The client's notifications/cancelled reaches the calls the gateway serves.
func (g *Gateway) useSession(open *openSession, r *http.Request) (end func()) {
	switch r.Method {
	case http.MethodGet:
		open.startGET()
		return open.endGET
	case http.MethodDelete:
		open.closed()
		return func() {}
	case http.MethodPost:
		s, _ := r.Context().Value(rpcSummaryKey{}).(*rpcSummary)
		var ids []jsonrpc.ID
		if s != nil {
			for _, req := range s.requests {
				switch {
				case req.IsCall():
					ids = append(ids, req.ID)
				case req.Method == "notifications/cancelled":
					var params struct {
						RequestID any `json:"requestId"`
					}
					if sdkjson.Unmarshal(req.Params, &params) == nil {
						if id, err := jsonrpc.MakeID(params.RequestID); err == nil && id.IsValid() {
							open.cancelCall(id)
						}
					}
				}
			}
		}
		if !open.startPOST(ids) {
			return func() {}
		}
		return func() { open.endPOST(g.cfg.SessionIdleTimeout, ids...) }
	}
	return func() {}
}

func (g *Gateway) serveSSE(w http.ResponseWriter, r *http.Request) {
	p := principalFrom(r.Context())
	mode, err := toolsModeOf(r, p)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r = withToolsMode(r, mode)
	// A GET is a legacy SSE session, for as long as its stream lasts.
	if r.Method == http.MethodGet {
		sl, refused := g.slots.take(p.userID, p.teamID)
		if refused != nil {
			g.metrics.observeRefused(refused)
			refused.write(w, jsonrpc.ID{})
			return
		}
		defer sl.release()
	}
	us, release := g.acquire(p.teamID, p.userID)
	defer release()
	if r.Method == http.MethodGet {
		w = cleanStreamWriter{w}
	}
	us.sseHandler(p.binding).ServeHTTP(w, r)
}

// withUserServerRequest returns r with the server it holds in its context, for serverFor.
func withUserServerRequest(r *http.Request, us *userServer) *http.Request {
	return r.WithContext(withUserServer(r.Context(), us))
}

// requestID is the id of the request's only JSON-RPC request, if it has one.
func requestID(r *http.Request) jsonrpc.ID {
	if s, _ := r.Context().Value(rpcSummaryKey{}).(*rpcSummary); s != nil {
		return s.id
	}
	return jsonrpc.ID{}
}
