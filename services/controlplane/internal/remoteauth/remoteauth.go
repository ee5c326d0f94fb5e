// Package remoteauth connects members' own accounts at remote MCP servers that authorize each person with
// OAuth. The control plane is the OAuth client: from a remote server's URL it discovers the server's
// protected-resource metadata (RFC 9728) and authorization server (RFC 8414), registers itself there
// dynamically (RFC 7591) once per authorization server, and runs the authorization code flow with PKCE
// (S256) and the server's URL as the resource (RFC 8707). The member's browser comes back to the control
// plane's callback, which must find the same member signed in. Tokens are sealed by the store like other
// secrets, refreshed before they expire (RefreshDue, run by a periodic job), and delivered in the
// configuration of that member's instance only.
//
//	c, err := remoteauth.New(logger, st, remoteauth.Config{CallbackURL: issuer + remoteauth.CallbackPath})
//	mux.HandleFunc("GET "+remoteauth.CallbackPath, c.ServeCallback)
package remoteauth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/google/uuid"
	"golang.org/x/oauth2"

	"github.com/orrery/orrery/services/controlplane/internal/oauth"
	"github.com/orrery/orrery/services/controlplane/internal/ratelimit"
	"github.com/orrery/orrery/services/controlplane/internal/rpcerr"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// CallbackPath is where upstream authorization servers send members' browsers back to the control plane.
const CallbackPath = "/oauth/remote/callback"

// Config tunes the Connector; zero fields take the defaults in their comments.
type Config struct {
	// CallbackURL is the redirect URI the control plane registers: its public URL and CallbackPath. Required.
	CallbackURL string
	// ClientName is the name the control plane registers under. Default "Orrery".
	ClientName string
	// HTTPClient fetches metadata and talks to authorization servers. Default: public addresses only, no
	// redirects (oauth.PublicHTTPClient), since tenants name the servers; with AllowPrivate, any address.
	HTTPClient *http.Client
	// AllowPrivate lets the default HTTPClient reach loopback, private and link-local addresses, for remote
	// servers on the operator's own network. Default false.
	AllowPrivate bool
	// FlowTTL is how long a member has to finish authorizing. Default 10 minutes.
	FlowTTL time.Duration
	// RefreshBefore is how long before its expiry an access token is refreshed. Default 5 minutes.
	RefreshBefore time.Duration
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.ClientName == "" {
		c.ClientName = "Orrery"
	}
	if c.HTTPClient == nil && c.AllowPrivate {
		c.HTTPClient = privateHTTPClient()
	}
	if c.HTTPClient == nil {
		c.HTTPClient = oauth.PublicHTTPClient()
	}
	if c.FlowTTL == 0 {
		c.FlowTTL = 10 * time.Minute
	}
	if c.RefreshBefore == 0 {
		c.RefreshBefore = 5 * time.Minute
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

func (c Config) validate() error {
	u, err := url.Parse(c.CallbackURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("remote authorization callback %q must be an http or https URL", c.CallbackURL)
	}
	return nil
}

// Errors a caller can act on; the RPC handler maps them to Connect codes.
var (
	// ErrNotRemote: the installation runs a stdio server, which has no authorization server.
	ErrNotRemote = errors.New("the installation's server is not a remote server")
	// ErrNoAuthorization: the remote server publishes no OAuth protected-resource metadata or authorization
	// server the control plane can use.
	ErrNoAuthorization = errors.New("the remote server does not offer OAuth authorization the control plane can use")
)

// Connector runs members' authorizations against remote servers and keeps their tokens fresh.
type Connector struct {
	logger *slog.Logger
	store  *store.Store
	cfg    Config
	// starts bounds each member's connection attempts: each fetches the remote server's metadata and may
	// register a client there.
	starts *ratelimit.Limiter
}

// New returns a Connector.
func New(logger *slog.Logger, st *store.Store, cfg Config) (*Connector, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Connector{logger: logger, store: st, cfg: cfg, starts: ratelimit.New(st, "remote_oauth_start", 10, 20)}, nil
}

// Start begins connecting userID's account at the remote server of an installation of teamID. It returns
// the authorization server's URL to open and when the flow expires.
func (c *Connector) Start(ctx context.Context, teamID, installationID, userID uuid.UUID) (string, time.Time, error) {
	if err := rpcerr.AllowUser(ctx, c.logger, c.starts, userID, "connect remote account",
		"too many attempts to connect an account; try again later"); err != nil {
		return "", time.Time{}, err
	}
	target, err := c.store.RemoteInstallationTarget(ctx, teamID, installationID)
	if err != nil {
		return "", time.Time{}, err
	}
	if target.Transport != "http" && target.Transport != "sse" {
		return "", time.Time{}, ErrNotRemote
	}
	d, err := c.discover(ctx, target.URL)
	if err != nil {
		return "", time.Time{}, err
	}
	client, err := c.client(ctx, d)
	if err != nil {
		return "", time.Time{}, err
	}
	state, stateHash, err := newState()
	if err != nil {
		return "", time.Time{}, err
	}
	verifier := oauth2.GenerateVerifier()
	expires := c.cfg.Now().Add(c.cfg.FlowTTL)
	if err := c.store.CreateRemoteOAuthFlow(ctx, stateHash, store.RemoteOAuthFlow{
		TeamID: teamID, InstallationID: installationID, UserID: userID, Issuer: d.issuer,
		TokenEndpoint: d.server.TokenEndpoint, Resource: d.resource, Verifier: verifier, ExpiresAt: expires,
	}); err != nil {
		return "", time.Time{}, err
	}
	cfg := c.oauthConfig(client, d.server.AuthorizationEndpoint, d.server.TokenEndpoint)
	cfg.Scopes = d.scopes
	return cfg.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("resource", d.resource)), expires, nil
}

// oauthConfig is the control plane as client of one authorization server.
func (c *Connector) oauthConfig(client store.RemoteOAuthClient, authURL, tokenURL string) *oauth2.Config {
	style := oauth2.AuthStyleInHeader
	if client.ClientSecret == "" {
		style = oauth2.AuthStyleInParams
	}
	return &oauth2.Config{
		ClientID: client.ClientID, ClientSecret: client.ClientSecret, RedirectURL: c.cfg.CallbackURL,
		Endpoint: oauth2.Endpoint{AuthURL: authURL, TokenURL: tokenURL, AuthStyle: style},
	}
}

// privateHTTPClient reaches any address and, like oauth.PublicHTTPClient, follows no redirects and uses
// no proxy.
func privateHTTPClient() *http.Client {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.Proxy = nil
	return &http.Client{
		Transport:     transport,
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// withClient makes golang.org/x/oauth2 use the connector's HTTP client.
func (c *Connector) withClient(ctx context.Context) context.Context {
	return context.WithValue(ctx, oauth2.HTTPClient, c.cfg.HTTPClient)
}

// newState returns a random state and its SHA-256, under which the flow is stored.
func newState() (string, []byte, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", nil, err
	}
	state := base64.RawURLEncoding.EncodeToString(b)
	return state, stateHash(state), nil
}

func stateHash(state string) []byte {
	h := sha256.Sum256([]byte(state))
	return h[:]
}
