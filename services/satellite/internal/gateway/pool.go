package gateway

import (
	"context"
	"net/http"
	"net/url"
	"strings"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
)

// Forwarder takes the requests of teams another satellite of the pool serves (see Config.Forwarder).
type Forwarder interface {
	// Forward is called for an authenticated request without a session that names a team this satellite
	// does not serve: info, the token's introspection, has a placement. It returns false when the
	// request is to be served here after all, having written nothing.
	Forward(w http.ResponseWriter, r *http.Request, info *satellitev1.IntrospectTokenResponse) bool
}

type forwardedIdentityKey struct{}

// WithForwardedIdentity returns ctx carrying an identity another satellite of the pool authenticated and
// the control plane signed. A request with it is served as that identity without its bearer token being
// introspected, and is never forwarded again. Only the pool's internal listener, having verified the
// signature, may set it.
func WithForwardedIdentity(ctx context.Context, info *satellitev1.IntrospectTokenResponse) context.Context {
	return context.WithValue(ctx, forwardedIdentityKey{}, info)
}

func forwardedIdentityFrom(ctx context.Context) *satellitev1.IntrospectTokenResponse {
	info, _ := ctx.Value(forwardedIdentityKey{}).(*satellitev1.IntrospectTokenResponse)
	return info
}

// SetPoolURL makes url, the public URL the satellites of a pool share, the base of the endpoint URLs that
// token audiences and the metadata document name. Empty goes back to Config.PublicURL.
func (g *Gateway) SetPoolURL(u string) {
	u = strings.TrimRight(u, "/")
	if p, err := url.Parse(u); u != "" && (err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "") {
		g.logger.Warn("pool URL ignored: not an absolute http(s) URL", "url", u)
		u = ""
	}
	g.poolURL.Store(&u)
}

// baseURL is the pool URL when there is one, else the satellite's public URL.
func (g *Gateway) baseURL() string {
	if p := g.poolURL.Load(); p != nil && *p != "" {
		return *p
	}
	return g.cfg.PublicURL
}

// poolOrigin is the scheme and host of the pool URL, or "" without one.
func (g *Gateway) poolOrigin() (origin, host string) {
	p := g.poolURL.Load()
	if p == nil || *p == "" {
		return "", ""
	}
	u, err := url.Parse(*p)
	if err != nil {
		return "", ""
	}
	return u.Scheme + "://" + u.Host, u.Host
}

// ForgetTokens drops every cached introspection, so that each token is checked again on its next request:
// a new configuration may have moved the token's team to other satellites of the pool.
func (g *Gateway) ForgetTokens() { g.tokens.entries.Purge() }

// OpenSessions counts the Streamable HTTP sessions and legacy SSE streams open at the endpoint.
func (g *Gateway) OpenSessions() int { return g.slots.open() }

// hasSession says whether a request names a session, Streamable HTTP or legacy SSE.
func hasSession(r *http.Request) bool {
	return r.Header.Get("Mcp-Session-Id") != "" || r.URL.Query().Get("sessionid") != ""
}
