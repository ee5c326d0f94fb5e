package remoteauth

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/modelcontextprotocol/go-sdk/oauthex"
	"golang.org/x/oauth2"

	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// refreshBatch bounds the connections one RefreshDue refreshes; the next run takes the rest.
const refreshBatch = 100

// RefreshDue refreshes the access tokens that expire within Config.RefreshBefore and returns how many it
// refreshed, and forgets authorizations left unfinished past their time. A connection whose refresh the authorization server refuses (invalid_grant) stops being
// delivered, and its member must connect again; other failures are retried at the next run.
func (c *Connector) RefreshDue(ctx context.Context) (int, error) {
	// Abandoned authorizations go on the same round.
	if _, err := c.store.DeleteExpiredRemoteOAuthFlows(ctx); err != nil {
		return 0, err
	}
	due, err := c.store.DueRemoteOAuthConnections(ctx, c.cfg.Now().Add(c.cfg.RefreshBefore), refreshBatch)
	if err != nil {
		return 0, err
	}
	refreshed := 0
	for _, conn := range due {
		ok, err := c.refresh(ctx, conn)
		if err != nil {
			return refreshed, err
		}
		if ok {
			refreshed++
		}
	}
	return refreshed, nil
}

// refresh refreshes one connection; it reports whether new tokens were stored. Only failures of the
// control plane's own are errors.
func (c *Connector) refresh(ctx context.Context, conn store.RemoteOAuthConnection) (bool, error) {
	client, err := c.store.RemoteOAuthClient(ctx, conn.Issuer)
	if err != nil {
		return false, err
	}
	cfg := c.oauthConfig(client, "", conn.TokenEndpoint)
	// An expired token makes the source refresh at once.
	tok, err := cfg.TokenSource(c.withClient(ctx), &oauth2.Token{RefreshToken: conn.RefreshToken, Expiry: time.Unix(1, 0)}).Token()
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && (re.ErrorCode == "invalid_grant" || re.ErrorCode == "unauthorized_client" || re.ErrorCode == "invalid_client") {
		c.logger.InfoContext(ctx, "remote authorization ended: the member must connect again", "issuer", conn.Issuer,
			"installation_id", conn.InstallationID, "user_id", conn.UserID, "error", re.ErrorCode)
		return false, c.store.FailRemoteOAuthConnection(ctx, conn)
	}
	if err != nil {
		c.logger.WarnContext(ctx, "refresh remote authorization", "issuer", conn.Issuer, "installation_id", conn.InstallationID,
			"error", tokenError(err))
		return false, nil
	}
	refresh := tok.RefreshToken
	if refresh == "" {
		refresh = conn.RefreshToken // the server keeps the refresh token unchanged
	}
	return c.store.UpdateRemoteOAuthTokens(ctx, conn, tok.AccessToken, refresh, expiry(tok))
}

// Disconnect forgets userID's tokens for an installation of teamID, stops the satellites sending them, and
// asks the authorization server to revoke the refresh token (RFC 7009) when it offers revocation.
func (c *Connector) Disconnect(ctx context.Context, teamID, installationID, userID uuid.UUID) error {
	conn, err := c.store.DeleteRemoteOAuthConnection(ctx, teamID, installationID, userID)
	if err != nil {
		return err
	}
	c.audit(ctx, userID, teamID, "remote_account.disconnected", installationID.String())
	c.revokeUpstream(context.WithoutCancel(ctx), conn)
	return nil
}

// revokeUpstream revokes conn's tokens at its authorization server, best effort: they are gone from Orrery
// whatever the server answers.
func (c *Connector) revokeUpstream(ctx context.Context, conn store.RemoteOAuthConnection) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var revocation string
	for _, u := range authServerMetadataURLs(conn.Issuer) {
		if asm, err := oauthex.GetAuthServerMeta(ctx, u, conn.Issuer, c.cfg.HTTPClient); err == nil && asm != nil {
			revocation = asm.RevocationEndpoint
			break
		}
	}
	client, err := c.store.RemoteOAuthClient(ctx, conn.Issuer)
	if revocation == "" || err != nil {
		return
	}
	for hint, token := range map[string]string{"refresh_token": conn.RefreshToken, "access_token": conn.AccessToken} {
		if token == "" {
			continue
		}
		form := url.Values{"token": {token}, "token_type_hint": {hint}, "client_id": {client.ClientID}}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, revocation, strings.NewReader(form.Encode()))
		if err != nil {
			return
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if client.ClientSecret != "" {
			req.SetBasicAuth(url.QueryEscape(client.ClientID), url.QueryEscape(client.ClientSecret))
		}
		resp, err := c.cfg.HTTPClient.Do(req)
		if err != nil {
			c.logger.WarnContext(ctx, "revoke remote token", "issuer", conn.Issuer, "error", err)
			return
		}
		resp.Body.Close()
	}
}
