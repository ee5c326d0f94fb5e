package remoteauth

import (
	"context"
	"errors"
	"html/template"
	"net/http"
	"time"

	"github.com/google/uuid"
	"golang.org/x/oauth2"

	"github.com/orrery/orrery/services/controlplane/internal/access"
	"github.com/orrery/orrery/services/controlplane/internal/bearer"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// ServeCallback receives the browser back from a remote server's authorization server, exchanges the code
// and keeps the member's tokens. The browser must be signed in to Orrery as the member who started the
// flow: otherwise someone could send a victim a link to authorize that ends with the victim's remote
// account connected to the sender.
func (c *Connector) ServeCallback(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	q := r.URL.Query()
	state := q.Get("state")
	if state == "" || len(state) > 256 {
		c.page(w, http.StatusBadRequest, "This link is not a complete authorization answer.")
		return
	}
	// The state works once, whatever happens next.
	flow, err := c.store.TakeRemoteOAuthFlow(ctx, stateHash(state), c.cfg.Now())
	if errors.Is(err, store.ErrNotFound) {
		c.page(w, http.StatusBadRequest, "This authorization expired or was already used. Connect your account again.")
		return
	}
	if err != nil {
		c.logger.ErrorContext(ctx, "remote authorization callback", "error", err)
		c.page(w, http.StatusInternalServerError, "Something went wrong on our side. Connect your account again in a moment.")
		return
	}
	if user, ok := c.sessionUser(ctx, r); !ok || user != flow.UserID.String() {
		c.logger.WarnContext(ctx, "remote authorization finished by another browser", "security_event", "remote_oauth_user_mismatch",
			"user_id", flow.UserID, "installation_id", flow.InstallationID)
		c.page(w, http.StatusForbidden, "Sign in to Orrery in this browser as the person who asked to connect, then connect your account again.")
		return
	}
	if e := q.Get("error"); e != "" {
		c.page(w, http.StatusOK, "The remote server did not authorize the connection ("+e+"). Nothing was connected.")
		return
	}
	client, err := c.store.RemoteOAuthClient(ctx, flow.Issuer)
	if err != nil {
		c.logger.ErrorContext(ctx, "remote authorization callback: client", "error", err)
		c.page(w, http.StatusInternalServerError, "Something went wrong on our side. Connect your account again in a moment.")
		return
	}
	if iss := q.Get("iss"); iss != "" && iss != flow.Issuer {
		// RFC 9207: the answer comes from another authorization server than the one asked (mix-up attack).
		c.page(w, http.StatusBadRequest, "The answer came from an unexpected authorization server. Nothing was connected.")
		return
	}
	cfg := c.oauthConfig(client, "", flow.TokenEndpoint)
	tok, err := cfg.Exchange(c.withClient(ctx), q.Get("code"), oauth2.VerifierOption(flow.Verifier),
		oauth2.SetAuthURLParam("resource", flow.Resource))
	if err != nil {
		c.logger.WarnContext(ctx, "remote authorization: exchange the code", "issuer", flow.Issuer, "error", tokenError(err))
		c.page(w, http.StatusBadGateway, "The remote server's authorization server refused the code. Connect your account again.")
		return
	}
	scope, _ := tok.Extra("scope").(string)
	if err := c.store.SaveRemoteOAuthConnection(ctx, store.RemoteOAuthConnection{
		TeamID: flow.TeamID, InstallationID: flow.InstallationID, UserID: flow.UserID, Issuer: flow.Issuer,
		TokenEndpoint: flow.TokenEndpoint, Resource: flow.Resource, AccessToken: tok.AccessToken,
		RefreshToken: tok.RefreshToken, Scope: scope, ExpiresAt: expiry(tok),
	}); err != nil {
		c.logger.ErrorContext(ctx, "remote authorization: save the connection", "error", err)
		c.page(w, http.StatusInternalServerError, "Something went wrong on our side. Connect your account again in a moment.")
		return
	}
	c.audit(ctx, flow.UserID, flow.TeamID, "remote_account.connected", flow.InstallationID.String())
	c.page(w, http.StatusOK, "Your account is connected. You can close this window; your MCP clients use it from now on.")
}

// sessionUser is the id of the user signed in to the console in this browser.
func (c *Connector) sessionUser(ctx context.Context, r *http.Request) (string, bool) {
	cookie, err := r.Cookie(access.SessionCookie)
	if err != nil || cookie.Value == "" {
		return "", false
	}
	user, _, err := c.store.SessionUser(ctx, bearer.Hash(cookie.Value))
	if err != nil {
		return "", false
	}
	return user.ID.String(), true
}

// expiry is when tok expires, or nil when the server did not say.
func expiry(tok *oauth2.Token) *time.Time {
	if tok.Expiry.IsZero() {
		return nil
	}
	t := tok.Expiry.UTC()
	return &t
}

// tokenError describes a token endpoint's refusal by its error code alone: the rest of the answer is the
// remote server's text and is not logged.
func tokenError(err error) string {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		if re.ErrorCode != "" {
			return re.ErrorCode
		}
		return re.Response.Status
	}
	return err.Error()
}

// audit appends to the audit log; a failure is logged, since the action it records has already happened.
func (c *Connector) audit(ctx context.Context, userID, teamID uuid.UUID, action, target string) {
	if err := c.store.Audit(ctx, store.AuditEvent{
		ActorID: &userID, Actor: "user:" + userID.String(), TeamID: &teamID, Action: action, Target: target,
	}); err != nil {
		c.logger.ErrorContext(ctx, "write audit log", "action", action, "error", err)
	}
}

var resultPage = template.Must(template.New("remote").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>Connect your account · Orrery</title>
<style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;color:#222}</style></head>
<body><h1>Connect your account</h1><p>{{.}}</p></body></html>`))

// page answers the browser with message on a page no one may frame or cache.
func (c *Connector) page(w http.ResponseWriter, status int, message string) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
	h.Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(status)
	_ = resultPage.Execute(w, message)
}
