package store

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// TestTranslateUnavailable tells a database that is down or refusing work from one that refuses the
// statement, and from a caller who gave up.
func TestTranslateUnavailable(t *testing.T) {
	t.Parallel()
	// A real connection failure: nothing listens on a port just closed.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, connectErr := pgconn.Connect(t.Context(), "postgres://orrery@"+addr+"/orrery?connect_timeout=5")
	if connectErr == nil {
		t.Fatal("connected to a closed port")
	}
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"connect refused", connectErr, ErrUnavailable},
		{"admin shutdown", &pgconn.PgError{Code: "57P01"}, ErrUnavailable},
		{"crash shutdown", &pgconn.PgError{Code: "57P02"}, ErrUnavailable},
		{"cannot connect now", &pgconn.PgError{Code: "57P03"}, ErrUnavailable},
		{"too many connections", &pgconn.PgError{Code: "53300"}, ErrUnavailable},
		{"connection failure", &pgconn.PgError{Code: "08006"}, ErrUnavailable},
		{"unique violation", &pgconn.PgError{Code: "23505"}, ErrAlreadyExists},
		{"no rows", pgx.ErrNoRows, ErrNotFound},
		{"syntax error", &pgconn.PgError{Code: "42601"}, nil},
		{"caller gave up", fmt.Errorf("query: %w", context.Canceled), nil},
		{"caller's deadline", context.DeadlineExceeded, nil},
	} {
		got := translate(tc.err, "read")
		for _, domain := range []error{ErrUnavailable, ErrAlreadyExists, ErrNotFound} {
			if errors.Is(got, domain) != (domain == tc.want) {
				t.Errorf("%s: translated to %v, want %v", tc.name, got, tc.want)
			}
		}
		// The original stays for the logs.
		if (tc.want == ErrUnavailable || tc.want == nil) && !errors.Is(got, tc.err) {
			t.Errorf("%s: %v lost the original error", tc.name, got)
		}
	}
	if got := markUnavailable(translate(connectErr, "read")); strings.Count(got.Error(), ErrUnavailable.Error()) != 1 {
		t.Errorf("marked twice: %v", got)
	}
}
