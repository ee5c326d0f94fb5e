package remoteauth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/oauthex"

	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// discovery is what the control plane learned about a remote server's authorization.
type discovery struct {
	// resource is the server's resource identifier, the RFC 8707 resource of its tokens.
	resource string
	// scopes are the scopes the server lists; empty asks for the authorization server's default.
	scopes []string
	issuer string
	server *oauthex.AuthServerMeta
}

// discover finds serverURL's protected-resource metadata, from the resource_metadata of the 401 its
// server answers an anonymous request with or else at the RFC 9728 well-known path, and the metadata of
// the first authorization server it names.
func (c *Connector) discover(ctx context.Context, serverURL string) (discovery, error) {
	metadataURL, err := c.resourceMetadataURL(ctx, serverURL)
	if err != nil {
		return discovery{}, err
	}
	prm, err := oauthex.GetProtectedResourceMetadata(ctx, metadataURL, serverURL, c.cfg.HTTPClient)
	if err != nil {
		return discovery{}, fmt.Errorf("%w: protected-resource metadata: %v", ErrNoAuthorization, err)
	}
	if len(prm.AuthorizationServers) == 0 {
		return discovery{}, fmt.Errorf("%w: the metadata names no authorization server", ErrNoAuthorization)
	}
	issuer := prm.AuthorizationServers[0]
	var asm *oauthex.AuthServerMeta
	for _, u := range authServerMetadataURLs(issuer) {
		if asm, err = oauthex.GetAuthServerMeta(ctx, u, issuer, c.cfg.HTTPClient); err != nil {
			return discovery{}, fmt.Errorf("%w: authorization server metadata: %v", ErrNoAuthorization, err)
		}
		if asm != nil {
			break
		}
	}
	if asm == nil {
		return discovery{}, fmt.Errorf("%w: %s publishes no authorization server metadata", ErrNoAuthorization, issuer)
	}
	return discovery{resource: prm.Resource, scopes: prm.ScopesSupported, issuer: issuer, server: asm}, nil
}

// resourceMetadataURL asks serverURL without credentials and reads the resource_metadata parameter of its
// Bearer challenge; without one, it is the well-known URL of RFC 9728, section 3.1.
func (c *Connector) resourceMetadataURL(ctx context.Context, serverURL string) (string, error) {
	u, err := url.Parse(serverURL)
	if err != nil {
		return "", fmt.Errorf("%w: the server URL is malformed", ErrNoAuthorization)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, serverURL,
		strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("%w: reach the server: %v", ErrNoAuthorization, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode == http.StatusUnauthorized {
		challenges, err := oauthex.ParseWWWAuthenticate(resp.Header.Values("WWW-Authenticate"))
		if err == nil {
			for _, ch := range challenges {
				if ch.Scheme == "bearer" && ch.Params["resource_metadata"] != "" {
					return ch.Params["resource_metadata"], nil
				}
			}
		}
	}
	return u.Scheme + "://" + u.Host + "/.well-known/oauth-protected-resource" + strings.TrimSuffix(u.Path, "/"), nil
}

// authServerMetadataURLs are where RFC 8414 and OpenID Connect discovery put an issuer's metadata.
func authServerMetadataURLs(issuer string) []string {
	u, err := url.Parse(issuer)
	if err != nil {
		return nil
	}
	path := strings.TrimSuffix(u.Path, "/")
	base := u.Scheme + "://" + u.Host
	return []string{
		base + "/.well-known/oauth-authorization-server" + path,
		base + "/.well-known/openid-configuration" + path,
		base + path + "/.well-known/openid-configuration",
	}
}

// client returns the control plane's registration with d's authorization server, registering dynamically
// the first time.
func (c *Connector) client(ctx context.Context, d discovery) (store.RemoteOAuthClient, error) {
	cl, err := c.store.RemoteOAuthClient(ctx, d.issuer)
	if err == nil || !errors.Is(err, store.ErrNotFound) {
		return cl, err
	}
	if d.server.RegistrationEndpoint == "" {
		return store.RemoteOAuthClient{}, fmt.Errorf("%w: %s offers no dynamic client registration", ErrNoAuthorization, d.issuer)
	}
	reg, err := oauthex.RegisterClient(ctx, d.server.RegistrationEndpoint, &oauthex.ClientRegistrationMetadata{
		RedirectURIs: []string{c.cfg.CallbackURL}, ClientName: c.cfg.ClientName, TokenEndpointAuthMethod: "none",
		GrantTypes: []string{"authorization_code", "refresh_token"}, ResponseTypes: []string{"code"},
	}, c.cfg.HTTPClient)
	if err != nil {
		return store.RemoteOAuthClient{}, fmt.Errorf("%w: register with %s: %v", ErrNoAuthorization, d.issuer, err)
	}
	return c.store.SaveRemoteOAuthClient(ctx, store.RemoteOAuthClient{
		Issuer: d.issuer, ClientID: reg.ClientID, ClientSecret: reg.ClientSecret,
	})
}
