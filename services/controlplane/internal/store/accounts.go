package store

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/orrery/orrery/services/controlplane/internal/store/internal/dbsqlc"
)

// Global and team roles, as stored.
const (
	RoleGlobalAdmin = "global_admin"
	RoleGlobalUser  = "global_user"
	RoleTeamAdmin   = "team_admin"
	RoleTeamUser    = "team_user"
)

// NewAccount describes a user to create.
type NewAccount struct {
	Email        string
	Name         string
	PasswordHash string // empty for a user who signs in only with API tokens
	GlobalRole   string
}

// Login is what signing in needs to know of a user.
type Login struct {
	User
	PasswordHash string
	LockedUntil  *time.Time
}

// Membership is a user's place in one team.
type Membership struct {
	Team
	Role string
}

// APIToken describes a personal API token; only its hash is stored.
type APIToken struct {
	ID         uuid.UUID
	UserID     uuid.UUID
	Name       string
	CreatedAt  time.Time
	ExpiresAt  *time.Time
	LastUsedAt *time.Time
	RevokedAt  *time.Time
}

func userFromRow(r dbsqlc.User) User {
	return User{ID: r.ID, Slug: r.Slug, Email: r.Email, Name: r.Name, GlobalRole: r.GlobalRole, CreatedAt: r.CreatedAt}
}

var slugUnsafe = regexp.MustCompile(`[^a-z0-9-]+`)

// slugBase turns an email's local part into the start of a slug.
func slugBase(email string) string {
	local, _, _ := strings.Cut(strings.ToLower(email), "@")
	s := strings.Trim(slugUnsafe.ReplaceAllString(local, "-"), "-")
	if len(s) > 40 {
		s = strings.Trim(s[:40], "-")
	}
	if s == "" {
		s = "user"
	}
	return s
}

// CreateAccount creates a user, a personal team of the same slug with the user as its owner and admin, and
// returns both. The slug comes from the email, with a number appended when taken.
func (s *Store) CreateAccount(ctx context.Context, a NewAccount) (User, Team, error) {
	var user User
	var team Team
	err := s.inTx(ctx, func(q *dbsqlc.Queries) error {
		base := slugBase(a.Email)
		slug := base
		for n := 2; ; n++ {
			taken, err := q.SlugTaken(ctx, slug)
			if err != nil {
				return translate(err, "check slug")
			}
			if !taken {
				break
			}
			slug = fmt.Sprintf("%s-%d", base, n)
		}
		var hash *string
		if a.PasswordHash != "" {
			hash = &a.PasswordHash
		}
		u, err := q.CreateAccount(ctx, dbsqlc.CreateAccountParams{
			Slug: slug, Email: a.Email, Name: a.Name, PasswordHash: hash, GlobalRole: a.GlobalRole,
		})
		if err != nil {
			return translate(err, "create user")
		}
		user = userFromRow(u)
		t, err := q.CreatePersonalTeam(ctx, slug, personalTeamName(a), &u.ID)
		if err != nil {
			return translate(err, "create personal team")
		}
		team = teamFromRow(t)
		if err := s.placeNewTeam(ctx, q, t.ID); err != nil {
			return err
		}
		return translate(q.AddMembership(ctx, t.ID, u.ID, RoleTeamAdmin), "add membership")
	})
	return user, team, err
}

func personalTeamName(a NewAccount) string {
	if a.Name != "" {
		return a.Name + "'s team"
	}
	return a.Email + "'s team"
}

// CountGlobalAdmins counts the users who are global admins.
func (s *Store) CountGlobalAdmins(ctx context.Context) (int64, error) {
	n, err := s.q.CountGlobalAdmins(ctx)
	return n, translate(err, "count global admins")
}

// LoginByEmail returns what signing in needs of the user with that email, matched case-insensitively.
func (s *Store) LoginByEmail(ctx context.Context, email string) (Login, error) {
	u, err := s.q.GetUserByEmail(ctx, email)
	return loginFromRow(u, err)
}

