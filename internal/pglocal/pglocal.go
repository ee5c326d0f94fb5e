// Package pglocal runs a private PostgreSQL server from the PostgreSQL binaries installed on the machine, for tests
// and local development where no database server is configured.
//
// The server listens only on a Unix socket in a directory of its own, so any number of clusters run side by side
// without port collisions. It is durable by default: what it acknowledged survives a crash of the Go process, of
// the server or of the machine. Config.Throwaway trades that for speed in test clusters whose data nobody keeps.
// The server is a child process that the kernel stops when the Go process exits, even without Stop, so a killed
// test run leaves no server behind (Linux only; elsewhere an abandoned server keeps running until killed).
//
// PostgreSQL refuses to run as root. When the Go process runs as root, pglocal runs the server as the postgres
// system user (created if missing) and hands it the data directory, which that user must be able to reach: every
// parent directory must be searchable by others. t.TempDir() is not (its parent is private to root), so make data
// directories with os.MkdirTemp.
//
// Usage:
//
//	dir, err := os.MkdirTemp("", "orrery-db-")
//	...
//	cluster, err := pglocal.Start(ctx, pglocal.Config{DataDir: dir, InstallMissing: true})
//	...
//	defer cluster.Stop()
//	conn, err := pgx.Connect(ctx, cluster.URL("postgres"))
package pglocal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Config says where a cluster lives and how Start may prepare the machine for it.
type Config struct {
	// DataDir is the cluster directory. Start creates it and runs initdb when it is missing or empty, and reuses
	// the cluster in it otherwise, so data survives Stop and Start. Only one Cluster may use a DataDir at a time.
	// Required.
	DataDir string
	// Logger receives progress messages and, at debug level, every line the server and the installer print.
	// Nil discards them.
	Logger *slog.Logger
	// InstallMissing lets Start install the postgresql Debian package with apt-get when no PostgreSQL binaries
	// are found and the process runs as root. Without it, or when not root, Start fails with instructions instead.
	InstallMissing bool
	// Throwaway turns fsync, synchronous_commit and full_page_writes off, so a crash of the machine (or of the
	// server, for synchronous_commit) may lose acknowledged writes. Only for test databases.
	Throwaway bool
}

// Cluster is a running PostgreSQL server. Its only role is postgres, a superuser that needs no password.
type Cluster struct {
	log       *slog.Logger
	dataDir   string
	socketDir string
	// ownSocketDir is set when socketDir is a temporary directory that Stop removes.
	ownSocketDir bool
	serverLog    *lineLogger

	proc *os.Process
	// done is closed when the server has exited; waitErr is then its exit status.
	done    chan struct{}
	waitErr error

	stopOnce sync.Once
	stopErr  error
}

// port only names the socket file: the server opens no TCP port.
const port = 5432

const (
	// readyTimeout bounds how long Start waits for a started server to accept connections.
	readyTimeout = 30 * time.Second
	// pollInterval is short because a fresh cluster is usually ready within 100 ms.
	pollInterval = 20 * time.Millisecond
	// stopTimeout bounds the fast shutdown before Stop falls back to an immediate one.
	stopTimeout = 30 * time.Second
	// maxSocketPath keeps the socket path clear of the 108-byte limit of a Unix socket address.
	maxSocketPath = 100
)

// Start finds (or installs) the PostgreSQL binaries, initializes cfg.DataDir when needed, starts the server and
// returns once it accepts connections. ctx bounds the start only; the server runs until Stop or until the Go
// process exits.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.DataDir == "" {
		return nil, errors.New("pglocal: Config.DataDir is required")
	}
	dataDir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("pglocal: data dir: %w", err)
	}
	bin, err := findOrInstall(ctx, log, cfg.InstallMissing)
	if err != nil {
		return nil, err
	}
	owner, err := serverOwner(ctx, log)
	if err != nil {
		return nil, fmt.Errorf("pglocal: %w", err)
	}
	initialized, err := prepareDataDir(dataDir, owner)
	if err != nil {
		return nil, fmt.Errorf("pglocal: %w", err)
	}
	if !initialized {
		if err := initdb(ctx, log, bin, dataDir, owner, cfg.Throwaway); err != nil {
			return nil, fmt.Errorf("pglocal: %w", err)
		}
	}
	c := &Cluster{log: log, dataDir: dataDir, socketDir: dataDir, done: make(chan struct{})}
	if len(dataDir)+len(socketName()) >= maxSocketPath {
		if err := c.makeSocketDir(owner); err != nil {
			return nil, fmt.Errorf("pglocal: %w", err)
		}
	}
	if err := removeStaleLock(log, dataDir, c.socketDir); err != nil {
		c.removeSocketDir()
		return nil, fmt.Errorf("pglocal: %w", err)
	}
	if err := c.start(bin, owner, cfg.Throwaway); err != nil {
		c.removeSocketDir()
		return nil, fmt.Errorf("pglocal: %w", err)
	}
	if err := c.waitReady(ctx); err != nil {
		_ = c.kill()
		return nil, fmt.Errorf("pglocal: %w", err)
	}
	log.DebugContext(ctx, "postgres ready", slog.String("data_dir", dataDir), slog.String("socket_dir", c.socketDir),
		slog.Int("pid", c.proc.Pid))
	return c, nil
}

