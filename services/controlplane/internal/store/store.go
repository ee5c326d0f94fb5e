// Package store is the control plane's PostgreSQL access. It wraps the sqlc-generated queries, returns domain
// types, and translates database errors into the errors below in one place, so nothing from pgx or sqlc leaks
// to callers.
package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"

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
	// ErrUnavailable reports that the database could not be reached or is refusing work for now (down,
	// restarting, out of connections): nothing is wrong with the request, and it may succeed when retried.
	ErrUnavailable = errors.New("database unavailable")
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
	// placementGrace is SetPlacementGrace's duration in nanoseconds; zero means the default.
	placementGrace atomic.Int64
}

// New returns a Store over pool. keyring seals and opens installation secrets.
func New(pool *pgxpool.Pool, keyring *secrets.Keyring) *Store {
	return &Store{pool: pool, q: dbsqlc.New(pool), keyring: keyring}
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	return markUnavailable(s.pool.Ping(ctx))
}

// inTx runs fn in a transaction, committing when it returns nil.
func (s *Store) inTx(ctx context.Context, fn func(q *dbsqlc.Queries) error) error {
	// fn's own errors are translated inside; beginning and committing can fail for want of a connection.
	return markUnavailable(pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		return fn(s.q.WithTx(tx))
	}))
}

// translate turns database errors into domain errors, keeping the original for logs.
func translate(err error, what string) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	if unavailable(err) {
		return fmt.Errorf("%s: %w: %w", what, ErrUnavailable, err)
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

// markUnavailable wraps err in ErrUnavailable when it is a failure of the database rather than of the
// statement, and returns every other error as it is.
func markUnavailable(err error) error {
	if err == nil || errors.Is(err, ErrUnavailable) || !unavailable(err) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// unavailable reports whether err says the database cannot be reached or is not accepting work for now, as
// opposed to refusing this statement or the caller having given up.
func unavailable(err error) bool {
	// Failing to connect, for whatever reason (refused, timed out while the pool acquired a connection,
	// the database not accepting connections, authentication with the server), is never the caller's fault.
	if ce := new(pgconn.ConnectError); errors.As(err, &ce) {
		return true
	}
	// A caller who gave up is answered as one who gave up (pgconn also counts a context already done as
	// safe to retry).
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if pgErr := new(pgconn.PgError); errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "57P01", "57P02", "57P03", // admin_shutdown, crash_shutdown, cannot_connect_now
			"53300": // too_many_connections
			return true
		}
		return strings.HasPrefix(pgErr.Code, "08") // connection_exception
	}
	// Nothing reached the server, or the connection broke under the statement.
	var netErr net.Error
	return pgconn.SafeToRetry(err) || errors.As(err, &netErr) || errors.Is(err, io.ErrUnexpectedEOF)
}
