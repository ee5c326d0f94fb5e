// Package pgtest gives each test a database of its own on a real PostgreSQL server, migrated to the current
// schema and empty, so tests run in parallel without seeing each other's rows.
//
// With ORRERY_TEST_DATABASE_URL set (a URL or keyword/value string for a role that may create databases), the
// databases are made on that server. Otherwise the first test that asks starts a private server with pglocal,
// installing PostgreSQL with apt-get when running as root on a machine without it; a test fails rather than
// skips when no server can be had, so a green run always means the database tests ran.
//
// The schema is migrated once per test process into a template database, and every test database is a copy of
// it (CREATE DATABASE ... TEMPLATE), which is cheaper than migrating and stays cheap as migrations accumulate.
//
// The databases of a test process carry a random id that its admin connection announces as its application_name
// for as long as the process lives. A later process drops databases whose id no connection announces any more,
// so a killed run leaves nothing behind on a shared server for long.
//
// The private server dies with the test process. No hook runs at process exit, so its directory (typically 50 to
// 100 MB) stays in the temporary directory until the next test process that starts a private server removes it:
// a little disk traded for not needing a TestMain in every package.
//
//	func TestCreateTeam(t *testing.T) {
//		t.Parallel()
//		pool := pgtest.NewPool(t)
//		...
//	}
package pgtest

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orrery/orrery/internal/filelock"
	"github.com/orrery/orrery/internal/pglocal"
	"github.com/orrery/orrery/sql/migrations"
)

// URLEnv names the environment variable that points the tests at an existing server.
const URLEnv = "ORRERY_TEST_DATABASE_URL"

const (
	// namePrefix marks the databases that pgtest creates and may drop. split_part in dropOrphans counts on it
	// holding exactly two underscores.
	namePrefix = "orrery_test_"
	// appPrefix, followed by a process's id, is the application_name that keeps its databases alive.
	appPrefix = "orrery-pgtest-"
	// tempPrefix marks the directories of private servers.
	tempPrefix = "orrery-pgtest-"
	// setupTimeout allows for installing PostgreSQL on a new machine.
	setupTimeout = 10 * time.Minute
	// opTimeout bounds creating or dropping one database.
	opTimeout = time.Minute
)

// NewDatabase returns the URL of a fresh, fully migrated, empty database for this test, dropped at cleanup.
func NewDatabase(t testing.TB) string {
	t.Helper()
	s := shared(t)
	name, err := s.create()
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		if err := s.drop(name); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return withDatabase(s.baseURL, name)
}

// NewPool is NewDatabase plus a *pgxpool.Pool closed at cleanup.
func NewPool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), NewDatabase(t))
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	// Registered after the drop, so it runs before it.
	t.Cleanup(pool.Close)
	return pool
}

// server is the per-process state: one server, one template, one admin connection.
type server struct {
	err     error
	baseURL string
	// id tells this process's databases apart from those of other processes, even on other machines where pids
	// repeat.
	id       uint64
	template string
	// strategy is appended to CREATE DATABASE.
	strategy string
	// cluster is kept only so that it lives as long as the process.
	cluster *pglocal.Cluster

	mu    sync.Mutex // serializes use of admin, and with it every CREATE DATABASE
	admin *pgx.Conn
	n     int
}

var (
	setupOnce sync.Once
	srv       server
)

func shared(t testing.TB) *server {
	t.Helper()
	setupOnce.Do(func() { srv.err = srv.setup() })
	if srv.err != nil {
		t.Fatalf("pgtest: %v", srv.err)
	}
	return &srv
}

