package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/oauthex"
	"golang.org/x/sync/singleflight"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/services/satellite/internal/sdkjson"
)

// introspectTimeout bounds one introspection call; it runs detached from the request that asked, because
// concurrent requests with the same token share it.
const introspectTimeout = 10 * time.Second

// principal is who a request acts for, resolved from its bearer token.
type principal struct {
	teamID   string
	teamSlug string
	userID   string
	clientID string
	scopes   []string
	// email and role ("admin" or "member") are what policies know of the user.
	email, role string
	// binding identifies the sessions the principal may use: the SDK compares it on every request of a
	// Streamable HTTP session, and each binding has its own legacy SSE sessions.
	binding string
	// toolsMode is the tool mode introspection chose for the user in the team (ToolsAll or
	// ToolsSearch), used when the client names none.
	toolsMode string
}

func (p *principal) has(scope string) bool { return slices.Contains(p.scopes, scope) }

type principalKey struct{}

func principalFrom(ctx context.Context) *principal {
	p, _ := ctx.Value(principalKey{}).(*principal)
	return p
}

// statelessEra reports whether a POST speaks the stateless 2026-07-28 protocol.
func statelessEra(r *http.Request) bool {
	if v := r.Header.Get("Mcp-Protocol-Version"); v != "" && v >= "2026-07-28" {
		return true
	}
	s, _ := r.Context().Value(rpcSummaryKey{}).(*rpcSummary)
	if s == nil {
		return false
	}
	return slices.Contains(s.methods, "server/discover") || s.metaVersion() >= "2026-07-28"
}

// transport is an endpoint's MCP transport, which decides how the SDK decodes a POST body.
type transport int

const (
	// streamableHTTP takes a message or a batch per POST; a POST without a session id may open one.
	streamableHTTP transport = iota
	// legacySSE takes one message per POST to a session's message endpoint.
	legacySSE
)

