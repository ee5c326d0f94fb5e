// Package access authenticates callers of the control plane's user-facing API and decides, from one table,
// which of them may call each procedure.
//
// Browsers present the session cookie that AccountService.Login sets; scripts and buf curl present a personal
// API token as "Authorization: Bearer <token>", and orreryctl an OAuth access token issued for the API's
// audience, never one issued for a team endpoint. Every request that concerns a team names it in a team_id field,
// so the decision is made here, before the handler runs, and handlers filter every query by that team: an id
// that belongs to another team is simply not found.
//
// Credentials travel in headers, so the caller of a procedure that needs one is found (Authenticate) before
// the request's body is read, and a request without valid credentials is refused unread; the interceptor
// takes the caller found then and decides, once the request is read, from the team it names.
package access

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	"github.com/orrery/orrery/services/controlplane/internal/bearer"
	"github.com/orrery/orrery/services/controlplane/internal/rpcerr"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// Rule says who may call a procedure.
type Rule int

// Rules, from most to least open.
const (
	// Public procedures need no credentials.
	Public Rule = iota + 1
	// SignedIn procedures need a signed-in user.
	SignedIn
	// SignedInOrTeamMember procedures need, with a team_id, a member of that team or a global admin, and
	// without one any signed-in user: reads of what is shared with everyone beside what is the team's.
	SignedInOrTeamMember
	// TeamMember procedures need a member of the request's team_id, or a global admin.
	TeamMember
	// TeamAdmin procedures need an admin of the request's team_id, or a global admin.
	TeamAdmin
	// TeamAdminOrGlobalAdmin procedures need, with a team_id, an admin of that team, and without one a global admin.
	TeamAdminOrGlobalAdmin
	// GlobalAdmin procedures need a global admin.
	GlobalAdmin
)

func (r Rule) String() string {
	return [...]string{"?", "public", "signed in", "signed in or team member", "team member", "team admin", "team admin or global admin", "global admin"}[r]
}

// Policy maps each procedure to its rule. A procedure missing from it is refused to everyone.
type Policy map[string]Rule

// SessionCookie is the name of the browser session cookie. The __Host- prefix makes browsers insist on
// Secure, Path=/ and no Domain, so no other host or path can plant or read it.
const SessionCookie = "__Host-orrery_session"

// Principal is an authenticated caller.
type Principal struct {
	User store.User
	// SessionID is the browser session the call came with; uuid.Nil for API tokens.
	SessionID uuid.UUID
	// TeamID is the team the request names, when its rule concerns a team.
	TeamID uuid.UUID
	// TeamRole is the caller's role in TeamID; empty for a global admin who is not a member.
	TeamRole string
}

// IsGlobalAdmin reports whether the caller administers everything.
func (p *Principal) IsGlobalAdmin() bool { return p.User.GlobalRole == store.RoleGlobalAdmin }

// IsTeamAdmin reports whether the caller administers the request's team.
func (p *Principal) IsTeamAdmin() bool { return p.IsGlobalAdmin() || p.TeamRole == store.RoleTeamAdmin }

type principalKey struct{}

// FromContext returns the caller, or nil for a public procedure called without credentials.
func FromContext(ctx context.Context) *Principal {
	p, _ := ctx.Value(principalKey{}).(*Principal)
	return p
}

// Interceptor enforces a Policy on every unary and streaming call.
type Interceptor struct {
	logger      *slog.Logger
	store       *store.Store
	policy      Policy
	apiAudience string
}

// New returns an Interceptor for policy. apiAudience is the audience of the OAuth access tokens that act as
// their user here (the authorization server's API resource); empty accepts none.
func New(logger *slog.Logger, st *store.Store, policy Policy, apiAudience string) *Interceptor {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Interceptor{logger: logger, store: st, policy: policy, apiAudience: apiAudience}
}

var errSignIn = errors.New(`sign in first: send the session cookie, or a personal API token as "Authorization: Bearer <token>"`)