// LoginByID is LoginByEmail by user id.
func (s *Store) LoginByID(ctx context.Context, id uuid.UUID) (Login, error) {
	u, err := s.q.GetUser(ctx, id)
	return loginFromRow(u, err)
}

func loginFromRow(u dbsqlc.User, err error) (Login, error) {
	if err != nil {
		return Login{}, translate(err, "get user")
	}
	l := Login{User: userFromRow(u), LockedUntil: u.LockedUntil}
	if u.PasswordHash != nil {
		l.PasswordHash = *u.PasswordHash
	}
	return l, nil
}

// RecordFailedLogin counts a failed sign-in and, at maxFailures in a row, locks the account for lockFor. It
// returns the end of the lock, if one began.
func (s *Store) RecordFailedLogin(ctx context.Context, userID uuid.UUID, maxFailures int, lockFor time.Duration) (*time.Time, error) {
	r, err := s.q.RecordFailedLogin(ctx, int32(maxFailures), lockFor.Seconds(), userID)
	if err != nil {
		return nil, translate(err, "record failed login")
	}
	return r.LockedUntil, nil
}

// RecordSuccessfulLogin clears the failure count.
func (s *Store) RecordSuccessfulLogin(ctx context.Context, userID uuid.UUID) error {
	return translate(s.q.RecordSuccessfulLogin(ctx, userID), "record login")
}

// SetPassword replaces a user's password hash and clears any lock.
func (s *Store) SetPassword(ctx context.Context, userID uuid.UUID, hash string) error {
	n, err := s.q.SetPassword(ctx, &hash, userID)
	return rowsAffected(n, err, "set password")
}

// CreateSession stores a browser session by its token hash.
func (s *Store) CreateSession(ctx context.Context, tokenHash []byte, userID uuid.UUID, expiresAt time.Time) (uuid.UUID, error) {
	r, err := s.q.CreateSession(ctx, tokenHash, userID, expiresAt)
	if err != nil {
		return uuid.Nil, translate(err, "create session")
	}
	return r.ID, nil
}

// SessionUser returns the user of a live session and the session's id.
func (s *Store) SessionUser(ctx context.Context, tokenHash []byte) (User, uuid.UUID, error) {
	r, err := s.q.GetSessionUser(ctx, tokenHash)
	if err != nil {
		return User{}, uuid.Nil, translate(err, "get session")
	}
	return User{ID: r.ID, Slug: r.Slug, Email: r.Email, Name: r.Name, GlobalRole: r.GlobalRole, CreatedAt: r.CreatedAt},
		r.SessionID, nil
}

// DeleteSession ends a session.
func (s *Store) DeleteSession(ctx context.Context, id uuid.UUID) error {
	return translate(s.q.DeleteSession(ctx, id), "delete session")
}

// DeleteOtherSessions ends every session of a user except keep, when given.
func (s *Store) DeleteOtherSessions(ctx context.Context, userID uuid.UUID, keep *uuid.UUID) error {
	return translate(s.q.DeleteOtherSessions(ctx, userID, keep), "delete sessions")
}

// CreateAPIToken stores a personal API token by its hash.
func (s *Store) CreateAPIToken(ctx context.Context, tokenHash []byte, userID uuid.UUID, name string, expiresAt *time.Time) (APIToken, error) {
	r, err := s.q.CreateAPIToken(ctx, tokenHash, userID, name, expiresAt)
	if err != nil {
		return APIToken{}, translate(err, "create API token")
	}
	return apiTokenFromRow(r), nil
}

func apiTokenFromRow(r dbsqlc.ApiToken) APIToken {
	return APIToken{ID: r.ID, UserID: r.UserID, Name: r.Name, CreatedAt: r.CreatedAt, ExpiresAt: r.ExpiresAt,
		LastUsedAt: r.LastUsedAt, RevokedAt: r.RevokedAt}
}

