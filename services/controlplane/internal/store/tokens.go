package store

import (
	"context"
	"time"

	"github.com/google/uuid"

	"github.com/orrery/orrery/services/controlplane/internal/store/internal/dbsqlc"
)

// RegistrationToken is the stored record of a registration token. The token's secret form is never stored:
// it is signed, and this row only makes it single-use and revocable.
type RegistrationToken struct {
	ID          uuid.UUID
	Name        string
	Scope       Scope
	TeamID      *uuid.UUID
	ExpiresAt   time.Time
	CreatedAt   time.Time
	ConsumedAt  *time.Time
	SatelliteID *uuid.UUID
	RevokedAt   *time.Time
}

func tokenFromRow(r dbsqlc.RegistrationToken) RegistrationToken {
	return RegistrationToken{
		ID: r.ID, Name: r.Name, Scope: Scope(r.Scope), TeamID: r.TeamID, ExpiresAt: r.ExpiresAt, CreatedAt: r.CreatedAt,
		ConsumedAt: r.ConsumedAt, SatelliteID: r.SatelliteID, RevokedAt: r.RevokedAt,
	}
}

// CreateRegistrationToken stores a new token record.
func (s *Store) CreateRegistrationToken(ctx context.Context, t RegistrationToken) (RegistrationToken, error) {
	row, err := s.q.CreateRegistrationToken(ctx, dbsqlc.CreateRegistrationTokenParams{
		ID: t.ID, Name: t.Name, Scope: string(t.Scope), TeamID: t.TeamID, ExpiresAt: t.ExpiresAt,
	})
	if err != nil {
		return RegistrationToken{}, translate(err, "create registration token")
	}
	return tokenFromRow(row), nil
}

// ListRegistrationTokens returns up to limit tokens before cursor, newest first: one team's, or all when teamID is nil.
func (s *Store) ListRegistrationTokens(ctx context.Context, teamID *uuid.UUID, before *Cursor, limit int) ([]RegistrationToken, error) {
	at, id := cursorArgs(before)
	rows, err := s.q.ListRegistrationTokens(ctx, teamID, at, id, int32(limit))
	if err != nil {
		return nil, translate(err, "list registration tokens")
	}
	toks := make([]RegistrationToken, len(rows))
	for i, r := range rows {
		toks[i] = tokenFromRow(r)
	}
	return toks, nil
}

// RevokeRegistrationToken makes a token unusable; with teamID, only a token of that team. Revoking twice keeps the first revocation time.
func (s *Store) RevokeRegistrationToken(ctx context.Context, id uuid.UUID, teamID *uuid.UUID) (RegistrationToken, error) {
	row, err := s.q.RevokeRegistrationToken(ctx, id, teamID)
	if err != nil {
		return RegistrationToken{}, translate(err, "revoke registration token")
	}
	return tokenFromRow(row), nil
}
