// Package accountapi serves the services about people: AccountService (sign-in, sessions, personal API
// tokens), UserService (user administration by global admins) and TeamService (teams and memberships).
package accountapi

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	"github.com/orrery/orrery/services/controlplane/internal/access"
	"github.com/orrery/orrery/services/controlplane/internal/bearer"
	"github.com/orrery/orrery/services/controlplane/internal/password"
	"github.com/orrery/orrery/services/controlplane/internal/ratelimit"
	"github.com/orrery/orrery/services/controlplane/internal/rpcerr"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// Config tunes sign-in; zero fields take the defaults in their comments.
type Config struct {
	// SessionTTL is how long a browser session lasts. Default 12 hours.
	SessionTTL time.Duration
	// MaxFailures is how many failed sign-ins in a row lock an account. Default 5.
	MaxFailures int
	// LockFor is how long a locked account stays locked. Default 15 minutes.
	LockFor time.Duration
	// FailureDelay slows every failed sign-in, on top of the Argon2 work. Default 1 second.
	FailureDelay time.Duration
	// LoginsPerMinute is how many sign-in attempts a minute each client address may make on this replica,
	// once its burst is spent. Default 20: enough for an office behind one address, too few to try one
	// password on many accounts.
	LoginsPerMinute float64
	// LoginBurst is how many sign-in attempts a client address may make at once. Default 20.
	LoginBurst int
	// InvitationTTL is how long an invitation to a team may be accepted. Default 7 days.
	InvitationTTL time.Duration
	// MaxPendingInvitations is how many pending invitations a team may have. Default 100.
	MaxPendingInvitations int
	// PoolURL is the public URL the global satellites share; a team they serve has its endpoint there.
	// Default empty: such a team's endpoint is on one of its placed satellites.
	PoolURL string
	// Placer places teams again after a team changes its global fallback. Default nil: the periodic run
	// does.
	Placer interface {
		Recompute(ctx context.Context) (store.PlacementResult, error)
	}
}

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.SessionTTL == 0 {
		c.SessionTTL = 12 * time.Hour
	}
	if c.MaxFailures == 0 {
		c.MaxFailures = 5
	}
	if c.LockFor == 0 {
		c.LockFor = 15 * time.Minute
	}
	if c.FailureDelay == 0 {
		c.FailureDelay = time.Second
	}
	if c.LoginsPerMinute == 0 {
		c.LoginsPerMinute = 20
	}
	if c.LoginBurst == 0 {
		c.LoginBurst = 20
	}
	if c.InvitationTTL == 0 {
		c.InvitationTTL = 7 * 24 * time.Hour
	}
	if c.MaxPendingInvitations == 0 {
		c.MaxPendingInvitations = 100
	}
	return c
}

// Handler serves AccountService, UserService and TeamService.
type Handler struct {
	logger *slog.Logger
	store  *store.Store
	cfg    Config
	// dummyHash is verified against when the email is unknown or the account locked, so those cost the same
	// time as a wrong password and sign-in does not reveal which emails exist.
	dummyHash string
	// logins limits sign-in attempts per client address.
	logins *ratelimit.Limiter
}

// New returns a Handler.
func New(logger *slog.Logger, st *store.Store, cfg Config) (*Handler, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.WithDefaults()
	// At start-up nothing else waits for Argon2, so there is no request whose context could bound this.
	dummy, err := password.Hash(context.Background(), uuid.NewString())
	if err != nil {
		return nil, err
	}
	return &Handler{logger: logger, store: st, cfg: cfg, dummyHash: dummy,
		logins: ratelimit.New(st, "sign_in", cfg.LoginsPerMinute, cfg.LoginBurst)}, nil
}

var (
	errWrongCredentials = errors.New("wrong email or password")
	errPasswordDisabled = errors.New("password sign-in is turned off for this email domain; sign in through your organisation's identity provider")
)

// Login checks a password and starts a session or issues an API token.
func (h *Handler) Login(ctx context.Context, req *connect.Request[apiv1.LoginRequest]) (*connect.Response[apiv1.LoginResponse], error) {
	user, err := h.CheckPassword(ctx, req.Msg.Email, req.Msg.Password, req.Peer().Addr)
	if err != nil {
		return nil, err
	}
	resp := connect.NewResponse(&apiv1.LoginResponse{User: userToProto(user)})
	if req.Msg.ApiTokenName != "" {
		token, _, err := h.createAPIToken(ctx, user, req.Msg.ApiTokenName, nil)
		if err != nil {
			return nil, err
		}
		resp.Msg.ApiToken = token
	} else {
		cookie, err := h.StartSession(ctx, user.ID)
		if err != nil {
			return nil, rpcerr.From(ctx, h.logger, "sign in", err)
		}
		resp.Header().Add("Set-Cookie", cookie.String())
	}
	return resp, nil
}