// WrapUnary implements connect.Interceptor.
func (i *Interceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		rule, p, err := i.authenticate(ctx, req.Spec().Procedure, req.Header())
		if err != nil {
			return nil, err
		}
		if err := i.authorize(ctx, req.Spec().Procedure, rule, p, req.Any()); err != nil {
			return nil, err
		}
		return next(context.WithValue(ctx, principalKey{}, p), req)
	}
}

// WrapStreamingClient implements connect.Interceptor; the control plane calls no streams.
func (i *Interceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

// WrapStreamingHandler implements connect.Interceptor. A stream's request arrives after the handler starts,
// so the team decision is made when the handler receives it.
func (i *Interceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		procedure := conn.Spec().Procedure
		rule, p, err := i.authenticate(ctx, procedure, conn.RequestHeader())
		if err != nil {
			return err
		}
		return next(context.WithValue(ctx, principalKey{}, p), &authorizingConn{
			StreamingHandlerConn: conn,
			authorize:            func(msg any) error { return i.authorize(ctx, procedure, rule, p, msg) },
		})
	}
}

type authorizingConn struct {
	connect.StreamingHandlerConn
	authorize func(msg any) error
}

func (c *authorizingConn) Receive(msg any) error {
	if err := c.StreamingHandlerConn.Receive(msg); err != nil {
		return err
	}
	return c.authorize(msg)
}

type admittedKey struct{}

// Authenticate resolves the caller from a request's headers alone, so that a request to a procedure that
// needs a caller is refused before its body is read. It fails unless the headers carry valid credentials.
// The context it returns carries the caller to the interceptor, which then takes it as it is rather than
// looking the credentials up again.
func (i *Interceptor) Authenticate(ctx context.Context, header http.Header) (context.Context, error) {
	p, err := i.principal(ctx, header)
	if err != nil {
		return ctx, err
	}
	if p == nil {
		return ctx, connect.NewError(connect.CodeUnauthenticated, errSignIn)
	}
	return context.WithValue(ctx, admittedKey{}, p), nil
}

// authenticate finds the procedure's rule and, unless it is public, the caller.
func (i *Interceptor) authenticate(ctx context.Context, procedure string, header http.Header) (Rule, *Principal, error) {
	rule, ok := i.policy[procedure]
	if !ok {
		i.logger.ErrorContext(ctx, "procedure has no access rule; refusing it", "procedure", procedure)
		return 0, nil, connect.NewError(connect.CodePermissionDenied, errors.New("this procedure is not open to anyone"))
	}
	if p, ok := ctx.Value(admittedKey{}).(*Principal); ok && rule != Public {
		return rule, p, nil
	}
	p, err := i.principal(ctx, header)
	if rule == Public {
		// A stale cookie must not stand between a browser and signing in again.
		return rule, p, nil
	}
	if err != nil {
		return 0, nil, err
	}
	if p == nil {
		return 0, nil, connect.NewError(connect.CodeUnauthenticated, errSignIn)
	}
	return rule, p, nil
}

// principal resolves the request's credentials, preferring an API token to a cookie. No credentials is a nil
// Principal; wrong ones are an error, so a stale cookie is not silently treated as anonymous.
func (i *Interceptor) principal(ctx context.Context, header http.Header) (*Principal, error) {
	var (
		user      store.User
		sessionID uuid.UUID
		err       error
	)
	if token, ok := strings.CutPrefix(header.Get("Authorization"), "Bearer "); ok && token != "" {
		if strings.HasPrefix(token, bearer.AccessToken) {
			err = store.ErrNotFound
			if i.apiAudience != "" {
				user, err = i.store.APIAccessTokenUser(ctx, bearer.Hash(token), i.apiAudience)
			}
		} else {
			user, _, err = i.store.APITokenUser(ctx, bearer.Hash(token))
		}
	} else if cookie := sessionCookie(header); cookie != "" {
		user, sessionID, err = i.store.SessionUser(ctx, bearer.Hash(cookie))
	} else {
		return nil, nil
	}
	if errors.Is(err, store.ErrNotFound) {
		i.logger.WarnContext(ctx, "unknown, expired or revoked credentials", "security_event", "authentication_refused")
		return nil, connect.NewError(connect.CodeUnauthenticated,
			errors.New("the session or API token is unknown, expired or revoked; sign in again"))
	}
	if err != nil {
		return nil, rpcerr.From(ctx, i.logger, "authenticate", err)
	}
	return &Principal{User: user, SessionID: sessionID}, nil
}

