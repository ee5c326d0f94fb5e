// Package sso signs people in through OpenID Connect providers that global admins configure: the
// authorization code flow with PKCE against each provider's discovery document, with
// github.com/coreos/go-oidc/v3 checking the ID token's signature, issuer, audience, expiry and nonce.
//
// A person who signs in for the first time gets an account just in time; an existing account is linked only
// when the provider vouches for the email (email_verified) and its domain is one the provider may speak for.
// The groups the provider lists are mapped to team memberships by the admins' rules at every sign-in and,
// for providers that hand out refresh tokens, by a periodic job; a membership a rule granted ends like any
// member removal when the person leaves the group.
//
// The sign-in starts at /sso/{provider}/start?return=/path and comes back to /sso/callback, which starts a
// browser session and returns to the path: the console, the OAuth authorization page or the device page.
//
//	svc, err := sso.New(logger, st, accounts, sso.Config{BaseURL: "https://cp.example.com"})
//	svc.Register(mux)
package sso

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/google/uuid"
	"golang.org/x/oauth2"

	"github.com/orrery/orrery/services/controlplane/internal/ratelimit"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// Config tunes single sign-on; zero fields take the defaults in their comments.
type Config struct {
	// BaseURL is the control plane's public URL, scheme and host; the redirect URI to register at every
	// provider is BaseURL + "/sso/callback". Required.
	BaseURL string
	// StateTTL is how long a person may take at the provider. Default 10 minutes.
	StateTTL time.Duration
	// ResyncInterval is how often the groups of people whose provider gave a refresh token are read again,
	// so that leaving a group at the provider ends the membership without waiting for a sign-in. Default 1
	// hour.
	ResyncInterval time.Duration
	// DiscoveryTTL is how long a provider's discovery document is kept. Default 1 hour.
	DiscoveryTTL time.Duration
	// HTTPClient talks to the providers. Default: a client with a 10-second timeout.
	HTTPClient *http.Client
	// Now is the clock that decides when a sign-in expires and who is due for the periodic check; ID tokens
	// are checked by the real one. Default time.Now.
	Now func() time.Time
}

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	c.BaseURL = strings.TrimRight(c.BaseURL, "/")
	if c.StateTTL == 0 {
		c.StateTTL = 10 * time.Minute
	}
	if c.ResyncInterval == 0 {
		c.ResyncInterval = time.Hour
	}
	if c.DiscoveryTTL == 0 {
		c.DiscoveryTTL = time.Hour
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

func (c Config) validate() error {
	u, err := url.Parse(c.BaseURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("sso base URL %q must be an http or https URL", c.BaseURL)
	}
	if c.ResyncInterval < time.Minute {
		return fmt.Errorf("sso resync interval %s is shorter than a minute", c.ResyncInterval)
	}
	return nil
}

// Sessions starts browser sessions; accountapi.Handler is one.
type Sessions interface {
	StartSession(ctx context.Context, userID uuid.UUID) (*http.Cookie, error)
}

// Service signs people in through OpenID Connect providers.
type Service struct {
	logger   *slog.Logger
	store    *store.Store
	sessions Sessions
	cfg      Config

	// starts limits how fast each address starts sign-ins: each one stores a state until it expires.
	starts *ratelimit.Limiter

	mu        sync.Mutex
	discovery map[string]discovered // by issuer
}

// Sign-ins one address may start: a person needs a few; a flood would fill the state table.
const (
	startsPerMinute = 30
	startBurst      = 30
)

type discovered struct {
	provider *oidc.Provider
	at       time.Time
}

// New returns the service.
func New(logger *slog.Logger, st *store.Store, sessions Sessions, cfg Config) (*Service, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Service{logger: logger, store: st, sessions: sessions, cfg: cfg, discovery: map[string]discovered{},
		starts: ratelimit.New(st, "sso_start", startsPerMinute, startBurst)}, nil
}

// RedirectURI is the redirect URI to register at every provider.
func (s *Service) RedirectURI() string { return s.cfg.BaseURL + "/sso/callback" }

// ResyncInterval is how often groups are read again without a sign-in.
func (s *Service) ResyncInterval() time.Duration { return s.cfg.ResyncInterval }

// discover returns the provider's discovery document, fetched at most once per DiscoveryTTL. The key set it
// names is fetched and cached by go-oidc, again when a token names an unknown key.
func (s *Service) discover(ctx context.Context, issuer string) (*oidc.Provider, error) {
	s.mu.Lock()
	d, ok := s.discovery[issuer]
	s.mu.Unlock()
	if ok && s.cfg.Now().Sub(d.at) < s.cfg.DiscoveryTTL {
		return d.provider, nil
	}
	p, err := oidc.NewProvider(oidc.ClientContext(ctx, s.cfg.HTTPClient), issuer)
	if err != nil {
		return nil, fmt.Errorf("discover provider %s: %w", issuer, err)
	}
	s.mu.Lock()
	s.discovery[issuer] = discovered{provider: p, at: s.cfg.Now()}
	s.mu.Unlock()
	return p, nil
}

// oauthConfig is the provider's OAuth client configuration.
func (s *Service) oauthConfig(p store.SSOProvider, op *oidc.Provider) *oauth2.Config {
	scopes := []string{oidc.ScopeOpenID, "email", "profile"}
	for _, sc := range p.Scopes {
		if !contains(scopes, sc) {
			scopes = append(scopes, sc)
		}
	}
	return &oauth2.Config{ClientID: p.ClientID, ClientSecret: p.ClientSecret, Endpoint: op.Endpoint(),
		RedirectURL: s.RedirectURI(), Scopes: scopes}
}

// verifier checks ID tokens of the provider: signature by a key the provider publishes, issuer, audience
// (our client id) and expiry, by the real clock the provider signs by.
func (s *Service) verifier(p store.SSOProvider, op *oidc.Provider) *oidc.IDTokenVerifier {
	return op.Verifier(&oidc.Config{ClientID: p.ClientID})
}

// httpContext carries the providers' HTTP client to oauth2 and go-oidc.
func (s *Service) httpContext(ctx context.Context) context.Context {
	return oidc.ClientContext(context.WithValue(ctx, oauth2.HTTPClient, s.cfg.HTTPClient), s.cfg.HTTPClient)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// errRefused is a sign-in the provider answered but Orrery will not let in; its message is for the person.
type errRefused struct{ reason string }

func (e errRefused) Error() string { return e.reason }

func refused(reason string) error { return errRefused{reason: reason} }

func isRefused(err error) (string, bool) {
	var r errRefused
	if errors.As(err, &r) {
		return r.reason, true
	}
	return "", false
}