// CheckPassword signs a user in by email and password, with the limits, lockout, delay and audit every
// sign-in gets, wherever it comes from: this API or the OAuth login page. peer is the client's address.
//
// Its errors are Connect errors. A wrong password, an unknown email and a locked account get one answer,
// Unauthenticated "wrong email or password", after the same Argon2 work and delay, so no answer tells
// whether an account exists or is locked; a lock is still enforced, and audited. Too many attempts from the
// address, or Argon2 busy for too long, is ResourceExhausted with a retry hint: either can happen for any
// email alike. An email of a domain whose password sign-in an admin turned off is FailedPrecondition, before
// any password work.
func (h *Handler) CheckPassword(ctx context.Context, email, pass, peer string) (store.User, error) {
	ok, wait, err := h.logins.Allow(ctx, peer)
	if err != nil {
		return store.User{}, rpcerr.From(ctx, h.logger, "sign in", err)
	}
	if !ok {
		h.logger.WarnContext(ctx, "sign-in refused", "security_event", "login_rate_limited", "peer", peer)
		return store.User{}, rpcerr.RetryLater("too many sign-in attempts from this address; try again later", wait)
	}
	// Decided by the domain alone, before any account is looked up, so the answer says nothing about one.
	disabled, err := h.store.PasswordSignInDisabled(ctx, email)
	if err != nil {
		return store.User{}, rpcerr.From(ctx, h.logger, "sign in", err)
	}
	if disabled {
		h.audit(ctx, nil, nil, "login.refused_password_disabled", "", map[string]string{"email": email})
		return store.User{}, connect.NewError(connect.CodeFailedPrecondition, errPasswordDisabled)
	}
	login, err := h.store.LoginByEmail(ctx, email)
	if errors.Is(err, store.ErrNotFound) {
		if _, err := password.Verify(ctx, pass, h.dummyHash); err != nil {
			return store.User{}, rpcerr.From(ctx, h.logger, "sign in", err)
		}
		// The email is the only trace of a failure on an unknown account; it is what an admin investigating
		// a credential-stuffing attempt needs.
		h.audit(ctx, nil, nil, "login.failed", "", map[string]string{"email": email})
		return store.User{}, h.refuseLogin(ctx, "unknown email")
	}
	if err != nil {
		return store.User{}, rpcerr.From(ctx, h.logger, "sign in", err)
	}
	if login.LockedUntil != nil && login.LockedUntil.After(time.Now()) {
		// The password is not checked, but costs what checking it would.
		if _, err := password.Verify(ctx, pass, h.dummyHash); err != nil {
			return store.User{}, rpcerr.From(ctx, h.logger, "sign in", err)
		}
		h.audit(ctx, &login.User, nil, "login.refused_locked", login.User.ID.String(),
			map[string]string{"locked_until": login.LockedUntil.UTC().Format(time.RFC3339)})
		return store.User{}, h.refuseLogin(ctx, "account locked")
	}
	matches, err := password.Verify(ctx, pass, login.PasswordHash)
	if err != nil {
		return store.User{}, rpcerr.From(ctx, h.logger, "sign in", err)
	}
	if !matches {
		lockedUntil, err := h.store.RecordFailedLogin(ctx, login.User.ID, h.cfg.MaxFailures, h.cfg.LockFor)
		if err != nil {
			return store.User{}, rpcerr.From(ctx, h.logger, "sign in", err)
		}
		if lockedUntil != nil && lockedUntil.After(time.Now()) {
			h.audit(ctx, &login.User, nil, "login.locked", login.User.ID.String(), nil)
		}
		h.audit(ctx, &login.User, nil, "login.failed", login.User.ID.String(), map[string]string{"email": email})
		return store.User{}, h.refuseLogin(ctx, "wrong password")
	}
	if err := h.store.RecordSuccessfulLogin(ctx, login.User.ID); err != nil {
		return store.User{}, rpcerr.From(ctx, h.logger, "sign in", err)
	}
	h.audit(ctx, &login.User, nil, "login.succeeded", login.User.ID.String(), map[string]string{"peer": peer})
	return login.User, nil
}

