// Package oauth is the control plane's OAuth 2.1 authorization server for MCP clients, built on
// github.com/ory/fosite.
//
// MCP clients discover it from a satellite's protected-resource metadata, register dynamically (RFC 7591)
// or name a client ID metadata document, and obtain access tokens for one team endpoint through the
// authorization code grant with PKCE (S256 only) after the user signs in and consents on a page served
// here. The RFC 8707 resource parameter must name a team endpoint, {satellite_url}/teams/{slug}/mcp, of a
// team the user belongs to; it becomes the token's audience, and satellites refuse the token anywhere else.
// Team admins create confidential clients whose client-credentials tokens act as the client itself in their
// team: such tokens carry no user.
//
// Codes and tokens are 32 random bytes stored as their SHA-256, and access tokens are written to the same
// table satellites introspect, so checking one needs no slow hash.
//
//	srv, err := oauth.New(logger, st, accounts, oauth.Config{Issuer: "https://cp.example.com"})
//	srv.Register(mux)
package oauth

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/ory/fosite"
	"github.com/ory/fosite/compose"

	"github.com/orrery/orrery/services/controlplane/internal/ratelimit"
	"github.com/orrery/orrery/services/controlplane/internal/sso"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// Config tunes the authorization server; zero fields take the defaults in their comments.
type Config struct {
	// Issuer is the authorization server's public URL, scheme and host only: its identifier in metadata
	// and authorization responses, and the base of its endpoints. Required.
	Issuer string
	// AccessTokenTTL is how long access tokens live. Default 1 hour.
	AccessTokenTTL time.Duration
	// RefreshTokenTTL is how long a refresh token lives unused: each refresh issues a new one that lives
	// this long again, so a client stays connected as long as it is used this often. Default 30 days.
	RefreshTokenTTL time.Duration
	// GrantMaxAge is how long a grant may be refreshed at most, counted from the user's consent: after it the
	// user authorizes again, however often the client refreshed. Default 90 days.
	GrantMaxAge time.Duration
	// CodeTTL is how long an authorization code lives. Default 5 minutes.
	CodeTTL time.Duration
	// DeviceCodeTTL is how long a device authorization request waits for the user. Default 10 minutes.
	DeviceCodeTTL time.Duration
	// DevicePollInterval is how often a device may poll the token endpoint at first. Default 5 seconds.
	DevicePollInterval time.Duration
	// MetadataClient fetches client ID metadata documents. Default: a client that reaches public addresses
	// only and follows no redirects.
	MetadataClient *http.Client
	// Now is the clock codes and tokens expire by. Default time.Now.
	Now func() time.Time
	// SignInOptions offers the login pages' other ways to sign in than a password; nil offers none.
	SignInOptions SignInOptions
	// PoolURL is the public URL the global satellites share, scheme and host only: a team they serve has
	// its endpoint, the resource of its tokens, under it. Default empty: none.
	PoolURL string
}