// guard authenticates and authorizes a request to a team endpoint and bounds its body. Only a request
// that passes reaches next, with its principal and the SDK's TokenInfo in its context. It is the
// endpoint's one scope decision, for every transport, made from the body decoded as the SDK decodes it
// on tr (see decodeBody).
func (g *Gateway) guard(tr transport, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		slug := r.PathValue("team_slug")
		if !g.hostAllowed(r.Host) {
			http.Error(w, "host not allowed", http.StatusForbidden)
			return
		}
		if !g.originAllowed(r.Header.Get("Origin")) {
			http.Error(w, "origin not allowed", http.StatusForbidden)
			return
		}
		if origin := r.Header.Get("Origin"); origin != "" {
			allowCORS(w.Header(), origin)
			if r.Method == http.MethodOptions {
				// A preflight carries no credentials; the real request is authenticated.
				w.WriteHeader(http.StatusNoContent)
				return
			}
		}
		// A request another satellite of the pool authenticated comes with the identity the control plane
		// signed for it (see WithForwardedIdentity); it is checked below like an introspection.
		info := forwardedIdentityFrom(r.Context())
		if info == nil {
			token, ok := bearerToken(r)
			if !ok {
				g.challenge(w, slug, "", "missing bearer token")
				return
			}
			var err error
			if info, err = g.tokens.lookup(r.Context(), token); err != nil {
				g.logger.WarnContext(r.Context(), "token introspection failed", slog.Any("error", err))
				http.Error(w, "token introspection unavailable", http.StatusServiceUnavailable)
				return
			}
		}
		now := g.cfg.Now()
		if !info.GetActive() || info.GetTeamSlug() != slug || info.GetAudience() != g.endpointURL(slug) ||
			(info.GetExpiresAt() != nil && !now.Before(info.GetExpiresAt().AsTime())) ||
			info.GetUserId() == "" || info.GetTeamId() == "" {
			g.challenge(w, slug, `error="invalid_token"`, "invalid token")
			return
		}
		// A team another satellite of the pool serves: a new session, or a request without one, goes
		// there. A session stays where it was opened, even once its team has moved away.
		if len(info.GetPlacement()) > 0 && g.cfg.Forwarder != nil && forwardedIdentityFrom(r.Context()) == nil &&
			!hasSession(r) && g.cfg.Forwarder.Forward(w, r, info) {
			return
		}
		p := &principal{
			teamID:   info.GetTeamId(),
			teamSlug: slug,
			userID:   info.GetUserId(),
			clientID: info.GetClientId(),
			scopes:   info.GetScopes(),
			email:    info.GetUserEmail(),
			role:     info.GetTeamRole(),
		}
		if info.GetToolsMode() == satellitev1.ToolsMode_TOOLS_MODE_SEARCH {
			p.toolsMode = ToolsSearch
		}
		p.binding = bindingOf(info)
		ctx := context.WithValue(r.Context(), principalKey{}, p)

		var methods []string
		var summary *rpcSummary
		if r.Method == http.MethodPost {
			body, status := g.readBody(w, r)
			if status != 0 {
				http.Error(w, http.StatusText(status), status)
				return
			}
			// A body is decoded as the SDK decodes it: it decides the scopes a request needs, routes a
			// POST that may open a session, and a request the SDK would answer in its own words is
			// answered here (checkRequest).
			msgs, err := decodeBody(body, tr == streamableHTTP)
			if err != nil {
				// The SDK would refuse it too; what it cannot read is not let through unread.
				writeRPCError(w, http.StatusBadRequest, jsonrpc.ID{}, jsonrpc.CodeParseError, "malformed JSON-RPC message: "+truncate(err.Error(), maxQuotedError))
				return
			}
			summary = summarize(msgs)
			summary.batch = tr == streamableHTTP && sdkjson.MayBeBatch(body)
			methods = summary.methods
			ctx = context.WithValue(ctx, rpcSummaryKey{}, summary)
			// A POST that opens a session hands its context to the SDK for the session's life; what was
			// decoded of the body is needed only while the POST is served.
			defer summary.forget()
		}
		if missing := missingScopes(p, methods); len(missing) > 0 {
			g.challenge(w, slug, fmt.Sprintf(`error="insufficient_scope", scope=%q`, strings.Join(missing, " ")), "insufficient scope")
			return
		}
		if summary != nil && summary.id.IsValid() {
			if jerr := checkRequest(summary.requests[0]); jerr != nil {
				// The 2026-07-28 era answers an unknown method with 404, as the SDK does; the session era
				// with the JSON-RPC error alone, which clients read like any other answer. Legacy SSE
				// answers over the stream, where only the SDK writes (see cleanStreamWriter); a method
				// the SDK does not know it refuses with 400, and so does the endpoint, in JSON-RPC.
				status := http.StatusOK
				switch {
				case tr == legacySSE && jerr.Code != jsonrpc.CodeMethodNotFound:
					jerr = nil
				case tr == legacySSE:
					status = http.StatusBadRequest
				case jerr.Code == jsonrpc.CodeMethodNotFound && statelessEra(r.WithContext(ctx)):
					status = http.StatusNotFound
				}
				if jerr != nil {
					writeRPCError(w, status, summary.id, jerr.Code, jerr.Message)
					return
				}
			}
		}
		// Tasks are served here, past the same checks, because the SDK knows none of their methods: in
		// the 2026-07-28 era as the tasks extension (tasksext.go), before that in the experimental form.
		// Whether a request is of that era is asked only of the few that could be served so: a request of
		// a session carries its id, and deciding reads the body again.
		stateless := func() bool {
			return tr == streamableHTTP && r.Header.Get("Mcp-Session-Id") == "" && statelessEra(r.WithContext(ctx))
		}
		if req := summary.only(); req != nil && isTaskSurface(req) && stateless() &&
			g.serveTaskExtension(w, r.WithContext(ctx), p, req) {
			return
		}
		// A plain tools/call of that era, the most common request, is served without the SDK's server.
		if req := summary.only(); req != nil && req.Method == "tools/call" && stateless() &&
			g.serveStatelessCall(w, r.WithContext(ctx), p, req) {
			return
		}
		// And so is a session-era one, on the session it names.
		if req := summary.only(); req != nil && req.Method == "tools/call" && tr == streamableHTTP && !summary.batch &&
			g.serveSessionCall(w, r.WithContext(ctx), p, req) {
			return
		}
		if req := summary.only(); req != nil && isTaskRequest(req) && !(req.Method == "tools/call" && stateless()) {
			if tr == streamableHTTP && g.serveTask(w, r.WithContext(ctx), p, req) {
				return
			}
			if req.Method != "tools/call" {
				// Unknown here as to the SDK, which would answer in its own words.
				status := http.StatusOK
				switch {
				case tr == legacySSE:
					status = http.StatusBadRequest
				case statelessEra(r.WithContext(ctx)):
					status = http.StatusNotFound
				}
				writeRPCError(w, status, req.ID, jsonrpc.CodeMethodNotFound, "method not found: "+strconv.Quote(req.Method))
				return
			}
		}

		// Expiry was checked above against the injected clock; the SDK would check it again against
		// the wall clock.
		ti := tokenInfoOf(p)
		verified := func(context.Context, string, *http.Request) (*auth.TokenInfo, error) { return ti, nil }
		// RequireBearerToken is how the SDK's transports learn the TokenInfo they bind sessions to; the
		// token was checked above, so it only records the result.
		auth.RequireBearerToken(verified, &auth.RequireBearerTokenOptions{
			ResourceMetadataURL:    g.metadataURL(slug),
			AllowMissingExpiration: true,
		})(next).ServeHTTP(w, r.WithContext(ctx))
	})
}