// StartSession starts a browser session for a signed-in user and returns the cookie that carries it.
func (h *Handler) StartSession(ctx context.Context, userID uuid.UUID) (*http.Cookie, error) {
	token, err := bearer.New(bearer.Session)
	if err != nil {
		return nil, err
	}
	expires := time.Now().Add(h.cfg.SessionTTL)
	if _, err := h.store.CreateSession(ctx, bearer.Hash(token), userID, expires); err != nil {
		return nil, err
	}
	return access.NewSessionCookie(token, expires), nil
}

// refuseLogin logs and slows a failed sign-in and returns the one answer every failure gets.
func (h *Handler) refuseLogin(ctx context.Context, why string) error {
	h.logger.WarnContext(ctx, "sign-in refused", "security_event", "login_failed", "reason", why)
	select {
	case <-time.After(h.cfg.FailureDelay):
	case <-ctx.Done():
	}
	return connect.NewError(connect.CodeUnauthenticated, errWrongCredentials)
}

// Logout ends the caller's session.
func (h *Handler) Logout(ctx context.Context, _ *connect.Request[apiv1.LogoutRequest]) (*connect.Response[apiv1.LogoutResponse], error) {
	p, err := access.Require(ctx)
	if err != nil {
		return nil, err
	}
	if p.SessionID != uuid.Nil {
		if err := h.store.DeleteSession(ctx, p.SessionID); err != nil {
			return nil, rpcerr.From(ctx, h.logger, "sign out", err)
		}
	}
	resp := connect.NewResponse(&apiv1.LogoutResponse{})
	resp.Header().Add("Set-Cookie", access.ClearedSessionCookie().String())
	return resp, nil
}

// GetCurrentUser describes the caller.
func (h *Handler) GetCurrentUser(ctx context.Context, _ *connect.Request[apiv1.GetCurrentUserRequest]) (*connect.Response[apiv1.GetCurrentUserResponse], error) {
	p, err := access.Require(ctx)
	if err != nil {
		return nil, err
	}
	memberships, err := h.store.Memberships(ctx, p.User.ID)
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "list memberships", err)
	}
	resp := &apiv1.GetCurrentUserResponse{User: userToProto(p.User)}
	for _, m := range memberships {
		resp.Memberships = append(resp.Memberships, &apiv1.Membership{
			TeamId: m.ID.String(), TeamSlug: m.Slug, TeamName: m.Name, Role: teamRoleToProto(m.Role), Personal: m.Personal,
		})
	}
	return connect.NewResponse(resp), nil
}

// ChangePassword replaces the caller's password and ends their other sessions.
func (h *Handler) ChangePassword(ctx context.Context, req *connect.Request[apiv1.ChangePasswordRequest]) (*connect.Response[apiv1.ChangePasswordResponse], error) {
	p, err := access.Require(ctx)
	if err != nil {
		return nil, err
	}
	login, err := h.store.LoginByID(ctx, p.User.ID)
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "change password", err)
	}
	if login.PasswordHash != "" {
		matches, err := password.Verify(ctx, req.Msg.CurrentPassword, login.PasswordHash)
		if err != nil {
			return nil, rpcerr.From(ctx, h.logger, "change password", err)
		}
		if !matches {
			h.audit(ctx, &p.User, nil, "password.change_refused", p.User.ID.String(), nil)
			return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("current_password is wrong"))
		}
	}
	hash, err := password.Hash(ctx, req.Msg.NewPassword)
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "change password", err)
	}
	if err := h.store.SetPassword(ctx, p.User.ID, hash); err != nil {
		return nil, rpcerr.From(ctx, h.logger, "change password", err)
	}
	var keep *uuid.UUID
	if p.SessionID != uuid.Nil {
		keep = &p.SessionID
	}
	if err := h.store.DeleteOtherSessions(ctx, p.User.ID, keep); err != nil {
		return nil, rpcerr.From(ctx, h.logger, "end other sessions", err)
	}
	h.audit(ctx, &p.User, nil, "password.changed", p.User.ID.String(), nil)
	return connect.NewResponse(&apiv1.ChangePasswordResponse{}), nil
}