// SignInOptions lists ways to sign in besides a password; sso.Service is one.
type SignInOptions interface {
	// SignInLinks returns the buttons of a login page that wants the person back at returnTo.
	SignInLinks(ctx context.Context, returnTo string) []sso.SignInLink
}

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	c.Issuer = strings.TrimRight(c.Issuer, "/")
	c.PoolURL = strings.TrimRight(c.PoolURL, "/")
	if c.AccessTokenTTL == 0 {
		c.AccessTokenTTL = time.Hour
	}
	if c.RefreshTokenTTL == 0 {
		c.RefreshTokenTTL = 30 * 24 * time.Hour
	}
	if c.GrantMaxAge == 0 {
		c.GrantMaxAge = 90 * 24 * time.Hour
	}
	if c.CodeTTL == 0 {
		c.CodeTTL = 5 * time.Minute
	}
	if c.DeviceCodeTTL == 0 {
		c.DeviceCodeTTL = 10 * time.Minute
	}
	if c.DevicePollInterval == 0 {
		c.DevicePollInterval = 5 * time.Second
	}
	if c.MetadataClient == nil {
		c.MetadataClient = defaultMetadataClient()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

func (c Config) validate() error {
	u, err := url.Parse(c.Issuer)
	// A path would move the RFC 8414 metadata to /.well-known/oauth-authorization-server/{path}, which
	// the control plane does not serve: it is mounted at the root of its host.
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Path != "" || u.RawQuery != "" ||
		u.Fragment != "" || u.User != nil {
		return fmt.Errorf("oauth issuer %q must be an http or https URL with nothing after the host", c.Issuer)
	}
	if c.AccessTokenTTL < 0 || c.RefreshTokenTTL < c.AccessTokenTTL || c.GrantMaxAge < c.RefreshTokenTTL {
		return fmt.Errorf("oauth lifetimes must grow from access token (%v) to refresh token idle time (%v) to grant maximum age (%v)",
			c.AccessTokenTTL, c.RefreshTokenTTL, c.GrantMaxAge)
	}
	return nil
}

// Accounts signs users in on the login page; accountapi.Handler is one.
type Accounts interface {
	// CheckPassword returns the user with email and password, or an error that says only that sign-in
	// failed; it applies the same lockout and audit as the API's sign-in.
	CheckPassword(ctx context.Context, email, password, peer string) (store.User, error)
	// StartSession starts a browser session and returns its cookie.
	StartSession(ctx context.Context, userID uuid.UUID) (*http.Cookie, error)
}

// Server is the authorization server.
type Server struct {
	logger   *slog.Logger
	store    *store.Store
	accounts Accounts
	cfg      Config
	clients  *clientManager
	provider fosite.OAuth2Provider
	fosite   *fosite.Fosite
	storage  *storage
	// registrations limits how fast each address registers clients.
	registrations *ratelimit.Limiter
	// deviceRequests limits how fast each address starts device sign-ins, and userCodeTries how fast each
	// address and each user look up user codes.
	deviceRequests, userCodeTries *ratelimit.Limiter
}

// New returns the authorization server.
func New(logger *slog.Logger, st *store.Store, accounts Accounts, cfg Config) (*Server, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	clients := &clientManager{store: st, httpClient: cfg.MetadataClient, now: cfg.Now, cache: map[string]cachedClient{}}
	fc := &fosite.Config{
		AccessTokenLifespan:   cfg.AccessTokenTTL,
		RefreshTokenLifespan:  cfg.RefreshTokenTTL,
		AuthorizeCodeLifespan: cfg.CodeTTL,
		TokenURL:              cfg.Issuer + "/oauth/token",
		AccessTokenIssuer:     cfg.Issuer,
		ScopeStrategy:         fosite.ExactScopeStrategy,
		// Audiences come only from the RFC 8707 resource parameter, which this package checks against
		// the user's teams before granting it; fosite's own audience parameter is removed from every
		// request, so there is nothing for fosite to match.
		AudienceMatchingStrategy:       func([]string, []string) error { return nil },
		EnforcePKCE:                    true,
		EnablePKCEPlainChallengeMethod: false,
		// Empty, not nil: every client that may use the refresh grant gets a refresh token, whether or not it
		// asked for offline_access. MCP clients rarely ask (they request the scopes the protected resource
		// lists), and without one every editor would send its user to sign in again each hour.
		RefreshTokenScopes:  []string{},
		ClientSecretsHasher: secretHasher{},
		// OAuth 2.1 has no implicit grant; codes always come back in the query.
		ResponseModeHandlerExtension: nil,
		// Fosite's own entropy keys are unused: the strategy below makes every token.
		GlobalSecret: randomKey(),
	}
	st2 := &storage{store: st, clients: clients}
	provider := compose.Compose(fc, st2, strategy{now: cfg.Now},
		compose.OAuth2AuthorizeExplicitFactory,
		compose.OAuth2ClientCredentialsGrantFactory,
		compose.OAuth2RefreshTokenGrantFactory,
		compose.OAuth2TokenRevocationFactory,
		compose.OAuth2TokenIntrospectionFactory,
		compose.OAuth2PKCEFactory,
	)
	f, ok := provider.(*fosite.Fosite)
	if !ok {
		return nil, errors.New("fosite provider of an unexpected type")
	}
	srv := &Server{logger: logger, store: st, accounts: accounts, cfg: cfg, clients: clients, provider: provider, fosite: f,
		storage: st2, registrations: ratelimit.New(st, "oauth_registration", registrationsPerMinute, registrationBurst),
		deviceRequests: ratelimit.New(st, "oauth_device_authorization", deviceRequestsPerMinute, deviceRequestBurst),
		userCodeTries:  ratelimit.New(st, "oauth_user_code", userCodeTriesPerMinute, userCodeTryBurst)}
	fc.TokenEndpointHandlers.Append(deviceGrant{srv: srv})
	return srv, nil
}

func randomKey() []byte {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on Linux
	return b
}

// signInLinks are the login page's "Sign in with" buttons for a page at returnTo.
func (s *Server) signInLinks(ctx context.Context, returnTo string) []sso.SignInLink {
	if s.cfg.SignInOptions == nil {
		return nil
	}
	return s.cfg.SignInOptions.SignInLinks(ctx, returnTo)
}

// Issuer is the authorization server's identifier.
func (s *Server) Issuer() string { return s.cfg.Issuer }

// Register mounts the authorization server's endpoints on mux.
func (s *Server) Register(mux *http.ServeMux) {
	mux.Handle("GET /.well-known/oauth-authorization-server", cors(http.HandlerFunc(s.serveMetadata)))
	mux.Handle("GET /.well-known/openid-configuration", cors(http.HandlerFunc(s.serveMetadata)))
	mux.HandleFunc("GET /oauth/authorize", s.authorize)
	mux.HandleFunc("POST /oauth/authorize", s.authorize)
	mux.Handle("POST /oauth/token", cors(http.HandlerFunc(s.token)))
	mux.Handle("POST /oauth/register", cors(http.HandlerFunc(s.register)))
	mux.Handle("POST /oauth/revoke", cors(http.HandlerFunc(s.revoke)))
	mux.Handle("POST /oauth/introspect", http.HandlerFunc(s.introspect))
	mux.Handle("POST /oauth/device_authorization", cors(http.HandlerFunc(s.deviceAuthorization)))
	mux.HandleFunc("GET /oauth/device", s.verifyDevice)
	mux.HandleFunc("POST /oauth/device", s.verifyDevice)
	for _, p := range []string{"/.well-known/oauth-authorization-server", "/.well-known/openid-configuration",
		"/oauth/token", "/oauth/register", "/oauth/revoke"} {
		mux.Handle("OPTIONS "+p, cors(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusNoContent)
		})))
	}
}

// cors lets browser-based MCP clients call the endpoints that take no cookies.
func cors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Origin") != "" {
			h := w.Header()
			h.Set("Access-Control-Allow-Origin", "*")
			h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
			h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, Mcp-Protocol-Version")
			h.Set("Access-Control-Max-Age", "600")
		}
		next.ServeHTTP(w, r)
	})
}

// errInvalidTarget is RFC 8707's refusal of a resource.
func errInvalidTarget(hint string) *fosite.RFC6749Error {
	return (&fosite.RFC6749Error{
		ErrorField:       "invalid_target",
		DescriptionField: "The requested resource is invalid, unknown, or malformed.",
		CodeField:        http.StatusBadRequest,
	}).WithHint(hint)
}
