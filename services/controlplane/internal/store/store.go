// Package store is the control plane's PostgreSQL access. It wraps the sqlc-generated queries, returns domain
// types, and translates database errors into the errors below in one place, so nothing from pgx or sqlc leaks
// to callers.
package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orrery/orrery/services/controlplane/internal/secrets"
	"github.com/orrery/orrery/services/controlplane/internal/store/internal/dbsqlc"
)

// Domain errors. Handlers map them to Connect codes.
var (
	ErrNotFound      = errors.New("not found")
	ErrAlreadyExists = errors.New("already exists")
	ErrConflict      = errors.New("conflicts with stored data")
)

// CommandChannel is the PostgreSQL notification channel on which new commands are announced; the payload is
// the satellite id.
const CommandChannel = "orrery_commands"

// EventChannel is the PostgreSQL notification channel on which stored status changes, server logs and
// request logs are announced; the payload is a StreamKey.
const EventChannel = "orrery_instance_events"

// Store reads and writes the control plane's data.
type Store struct {
	pool    *pgxpool.Pool
	q       *dbsqlc.Queries
	keyring *secrets.Keyring
}

// New returns a Store over pool. keyring seals and opens installation secrets.
func New(pool *pgxpool.Pool, keyring *secrets.Keyring) *Store {
	return &Store{pool: pool, q: dbsqlc.New(pool), keyring: keyring}
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	return s.pool.Ping(ctx)
}

// inTx runs fn in a transaction, committing when it returns nil.
func (s *Store) inTx(ctx context.Context, fn func(q *dbsqlc.Queries) error) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		return fn(s.q.WithTx(tx))
	})
}

// translate turns database errors into domain errors, keeping the original for logs.
func translate(err error, what string) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "23505": // unique_violation
			return fmt.Errorf("%s: %w", what, ErrAlreadyExists)
		case "23503", "23514": // foreign_key_violation, check_violation
			return fmt.Errorf("%s: %w (%s)", what, ErrConflict, pgErr.ConstraintName)
		}
	}
	return fmt.Errorf("%s: %w", what, err)
}