// CreateApiToken creates a personal API token for the caller.
func (h *Handler) CreateApiToken(ctx context.Context, req *connect.Request[apiv1.CreateApiTokenRequest]) (*connect.Response[apiv1.CreateApiTokenResponse], error) {
	p, err := access.Require(ctx)
	if err != nil {
		return nil, err
	}
	var expires *time.Time
	if req.Msg.Ttl != nil {
		t := time.Now().Add(req.Msg.Ttl.AsDuration())
		expires = &t
	}
	token, rec, err := h.createAPIToken(ctx, p.User, req.Msg.Name, expires)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&apiv1.CreateApiTokenResponse{Token: token, ApiToken: apiTokenToProto(rec)}), nil
}

func (h *Handler) createAPIToken(ctx context.Context, user store.User, name string, expires *time.Time) (string, store.APIToken, error) {
	token, err := bearer.New(bearer.APIToken)
	if err != nil {
		return "", store.APIToken{}, rpcerr.From(ctx, h.logger, "create API token", err)
	}
	rec, err := h.store.CreateAPIToken(ctx, bearer.Hash(token), user.ID, name, expires)
	if err != nil {
		return "", store.APIToken{}, rpcerr.From(ctx, h.logger, "create API token", err)
	}
	h.audit(ctx, &user, nil, "api_token.created", rec.ID.String(), map[string]string{"name": name})
	return token, rec, nil
}

// ListApiTokens lists the caller's API tokens.
func (h *Handler) ListApiTokens(ctx context.Context, _ *connect.Request[apiv1.ListApiTokensRequest]) (*connect.Response[apiv1.ListApiTokensResponse], error) {
	p, err := access.Require(ctx)
	if err != nil {
		return nil, err
	}
	toks, err := h.store.ListAPITokens(ctx, p.User.ID)
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "list API tokens", err)
	}
	resp := &apiv1.ListApiTokensResponse{}
	for _, t := range toks {
		resp.ApiTokens = append(resp.ApiTokens, apiTokenToProto(t))
	}
	return connect.NewResponse(resp), nil
}

// RevokeApiToken revokes one of the caller's API tokens.
func (h *Handler) RevokeApiToken(ctx context.Context, req *connect.Request[apiv1.RevokeApiTokenRequest]) (*connect.Response[apiv1.RevokeApiTokenResponse], error) {
	p, err := access.Require(ctx)
	if err != nil {
		return nil, err
	}
	id := uuid.MustParse(req.Msg.Id) // validated as a UUID
	if err := h.store.RevokeAPIToken(ctx, p.User.ID, id); err != nil {
		return nil, rpcerr.From(ctx, h.logger, "revoke API token", err)
	}
	h.audit(ctx, &p.User, nil, "api_token.revoked", id.String(), nil)
	return connect.NewResponse(&apiv1.RevokeApiTokenResponse{}), nil
}

// audit appends to the audit log. A failure to write it is logged, not returned: the action itself has
// already happened and must be reported as it is.
func (h *Handler) audit(ctx context.Context, actor *store.User, teamID *uuid.UUID, action, target string, details map[string]string) {
	e := store.AuditEvent{Actor: "anonymous", TeamID: teamID, Action: action, Target: target, Details: details}
	if actor != nil {
		e.ActorID, e.Actor = &actor.ID, actor.Email
	}
	if err := h.store.Audit(ctx, e); err != nil {
		h.logger.ErrorContext(ctx, "write audit log", "action", action, "error", err)
	}
}

func userToProto(u store.User) *apiv1.User {
	role := apiv1.GlobalRole_GLOBAL_ROLE_USER
	if u.GlobalRole == store.RoleGlobalAdmin {
		role = apiv1.GlobalRole_GLOBAL_ROLE_ADMIN
	}
	return &apiv1.User{Id: u.ID.String(), Slug: u.Slug, Email: u.Email, Name: u.Name, GlobalRole: role,
		CreatedAt: timestamppb.New(u.CreatedAt)}
}

func teamRoleToProto(role string) apiv1.TeamRole {
	if role == store.RoleTeamAdmin {
		return apiv1.TeamRole_TEAM_ROLE_ADMIN
	}
	return apiv1.TeamRole_TEAM_ROLE_USER
}

func apiTokenToProto(t store.APIToken) *apiv1.ApiToken {
	return &apiv1.ApiToken{Id: t.ID.String(), Name: t.Name, CreatedAt: timestamppb.New(t.CreatedAt),
		ExpiresAt: optionalTime(t.ExpiresAt), LastUsedAt: optionalTime(t.LastUsedAt), RevokedAt: optionalTime(t.RevokedAt)}
}

func optionalTime(t *time.Time) *timestamppb.Timestamp {
	if t == nil {
		return nil
	}
	return timestamppb.New(*t)
}