// APITokenUser returns the user of a live API token and the token's id, noting the use to the minute.
func (s *Store) APITokenUser(ctx context.Context, tokenHash []byte) (User, uuid.UUID, error) {
	r, err := s.q.GetAPITokenUser(ctx, tokenHash)
	if err != nil {
		return User{}, uuid.Nil, translate(err, "get API token")
	}
	// Writing on every call would turn each read into a write; to the minute is what a user needs to see.
	if r.TokenLastUsedAt == nil || time.Since(*r.TokenLastUsedAt) > time.Minute {
		if err := s.q.TouchAPIToken(ctx, r.TokenID); err != nil {
			return User{}, uuid.Nil, translate(err, "note API token use")
		}
	}
	return User{ID: r.ID, Slug: r.Slug, Email: r.Email, Name: r.Name, GlobalRole: r.GlobalRole, CreatedAt: r.CreatedAt},
		r.TokenID, nil
}

// ListAPITokens lists a user's tokens, newest first.
func (s *Store) ListAPITokens(ctx context.Context, userID uuid.UUID) ([]APIToken, error) {
	rows, err := s.q.ListAPITokens(ctx, userID)
	if err != nil {
		return nil, translate(err, "list API tokens")
	}
	out := make([]APIToken, len(rows))
	for i, r := range rows {
		out[i] = apiTokenFromRow(r)
	}
	return out, nil
}

// RevokeAPIToken revokes one of a user's tokens; another user's token is ErrNotFound.
func (s *Store) RevokeAPIToken(ctx context.Context, userID, id uuid.UUID) error {
	n, err := s.q.RevokeAPIToken(ctx, id, userID)
	return rowsAffected(n, err, "revoke API token")
}

// TeamRole returns a user's role in a team, or ErrNotFound when they are not a member.
func (s *Store) TeamRole(ctx context.Context, teamID, userID uuid.UUID) (string, error) {
	role, err := s.q.GetTeamRole(ctx, teamID, userID)
	return role, translate(err, "get team role")
}

// Memberships lists a user's teams by slug.
func (s *Store) Memberships(ctx context.Context, userID uuid.UUID) ([]Membership, error) {
	rows, err := s.q.ListMemberships(ctx, userID)
	if err != nil {
		return nil, translate(err, "list memberships")
	}
	out := make([]Membership, len(rows))
	for i, r := range rows {
		out[i] = Membership{Team: Team{ID: r.ID, Slug: r.Slug, Name: r.Name, Personal: r.Personal}, Role: r.Role}
	}
	return out, nil
}

// ListUsers returns up to limit users after cursor, oldest first.
func (s *Store) ListUsers(ctx context.Context, after *Cursor, limit int) ([]User, error) {
	var at time.Time
	var id uuid.UUID
	if after != nil {
		at, id = after.CreatedAt, after.ID
	}
	rows, err := s.q.ListUsers(ctx, at, id, int32(limit))
	if err != nil {
		return nil, translate(err, "list users")
	}
	out := make([]User, len(rows))
	for i, r := range rows {
		out[i] = userFromRow(r)
	}
	return out, nil
}

// SetGlobalRole changes a user's global role. Demoting the last global admin is ErrConflict.
func (s *Store) SetGlobalRole(ctx context.Context, userID uuid.UUID, role string) error {
	return s.inTx(ctx, func(q *dbsqlc.Queries) error {
		// Serialises concurrent demotions, so two admins cannot demote each other into having none.
		if err := q.LockGlobalAdmins(ctx); err != nil {
			return translate(err, "lock global admins")
		}
		n, err := q.SetGlobalRole(ctx, role, userID)
		if err := rowsAffected(n, err, "set global role"); err != nil {
			return err
		}
		admins, err := q.CountGlobalAdmins(ctx)
		if err != nil {
			return translate(err, "count global admins")
		}
		if admins == 0 {
			return fmt.Errorf("set global role: %w: no global admin would remain", ErrConflict)
		}
		return nil
	})
}

// rowsAffected turns an update that touched nothing into ErrNotFound.
func rowsAffected(n int64, err error, what string) error {
	if err != nil {
		return translate(err, what)
	}
	if n == 0 {
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	return nil
}
