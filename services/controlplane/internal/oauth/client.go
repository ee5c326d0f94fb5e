package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/ory/fosite"

	"github.com/orrery/orrery/internal/scope"
	"github.com/orrery/orrery/services/controlplane/internal/password"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// Scopes the authorization server grants. The satellite enforces the first two: listing needs mcp:read,
// calling tools needs mcp:tools:execute. offline_access asks for a refresh token.
const (
	ScopeRead          = scope.Read
	ScopeExecute       = scope.Execute
	ScopeOfflineAccess = scope.OfflineAccess
)

var supportedScopes = []string{ScopeRead, ScopeExecute, ScopeOfflineAccess}

// Grant types and client authentication methods, as OAuth spells them.
const (
	grantAuthorizationCode = "authorization_code"
	grantRefreshToken      = "refresh_token"
	grantClientCredentials = "client_credentials"
	authNone               = "none"
	authSecretBasic        = "client_secret_basic"
	authSecretPost         = "client_secret_post"
)

// client is a client as fosite sees it.
type client struct {
	id     string
	name   string
	teamID *uuid.UUID
	// serviceUserID is the user a team's confidential client acts as.
	serviceUserID *uuid.UUID
	secretHash    []byte
	redirectURIs  []string
	grantTypes    []string
	scopes        []string
	authMethod    string
	// metadataDocument marks a client whose id is the URL of its client ID metadata document.
	metadataDocument bool
}

var _ fosite.Client = (*client)(nil)

func (c *client) GetID() string                      { return c.id }
func (c *client) GetHashedSecret() []byte            { return c.secretHash }
func (c *client) GetRedirectURIs() []string          { return c.redirectURIs }
func (c *client) GetGrantTypes() fosite.Arguments    { return c.grantTypes }
func (c *client) GetResponseTypes() fosite.Arguments { return fosite.Arguments{"code"} }
func (c *client) GetScopes() fosite.Arguments        { return c.scopes }
func (c *client) IsPublic() bool                     { return c.authMethod == authNone }

// GetAudience implements fosite.Client. Audiences are not a property of clients here: each grant's
// audience is the team endpoint its RFC 8707 resource names, checked when it is granted.
func (c *client) GetAudience() fosite.Arguments { return nil }

func clientFromStore(c store.OAuthClient) *client {
	out := &client{
		id: c.ID, name: c.Name, teamID: c.TeamID, serviceUserID: c.ServiceUserID, redirectURIs: c.RedirectURIs, grantTypes: c.GrantTypes,
		scopes: c.Scopes, authMethod: c.TokenEndpointAuthMethod,
	}
	if c.SecretHash != "" {
		out.secretHash = []byte(c.SecretHash)
	}
	return out
}

// clientManager finds clients: stored ones by id, and clients whose id is an https URL by fetching their
// client ID metadata document, cached for metadataTTL.
type clientManager struct {
	store      *store.Store
	httpClient *http.Client
	now        func() time.Time

	mu    sync.Mutex
	cache map[string]cachedClient
}

type cachedClient struct {
	client *client
	until  time.Time
}

const (
	metadataTTL      = 5 * time.Minute
	metadataMaxBytes = 16 << 10
	metadataMaxCache = 1000
)

// GetClient returns the client with id, or fosite.ErrNotFound.
func (m *clientManager) GetClient(ctx context.Context, id string) (fosite.Client, error) {
	if isMetadataDocumentURL(id) {
		return m.metadataClient(ctx, id)
	}
	c, err := m.store.OAuthClient(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fosite.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return clientFromStore(c), nil
}

// isMetadataDocumentURL reports whether a client id names a client ID metadata document: an https URL
// with a path and no fragment.
func isMetadataDocumentURL(id string) bool {
	u, err := url.Parse(id)
	return err == nil && u.Scheme == "https" && u.Host != "" && u.Path != "" && u.Path != "/" &&
		u.Fragment == "" && u.User == nil
}

func (m *clientManager) metadataClient(ctx context.Context, id string) (fosite.Client, error) {
	m.mu.Lock()
	if e, ok := m.cache[id]; ok && m.now().Before(e.until) {
		m.mu.Unlock()
		return e.client, nil
	}
	m.mu.Unlock()
	c, err := m.fetchMetadata(ctx, id)
	if err != nil {
		return nil, fosite.ErrNotFound.WithWrap(err).WithDebug(err.Error())
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.cache) >= metadataMaxCache {
		clear(m.cache)
	}
	m.cache[id] = cachedClient{client: c, until: m.now().Add(metadataTTL)}
	return c, nil
}

// clientMetadata is the part of RFC 7591 client metadata the server reads, from registration requests and
// client ID metadata documents alike.
type clientMetadata struct {
	ClientID                string   `json:"client_id,omitempty"`
	ClientName              string   `json:"client_name,omitempty"`
	RedirectURIs            []string `json:"redirect_uris"`
	GrantTypes              []string `json:"grant_types,omitempty"`
	ResponseTypes           []string `json:"response_types,omitempty"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method,omitempty"`
	Scope                   string   `json:"scope,omitempty"`
	ClientSecret            string   `json:"client_secret,omitempty"`
}

// fetchMetadata fetches and validates the client ID metadata document at id.
func (m *clientManager) fetchMetadata(ctx context.Context, id string) (*client, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, id, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := m.httpClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch client metadata document: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch client metadata document: status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, metadataMaxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read client metadata document: %w", err)
	}
	if len(body) > metadataMaxBytes {
		return nil, errors.New("client metadata document too large")
	}
	var md clientMetadata
	if err := json.Unmarshal(body, &md); err != nil {
		return nil, fmt.Errorf("decode client metadata document: %w", err)
	}
	if md.ClientID != id {
		return nil, errors.New("client metadata document names another client_id")
	}
	if md.ClientSecret != "" || (md.TokenEndpointAuthMethod != "" && md.TokenEndpointAuthMethod != authNone) {
		return nil, errors.New("client metadata documents describe public clients only")
	}
	c, err := validateMetadata(md)
	if err != nil {
		return nil, err
	}
	c.id, c.metadataDocument = id, true
	if c.name == "" {
		c.name = req.URL.Host
	}
	return c, nil
}