// URL returns a pgx connection URL for database on this cluster, as user postgres over the Unix socket.
func (c *Cluster) URL(database string) string {
	q := url.Values{"host": {c.socketDir}, "port": {strconv.Itoa(port)}, "sslmode": {"disable"}}
	u := url.URL{Scheme: "postgres", User: url.User("postgres"), Path: "/" + database,
		// A raw slash is valid in a query and keeps the socket path readable in logs.
		RawQuery: strings.ReplaceAll(q.Encode(), "%2F", "/")}
	return u.String()
}

// Stop shuts the server down fast (open transactions roll back, clients are disconnected) and waits for it to
// exit. It returns an error when the server had already exited on its own. Calling Stop again returns the
// first result.
func (c *Cluster) Stop() error {
	c.stopOnce.Do(func() { c.stopErr = c.stop() })
	return c.stopErr
}

func (c *Cluster) stop() error {
	defer c.removeSocketDir()
	select {
	case <-c.done:
		return fmt.Errorf("pglocal: postgres had exited: %v\n%s", c.waitErr, c.serverLog.tail())
	default:
	}
	// SIGINT is PostgreSQL's fast shutdown.
	if err := c.proc.Signal(syscall.SIGINT); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("pglocal: stop postgres: %w", err)
	}
	select {
	case <-c.done:
	case <-time.After(stopTimeout):
		c.log.Warn("postgres did not stop in time; shutting down immediately", slog.Duration("waited", stopTimeout))
		if err := c.kill(); err != nil {
			return err
		}
	}
	if c.waitErr != nil {
		return fmt.Errorf("pglocal: postgres exited: %v\n%s", c.waitErr, c.serverLog.tail())
	}
	return nil
}

// kill shuts the server down immediately (SIGQUIT) and waits for it.
func (c *Cluster) kill() error {
	defer c.removeSocketDir()
	if err := c.proc.Signal(syscall.SIGQUIT); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("pglocal: kill postgres: %w", err)
	}
	<-c.done
	return nil
}

// makeSocketDir puts the socket in a short directory under /tmp because dataDir is too long for a socket path.
func (c *Cluster) makeSocketDir(owner *account) error {
	dir, err := os.MkdirTemp("/tmp", "pglocal-")
	if err != nil {
		return fmt.Errorf("socket dir: %w", err)
	}
	c.socketDir, c.ownSocketDir = dir, true
	if owner != nil {
		if err := os.Chown(dir, owner.uid, owner.gid); err != nil {
			c.removeSocketDir()
			return fmt.Errorf("socket dir: %w", err)
		}
	}
	return nil
}

func (c *Cluster) removeSocketDir() {
	if c.ownSocketDir {
		_ = os.RemoveAll(c.socketDir)
	}
}

func socketName() string {
	return "/.s.PGSQL." + strconv.Itoa(port)
}

// start launches postgres as a direct child rather than through pg_ctl, whose daemonized server would outlive us.
func (c *Cluster) start(bin binaries, owner *account, throwaway bool) error {
	c.serverLog = newLineLogger(c.log, "postgres")
	args := []string{
		"-D", c.dataDir,
		"-k", c.socketDir,
		"-p", strconv.Itoa(port),
		"-c", "listen_addresses=",
		"-c", "max_connections=300",
	}
	if throwaway {
		args = append(args, "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	} else {
		// Stated rather than left to defaults, so a postgresql.auto.conf someone edited cannot weaken them.
		args = append(args, "-c", "fsync=on", "-c", "synchronous_commit=on", "-c", "full_page_writes=on")
	}
	cmd := exec.Command(bin.postgres, args...)
	cmd.Dir = "/" // the caller's working directory may be closed to the postgres user
	cmd.Env = serverEnv()
	cmd.Stdout = c.serverLog
	cmd.Stderr = c.serverLog
	// Server children inherit the log pipe; do not let a straggler hold up Wait forever.
	cmd.WaitDelay = 5 * time.Second
	cmd.SysProcAttr = serverProcAttr(owner)

	started := make(chan error, 1)
	go func() {
		// The kernel sends the parent-death signal when the thread that forked the server exits, not when the
		// process does, and the Go runtime may retire threads. Forking and waiting on a locked thread keeps that
		// thread alive exactly as long as the server.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- fmt.Errorf("start postgres: %w", err)
			return
		}
		c.proc = cmd.Process
		started <- nil
		c.waitErr = cmd.Wait()
		close(c.done)
	}()
	return <-started
}

// waitReady polls with real connections because only a successful login proves the server finished recovery
// and opened its socket.
func (c *Cluster) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		attemptCtx, attemptCancel := context.WithTimeout(ctx, time.Second)
		conn, err := pgx.Connect(attemptCtx, c.URL("postgres"))
		attemptCancel()
		if err == nil {
			return conn.Close(ctx)
		}
		select {
		case <-c.done:
			return fmt.Errorf("postgres exited during startup (%v); server log:\n%s", c.waitErr, c.serverLog.tail())
		case <-ctx.Done():
			return fmt.Errorf("postgres did not accept connections: %w (%v); server log:\n%s",
				err, context.Cause(ctx), c.serverLog.tail())
		case <-tick.C:
		}
	}
}

// serverEnv drops libpq variables such as PGPORT and PGDATA, which would override what Start chose.
func serverEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	return env
}
