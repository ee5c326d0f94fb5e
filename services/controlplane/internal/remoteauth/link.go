package remoteauth

import (
	"errors"
	"net/http"
	"net/url"
	"strings"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// ConnectPath is the page that starts connecting the signed-in member's account in the browser: the link
// the console and the satellites show to members who have yet to connect.
const ConnectPath = "/oauth/remote/connect"

// Link is the page where a member of teamID connects their account at the remote server of installationID.
func (c *Connector) Link(teamID, installationID uuid.UUID) string {
	base := strings.TrimSuffix(c.cfg.CallbackURL, CallbackPath)
	return base + ConnectPath + "?" + url.Values{
		"team_id": {teamID.String()}, "installation_id": {installationID.String()},
	}.Encode()
}

// ServeConnect starts the signed-in member's authorization for an installation of their team and sends the
// browser on to the remote server's authorization server. Everyone else gets the same refusal, whether the
// team or installation exists or not.
func (c *Connector) ServeConnect(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	q := r.URL.Query()
	teamID, err1 := uuid.Parse(q.Get("team_id"))
	installationID, err2 := uuid.Parse(q.Get("installation_id"))
	if err1 != nil || err2 != nil {
		c.page(w, http.StatusBadRequest, "This link does not name an installation.")
		return
	}
	user, ok := c.sessionUser(ctx, r)
	if !ok {
		c.page(w, http.StatusUnauthorized, "Sign in to the Orrery console in this browser, then open this link again.")
		return
	}
	userID := uuid.MustParse(user)
	if _, err := c.store.TeamRole(ctx, teamID, userID); err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			c.logger.ErrorContext(ctx, "connect remote account: team role", "error", err)
		}
		c.page(w, http.StatusNotFound, "There is no such installation in your teams.")
		return
	}
	authURL, _, err := c.Start(ctx, teamID, installationID, userID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		c.page(w, http.StatusNotFound, "There is no such installation in your teams.")
	case connect.CodeOf(err) == connect.CodeResourceExhausted:
		c.page(w, http.StatusTooManyRequests, "Too many attempts to connect an account. Try again in a minute.")
	case errors.Is(err, ErrNotRemote), errors.Is(err, ErrNoAuthorization):
		c.logger.InfoContext(ctx, "connect remote account", "installation_id", installationID, "error", err)
		c.page(w, http.StatusBadGateway, "This server does not offer an OAuth authorization Orrery can use.")
	case err != nil:
		c.logger.ErrorContext(ctx, "connect remote account", "error", err)
		c.page(w, http.StatusInternalServerError, "Something went wrong on our side. Try again in a moment.")
	default:
		http.Redirect(w, r, authURL, http.StatusFound)
	}
}
