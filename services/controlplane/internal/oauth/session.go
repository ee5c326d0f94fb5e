package oauth

import (
	"maps"
	"time"

	"github.com/ory/fosite"
)

// Session is what a grant carries besides its scopes and audience: who it acts for and in which team, and
// when each of its tokens expires.
type Session struct {
	// UserID is the user the grant acts for; for client-credentials grants, the client's service user.
	UserID string `json:"user_id"`
	// UserSlug names the user for introspection.
	UserSlug string `json:"user_slug,omitempty"`
	// TeamID is the team every token of the grant is confined to.
	TeamID string `json:"team_id"`
	// TeamSlug names the team for introspection.
	TeamSlug string `json:"team_slug"`
	// AuthTime is when the user consented: refreshing never carries the grant past AuthTime plus
	// Config.GrantMaxAge. Zero in grants from before it was kept, whose clock starts at their next refresh.
	AuthTime  time.Time                      `json:"auth_time,omitzero"`
	ExpiresAt map[fosite.TokenType]time.Time `json:"expires_at,omitempty"`
}

var _ fosite.Session = (*Session)(nil)

// SetExpiresAt implements fosite.Session.
func (s *Session) SetExpiresAt(key fosite.TokenType, exp time.Time) {
	if s.ExpiresAt == nil {
		s.ExpiresAt = map[fosite.TokenType]time.Time{}
	}
	s.ExpiresAt[key] = exp
}

// GetExpiresAt implements fosite.Session.
func (s *Session) GetExpiresAt(key fosite.TokenType) time.Time {
	return s.ExpiresAt[key]
}

// GetUsername implements fosite.Session.
func (s *Session) GetUsername() string { return s.UserSlug }

// GetSubject implements fosite.Session.
func (s *Session) GetSubject() string { return s.UserID }

// Clone implements fosite.Session.
func (s *Session) Clone() fosite.Session {
	if s == nil {
		return nil
	}
	c := *s
	c.ExpiresAt = maps.Clone(s.ExpiresAt)
	return &c
}