// challenge answers 401, or 403 for insufficient scope, with the WWW-Authenticate header that leads an
// OAuth client to the metadata document.
func (g *Gateway) challenge(w http.ResponseWriter, slug, params, msg string) {
	h := fmt.Sprintf("Bearer resource_metadata=%q", g.metadataURL(slug))
	if params != "" {
		h += ", " + params
	}
	w.Header().Set("WWW-Authenticate", h)
	status := http.StatusUnauthorized
	if strings.Contains(params, "insufficient_scope") {
		status = http.StatusForbidden
	}
	http.Error(w, msg, status)
}

func bearerToken(r *http.Request) (string, bool) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" || len(token) > 4096 {
		return "", false
	}
	return token, true
}

// allowCORS lets an allowed browser origin make the endpoint's requests and read its MCP headers.
func allowCORS(h http.Header, origin string) {
	h.Set("Access-Control-Allow-Origin", origin)
	h.Add("Vary", "Origin")
	h.Set("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS")
	h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, Accept, Last-Event-ID, Mcp-Session-Id, Mcp-Protocol-Version, Mcp-Method, Mcp-Name")
	h.Set("Access-Control-Expose-Headers", "Mcp-Session-Id, WWW-Authenticate")
	h.Set("Access-Control-Max-Age", "600")
}

// originAllowed admits requests without an Origin (non-browser clients) and browser requests from the
// satellite's own origin, a configured one, or an http or https origin of an allowed host.
func (g *Gateway) originAllowed(origin string) bool {
	if origin == "" {
		return true
	}
	origin = strings.TrimRight(origin, "/")
	if strings.EqualFold(origin, g.publicOrigin) {
		return true
	}
	if po, _ := g.poolOrigin(); po != "" && strings.EqualFold(origin, po) {
		return true
	}
	for _, o := range g.cfg.AllowedOrigins {
		if strings.EqualFold(origin, strings.TrimRight(o, "/")) {
			return true
		}
	}
	if len(g.cfg.AllowedHosts) == 0 {
		return false
	}
	u, err := url.Parse(origin)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Path != "" {
		return false
	}
	return g.allowedHost(u.Host)
}

// hostAllowed admits a request addressed to host (its Host header) when AllowedHosts is empty, or host
// is the public URL's host at any port (a proxy may pass on the port it was reached at, such as :443) or
// an allowed one.
func (g *Gateway) hostAllowed(host string) bool {
	if _, ph := g.poolOrigin(); ph != "" && hostMatches(hostName(ph), host) {
		return true
	}
	return len(g.cfg.AllowedHosts) == 0 || hostMatches(hostName(g.publicHost), host) || g.allowedHost(host)
}

// allowedHost says whether host[:port] matches an entry of AllowedHosts.
func (g *Gateway) allowedHost(host string) bool {
	for _, a := range g.cfg.AllowedHosts {
		if hostMatches(a, host) {
			return true
		}
	}
	return false
}

// hostMatches says whether host[:port] is entry; an entry without a port matches any port of its host.
func hostMatches(entry, host string) bool {
	return strings.EqualFold(entry, host) || strings.EqualFold(entry, hostName(host))
}

// hostName returns host[:port] without the port, an IPv6 address in brackets as in Host.
func hostName(host string) string {
	h, _, err := net.SplitHostPort(host)
	switch {
	case err != nil:
		return host
	case strings.Contains(h, ":"):
		return "[" + h + "]"
	default:
		return h
	}
}

// readBody reads a POST body of at most MaxBodyBytes and puts it back for the handler. A non-zero status
// says the request must be refused.
func (g *Gateway) readBody(w http.ResponseWriter, r *http.Request) ([]byte, int) {
	max := g.cfg.MaxBodyBytes
	if r.ContentLength > max {
		return nil, http.StatusRequestEntityTooLarge
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, http.StatusRequestEntityTooLarge
		}
		return nil, http.StatusBadRequest
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	return body, 0
}

// serveMetadata serves the RFC 9728 protected-resource metadata of a team endpoint. It is public.
func (g *Gateway) serveMetadata(w http.ResponseWriter, r *http.Request) {
	slug := r.PathValue("team_slug")
	md := &oauthex.ProtectedResourceMetadata{
		Resource:               g.endpointURL(slug),
		ScopesSupported:        []string{ScopeRead, ScopeExecute},
		BearerMethodsSupported: []string{"header"},
		ResourceName:           "Orrery team MCP endpoint",
	}
	if g.cfg.AuthorizationServer != "" {
		md.AuthorizationServers = []string{g.cfg.AuthorizationServer}
	}
	auth.ProtectedResourceMetadataHandler(md).ServeHTTP(w, r)
}