func (s *server) setup() error {
	// Not a test's context: the server outlives the test that happened to start it.
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	s.baseURL = os.Getenv(URLEnv)
	if s.baseURL == "" {
		if err := s.startPrivate(ctx); err != nil {
			return fmt.Errorf("start a private PostgreSQL server: %w\n(tests read %s, not ORRERY_DATABASE_URL: "+
				"point it at a server where this user may create databases to use that instead)", err, URLEnv)
		}
	}
	s.id = rand.Uint64()
	cfg, err := pgx.ParseConfig(s.baseURL)
	if err != nil {
		return fmt.Errorf("parse connection string: %w", err)
	}
	cfg.RuntimeParams["application_name"] = fmt.Sprintf("%s%016x", appPrefix, s.id)
	admin, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	s.admin = admin
	var version int
	if err := admin.QueryRow(ctx, "select current_setting('server_version_num')::int").Scan(&version); err != nil {
		return fmt.Errorf("server version: %w", err)
	}
	// From PostgreSQL 15 on, CREATE DATABASE copies through the WAL by default, which is slower for a small
	// template and writes all of it to the WAL; the older file copy suits throwaway databases.
	if version >= 150000 {
		s.strategy = " strategy file_copy"
	}
	s.dropOrphans(ctx)
	s.template = s.name("template")
	if _, err := admin.Exec(ctx, "create database "+ident(s.template)); err != nil {
		return fmt.Errorf("create template: %w", err)
	}
	conn, err := pgx.Connect(ctx, withDatabase(s.baseURL, s.template))
	if err != nil {
		return fmt.Errorf("connect to template: %w", err)
	}
	err = migrations.Apply(ctx, conn)
	if closeErr := conn.Close(ctx); err == nil {
		err = closeErr
	}
	if err != nil {
		return fmt.Errorf("migrate template: %w", err)
	}
	// CREATE DATABASE ... TEMPLATE fails while anyone is connected to the template, so one stray connection
	// would fail every test of the process.
	if _, err := admin.Exec(ctx, "alter database "+ident(s.template)+" allow_connections false"); err != nil {
		return fmt.Errorf("close template: %w", err)
	}
	return nil
}

// startPrivate starts a server in a new directory that holds a lock file for as long as this process lives, and
// first removes the directories of earlier processes that no longer hold theirs.
func (s *server) startPrivate(ctx context.Context) error {
	dir, err := filelock.ProcessDir(tempPrefix)
	if err != nil {
		return err
	}
	// The postgres user, which runs the server when we are root, must pass through to the data directory.
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	s.cluster, err = pglocal.Start(ctx, pglocal.Config{
		DataDir:        filepath.Join(dir, "data"),
		Logger:         log.With(slog.String("package", "pgtest")),
		InstallMissing: true,
		Throwaway:      true,
	})
	if err != nil {
		return err
	}
	s.baseURL = s.cluster.URL("postgres")
	return nil
}

// dropOrphans drops databases left by test processes that died before their cleanups ran: those whose id no
// connection announces any more. pg_stat_activity covers the whole server and shows every role's
// application_name. Failures are ignored: a leftover costs disk, not correctness.
func (s *server) dropOrphans(ctx context.Context) {
	// Only the exact shape of our names matches, so that a database someone merely called orrery_test_x survives.
	rows, err := s.admin.Query(ctx, `
		select d.datname from pg_database d
		where d.datname ~ ('^' || $1 || '[0-9a-f]{16}_[0-9]+_') and not exists (
			select from pg_stat_activity a where a.application_name = $2 || split_part(d.datname, '_', 3))`,
		namePrefix, appPrefix)
	if err != nil {
		return
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return
	}
	for _, name := range names {
		_, _ = s.admin.Exec(ctx, "drop database if exists "+ident(name)+" with (force)")
	}
}

// name builds a database name unique among all processes using the server. The id comes third, where
// dropOrphans looks for it; the pid helps a human find the process.
func (s *server) name(suffix string) string {
	return fmt.Sprintf("%s%016x_%d_%s", namePrefix, s.id, os.Getpid(), suffix)
}

func (s *server) create() (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	name := s.name(strconv.Itoa(s.n))
	// Not the test's context: cancelling a query would close the connection that all tests share.
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	_, err := s.admin.Exec(ctx, "create database "+ident(name)+" template "+ident(s.template)+s.strategy)
	if err != nil {
		return "", fmt.Errorf("create database: %w", err)
	}
	return name, nil
}

func (s *server) drop(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if _, err := s.admin.Exec(ctx, "drop database if exists "+ident(name)+" with (force)"); err != nil {
		return fmt.Errorf("drop database %s: %w", name, err)
	}
	return nil
}

// ident quotes a database name for DDL, which takes no parameters.
func ident(name string) string {
	return pgx.Identifier{name}.Sanitize()
}

// withDatabase points a connection string at another database, in either of the forms pgx accepts.
func withDatabase(connString, database string) string {
	if !strings.HasPrefix(connString, "postgres://") && !strings.HasPrefix(connString, "postgresql://") {
		// In keyword/value form the last setting wins.
		return connString + " dbname=" + database
	}
	u, err := url.Parse(connString)
	if err != nil {
		// pgx will report the malformed URL.
		return connString
	}
	u.Path, u.RawPath = "/"+database, ""
	if q := u.Query(); q.Has("dbname") {
		q.Del("dbname")
		u.RawQuery = q.Encode()
	}
	return u.String()
}
