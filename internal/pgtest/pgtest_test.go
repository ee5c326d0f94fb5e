package pgtest

import (
	"context"
	"os"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

func countTeams(t *testing.T, pool *pgxpool.Pool) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(t.Context(), "select count(*) from teams").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestDatabasesAreMigratedAndIndependent(t *testing.T) {
	t.Parallel()
	a, b := NewPool(t), NewPool(t)
	if n := countTeams(t, a); n != 0 {
		t.Fatalf("new database has %d teams, want 0", n)
	}
	if _, err := a.Exec(t.Context(), "insert into teams (slug, name) values ('ops', 'Ops')"); err != nil {
		t.Fatal(err)
	}
	if n := countTeams(t, a); n != 1 {
		t.Fatalf("database a has %d teams after insert, want 1", n)
	}
	if n := countTeams(t, b); n != 0 {
		t.Fatalf("database b sees %d teams inserted into a, want 0", n)
	}
}

func TestDatabaseDroppedAtCleanup(t *testing.T) {
	t.Parallel()
	var url string
	t.Run("use", func(t *testing.T) {
		url = NewDatabase(t)
		conn, err := pgx.Connect(t.Context(), url)
		if err != nil {
			t.Fatal(err)
		}
		// Left open past the drop on purpose: a connection the test forgot must not block it.
		t.Cleanup(func() { _ = conn.Close(context.Background()) })
	})
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := pgx.Connect(t.Context(), srv.baseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	var exists bool
	err = admin.QueryRow(t.Context(), "select exists (select from pg_database where datname = $1)",
		cfg.Database).Scan(&exists)
	if err != nil {
		t.Fatal(err)
	}
	if exists {
		t.Fatalf("database %s still exists after its test ended", cfg.Database)
	}
}

func TestManyParallelDatabases(t *testing.T) {
	t.Parallel()
	for range 8 {
		t.Run("db", func(t *testing.T) {
			t.Parallel()
			if n := countTeams(t, NewPool(t)); n != 0 {
				t.Fatalf("new database has %d teams, want 0", n)
			}
		})
	}
}

func TestDropOrphans(t *testing.T) {
	t.Parallel()
	s := shared(t)
	// A database named like one from a process that has exited: no connection announces its id.
	name := (&server{id: s.id ^ 1}).name("1")
	// A database that merely shares the prefix.
	bystander := namePrefix + "bystander_" + strconv.Itoa(os.Getpid())
	exists := func(name string) bool {
		var ok bool
		err := s.admin.QueryRow(t.Context(), "select exists (select from pg_database where datname = $1)", name).Scan(&ok)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range []string{name, bystander} {
		if _, err := s.admin.Exec(t.Context(), "create database "+ident(n)+" template "+ident(s.template)); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { _ = s.drop(bystander) })
	if !exists(name) {
		t.Fatalf("database %s was not created", name)
	}
	s.dropOrphans(t.Context())
	if exists(name) {
		t.Fatalf("orphan %s survived dropOrphans", name)
	}
	if !exists(s.template) {
		t.Fatalf("dropOrphans dropped %s of this live process", s.template)
	}
	if !exists(bystander) {
		t.Fatalf("dropOrphans dropped %s, which pgtest did not name", bystander)
	}
}

func TestWithDatabase(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"postgres://u:p@h:5/old?sslmode=disable", "postgres://u:p@h:5/new?sslmode=disable"},
		{"postgresql://u@/old?host=/tmp/s&port=5432", "postgresql://u@/new?host=/tmp/s&port=5432"},
		{"postgres://u@h/?dbname=old", "postgres://u@h/new"},
		{"host=h user=u dbname=old", "host=h user=u dbname=old dbname=new"},
	} {
		got := withDatabase(tc.in, "new")
		if got != tc.want {
			t.Errorf("withDatabase(%q) = %q, want %q", tc.in, got, tc.want)
		}
		cfg, err := pgx.ParseConfig(got)
		if err != nil {
			t.Errorf("parse %q: %v", got, err)
		} else if cfg.Database != "new" {
			t.Errorf("%q connects to %q, want new", got, cfg.Database)
		}
	}
}