func sessionCookie(header http.Header) string {
	for _, c := range (&http.Request{Header: header}).CookiesNamed(SessionCookie) {
		return c.Value
	}
	return ""
}

// teamScoped is every request message with a team_id field.
type teamScoped interface{ GetTeamId() string }

// authorize applies rule to the caller and the request, filling in the caller's team role.
func (i *Interceptor) authorize(ctx context.Context, procedure string, rule Rule, p *Principal, msg any) error {
	switch rule {
	case Public, SignedIn:
		return nil
	case GlobalAdmin:
		if p.IsGlobalAdmin() {
			return nil
		}
		return i.deny(ctx, procedure, rule, p, "only global admins may do this")
	}
	scoped, ok := msg.(teamScoped)
	if !ok {
		i.logger.ErrorContext(ctx, "team rule on a request without team_id; refusing it", "procedure", procedure)
		return connect.NewError(connect.CodePermissionDenied, errors.New("this procedure is not open to anyone"))
	}
	if scoped.GetTeamId() == "" {
		if rule == SignedInOrTeamMember {
			return nil
		}
		if rule == TeamAdminOrGlobalAdmin {
			if p.IsGlobalAdmin() {
				return nil
			}
			return i.deny(ctx, procedure, rule, p, "without a team_id only global admins may do this; name your team")
		}
		return connect.NewError(connect.CodeInvalidArgument, errors.New("team_id is required"))
	}
	teamID, err := uuid.Parse(scoped.GetTeamId())
	if err != nil {
		return connect.NewError(connect.CodeInvalidArgument, errors.New("team_id must be a UUID"))
	}
	p.TeamID = teamID
	p.TeamRole, err = i.store.TeamRole(ctx, teamID, p.User.ID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return rpcerr.From(ctx, i.logger, "check team membership", err)
	}
	switch {
	case p.IsGlobalAdmin():
		return nil
	case p.TeamRole == "":
		// The same answer whether or not the team exists, so ids of other teams cannot be probed.
		return i.deny(ctx, procedure, rule, p, "you are not a member of this team")
	case rule == TeamMember || rule == SignedInOrTeamMember || p.TeamRole == store.RoleTeamAdmin:
		return nil
	default:
		return i.deny(ctx, procedure, rule, p, "only the team's admins may do this")
	}
}

func (i *Interceptor) deny(ctx context.Context, procedure string, rule Rule, p *Principal, why string) error {
	i.logger.WarnContext(ctx, "permission denied", "security_event", "permission_denied", "procedure", procedure,
		"rule", rule.String(), "user_id", p.User.ID, "team_id", p.TeamID)
	return connect.NewError(connect.CodePermissionDenied, errors.New(why))
}

// NewSessionCookie returns the cookie that carries a browser session.
func NewSessionCookie(token string, expires time.Time) *http.Cookie {
	return &http.Cookie{
		Name: SessionCookie, Value: token, Path: "/", Expires: expires, MaxAge: int(time.Until(expires).Seconds()),
		Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode,
	}
}

// ClearedSessionCookie returns a cookie that makes the browser forget its session.
func ClearedSessionCookie() *http.Cookie {
	return &http.Cookie{Name: SessionCookie, Value: "", Path: "/", MaxAge: -1, Secure: true, HttpOnly: true,
		SameSite: http.SameSiteStrictMode}
}

// Require returns the caller of a procedure whose rule is not Public. It fails only when the policy and the
// handler disagree, which the policy test rules out.
func Require(ctx context.Context) (*Principal, error) {
	if p := FromContext(ctx); p != nil {
		return p, nil
	}
	return nil, connect.NewError(connect.CodeUnauthenticated, errSignIn)
}