// validateMetadata checks client metadata for a public client and returns the client it describes.
func validateMetadata(md clientMetadata) (*client, error) {
	if len(md.RedirectURIs) == 0 || len(md.RedirectURIs) > 10 {
		return nil, errInvalidRedirectURI("redirect_uris: between one and ten are needed")
	}
	for _, u := range md.RedirectURIs {
		if err := checkRedirectURI(u); err != nil {
			return nil, err
		}
	}
	grants := md.GrantTypes
	if len(grants) == 0 {
		grants = []string{grantAuthorizationCode, grantRefreshToken}
	}
	for _, g := range grants {
		if g != grantAuthorizationCode && g != grantRefreshToken {
			return nil, errInvalidMetadata("grant_types: " + g + " is not available to public clients")
		}
	}
	// A client of the authorization code grant may always refresh (RFC 7591 lets the server amend the grant
	// types; the registration response says so): otherwise it would send its user to sign in again whenever
	// an access token expires.
	if slices.Contains(grants, grantAuthorizationCode) && !slices.Contains(grants, grantRefreshToken) {
		grants = append(slices.Clip(grants), grantRefreshToken)
	}
	for _, rt := range md.ResponseTypes {
		if rt != "code" {
			return nil, errInvalidMetadata("response_types: only code is supported, not " + rt)
		}
	}
	if len(md.ClientName) > 200 {
		return nil, errInvalidMetadata("client_name: at most 200 characters")
	}
	return &client{
		name: md.ClientName, redirectURIs: md.RedirectURIs, grantTypes: grants, scopes: supportedScopes, authMethod: authNone,
	}, nil
}

// checkRedirectURI admits https redirect URIs and, per RFC 8252, http ones on a loopback address or
// localhost. The port of a loopback IP literal may differ at authorization time.
func checkRedirectURI(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Host == "" || u.Fragment != "" || u.User != nil {
		return errInvalidRedirectURI("redirect_uris: " + raw + " is not an absolute URL without fragment")
	}
	switch {
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && isLoopbackHost(u.Hostname()):
		return nil
	}
	return errInvalidRedirectURI("redirect_uris: " + raw + " must use https, or http on 127.0.0.1, [::1] or localhost")
}

func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// publicOnlyDialer refuses connections to loopback, private, link-local and unspecified addresses, so a
// client ID metadata document URL cannot make the server reach into its own network.
func publicOnlyDialer() *net.Dialer {
	return &net.Dialer{
		Timeout: 5 * time.Second,
		Control: func(_, address string, _ syscall.RawConn) error {
			host, _, err := net.SplitHostPort(address)
			if err != nil {
				return err
			}
			ip := net.ParseIP(host)
			if ip == nil || ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() ||
				ip.IsUnspecified() || ip.IsMulticast() {
				return fmt.Errorf("refusing to fetch client metadata from %s", host)
			}
			return nil
		},
	}
}

// PublicHTTPClient is an HTTP client that reaches public addresses only, checked after DNS resolution, and
// follows no redirects: for fetching what tenants name, such as client metadata documents and the
// metadata of remote servers' authorization servers.
func PublicHTTPClient() *http.Client { return defaultMetadataClient() }

// defaultMetadataClient fetches client ID metadata documents from public addresses only, without
// following redirects.
func defaultMetadataClient() *http.Client {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.DialContext = publicOnlyDialer().DialContext
	transport.Proxy = nil
	return &http.Client{
		Transport: transport,
		Timeout:   5 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// secretHasher checks client secrets with Argon2id. Secrets are checked only at the token endpoint, by
// confidential clients, so the slow hash is not on a hot path.
type secretHasher struct{}

func (secretHasher) Compare(ctx context.Context, hash, data []byte) error {
	ok, err := password.Verify(ctx, string(data), string(hash))
	if err != nil {
		return err
	}
	if !ok {
		return errors.New("wrong client secret")
	}
	return nil
}

func (secretHasher) Hash(ctx context.Context, data []byte) ([]byte, error) {
	h, err := password.Hash(ctx, string(data))
	return []byte(h), err
}