// bindingOf is the principal binding of a token's sessions: its team, user and client.
func bindingOf(info *satellitev1.IntrospectTokenResponse) string {
	return info.GetTeamId() + "/" + info.GetUserId() + "/" + info.GetClientId()
}

// RevokeTokens makes the endpoint refuse at once the access tokens with these SHA-256 hashes, in hex, as
// the control plane announces revocations, and closes the sessions opened with them. It returns how many
// it took; a malformed hash is an error, after the others have been taken.
func (g *Gateway) RevokeTokens(hexHashes []string) (int, error) {
	hashes := make([][sha256.Size]byte, 0, len(hexHashes))
	var malformed []string
	for _, h := range hexHashes {
		b, err := hex.DecodeString(h)
		if err != nil || len(b) != sha256.Size {
			malformed = append(malformed, h)
			continue
		}
		hashes = append(hashes, [sha256.Size]byte(b))
	}
	g.closeSessions(g.tokens.revoke(hashes))
	if len(malformed) > 0 {
		return len(hashes), fmt.Errorf("not SHA-256 hashes in hex: %q", malformed)
	}
	return len(hashes), nil
}

// tokenCache caches introspection results by the SHA-256 of the whole token, for at most ttl and never
// past the token's expiry. Concurrent lookups of one token share one introspection.
type tokenCache struct {
	introspector Introspector
	ttl          time.Duration
	now          func() time.Time
	entries      *lru.Cache[[sha256.Size]byte, cachedToken]
	flight       singleflight.Group
	// revoked holds the tokens the control plane announced as revoked. They are refused without asking,
	// and an introspection that was in flight when the announcement came is not kept.
	revoked *lru.Cache[[sha256.Size]byte, struct{}]
	// bindings remembers the principal binding of active tokens beyond their cache entries, for as long
	// as sessions opened with them may live, so that revoking a token can close those sessions.
	bindings *lru.Cache[[sha256.Size]byte, string]
}

type cachedToken struct {
	resp  *satellitev1.IntrospectTokenResponse
	until time.Time
}

func newTokenCache(in Introspector, size int, ttl time.Duration, now func() time.Time) *tokenCache {
	entries, _ := lru.New[[sha256.Size]byte, cachedToken](size) // size is positive
	// An announcement that falls out is harmless: the token is inactive when introspected again.
	revoked, _ := lru.New[[sha256.Size]byte, struct{}](size)
	bindings, _ := lru.New[[sha256.Size]byte, string](size)
	return &tokenCache{introspector: in, ttl: ttl, now: now, entries: entries, revoked: revoked, bindings: bindings}
}

// revoke refuses the tokens with these hashes from now on, whatever was cached of them, and returns the
// principal bindings of those it knew as active.
func (c *tokenCache) revoke(hashes [][sha256.Size]byte) map[string]bool {
	bindings := map[string]bool{}
	for _, h := range hashes {
		c.revoked.Add(h, struct{}{})
		c.entries.Remove(h)
		if b, ok := c.bindings.Get(h); ok {
			bindings[b] = true
			c.bindings.Remove(h)
		}
	}
	return bindings
}

func (c *tokenCache) lookup(ctx context.Context, token string) (*satellitev1.IntrospectTokenResponse, error) {
	key := sha256.Sum256([]byte(token))
	if c.revoked.Contains(key) {
		return &satellitev1.IntrospectTokenResponse{}, nil
	}
	if e, ok := c.entries.Get(key); ok && c.now().Before(e.until) {
		return e.resp, nil
	}
	v, err, _ := c.flight.Do(string(key[:]), func() (any, error) {
		if e, ok := c.entries.Get(key); ok && c.now().Before(e.until) {
			return e.resp, nil
		}
		ictx, cancel := context.WithTimeout(context.WithoutCancel(ctx), introspectTimeout)
		defer cancel()
		resp, err := c.introspector.Introspect(ictx, token)
		if err != nil {
			return nil, err
		}
		if resp == nil {
			resp = &satellitev1.IntrospectTokenResponse{}
		}
		until := c.now().Add(c.ttl)
		if exp := resp.GetExpiresAt(); exp != nil && exp.AsTime().Before(until) {
			until = exp.AsTime()
		}
		c.entries.Add(key, cachedToken{resp: resp, until: until})
		if resp.GetActive() {
			c.bindings.Add(key, bindingOf(resp))
		}
		// revoke adds to revoked before it removes from entries, so either it removed this entry or the
		// check below sees the token revoked.
		if c.revoked.Contains(key) {
			c.entries.Remove(key)
			return &satellitev1.IntrospectTokenResponse{}, nil
		}
		return resp, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*satellitev1.IntrospectTokenResponse), nil
}
