// Command controlplane runs an Orrery control-plane replica: the Connect APIs for satellites and
// administrators over PostgreSQL. With no database URL it runs a private PostgreSQL; with -dev it also
// generates its secrets and can run a satellite beside it, so one command starts a whole system.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"github.com/jackc/pgx/v5"

	"github.com/orrery/orrery/internal/buildinfo"
	"github.com/orrery/orrery/internal/logging"
	"github.com/orrery/orrery/internal/pglocal"
	"github.com/orrery/orrery/internal/telemetry"
	"github.com/orrery/orrery/services/controlplane/internal/alert"
	"github.com/orrery/orrery/services/controlplane/internal/placer"
	"github.com/orrery/orrery/services/controlplane/internal/remoteauth"
	"github.com/orrery/orrery/services/controlplane/internal/satelliteapi"
	"github.com/orrery/orrery/services/controlplane/internal/server"
	"github.com/orrery/orrery/services/controlplane/internal/sso"
)

func main() {
	cfg, err := loadConfig(os.Args[1:], os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "controlplane:", err)
		os.Exit(2)
	}
	logger, err := logging.New(os.Stderr, cfg.LogFormat, cfg.LogLevel)
	if err != nil {
		fmt.Fprintln(os.Stderr, "controlplane:", err)
		os.Exit(2)
	}
	// In a container with a memory limit, a soft limit of 90 % of it unless GOMEMLIMIT or AUTOMEMLIMIT say
	// otherwise: with a large fleet connected, the heap grows far past the live set between collections,
	// and the soft limit has the collector run before the container's limit kills the replica.
	_, _ = memlimit.Set(memlimit.WithLogger(logger))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	stopTracing, err := telemetry.Setup(ctx, "orrery-controlplane", buildinfo.Version())
	if err != nil {
		logger.Error("tracing", "error", err)
		os.Exit(1)
	}
	defer func() { _ = stopTracing(context.WithoutCancel(ctx)) }()
	if err := run(ctx, logger, cfg); err != nil {
		logger.Error("control plane stopped", "error", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, logger *slog.Logger, cfg config) error {
	signer, keyring, err := cfg.credentials()
	if err != nil {
		return err
	}
	if cfg.DatabaseURL == "" {
		url, stopPostgres, err := privateDatabase(ctx, logger, cfg.DataDir)
		if err != nil {
			return err
		}
		defer stopPostgres()
		cfg.DatabaseURL = url
	}
	// Listening comes first so that, with port 0, the OAuth issuer can default to the address bound.
	var ln net.Listener
	baseURL := "http://" + cfg.Listen
	if len(cfg.Command) == 0 {
		if ln, err = net.Listen("tcp", cfg.Listen); err != nil {
			return fmt.Errorf("listen: %w", err)
		}
		baseURL = "http://" + ln.Addr().String()
	}
	cfg.OAuth.Issuer = firstNonEmpty(cfg.Issuer, baseURL)
	srv, err := server.New(ctx, logger, server.Config{
		DatabaseURL: cfg.DatabaseURL, AdminToken: cfg.AdminToken, TokenSigner: signer, Keyring: keyring,
		OAuth: cfg.OAuth, TrustedProxies: cfg.TrustedProxies,
		TemplateCommands: &cfg.TemplateCommands, DrainPeriod: cfg.DrainPeriod,
		Alerts:         alert.Config{AllowPrivate: cfg.WebhooksAllowPrivate},
		RemoteAccounts: remoteauth.Config{AllowPrivate: cfg.RemoteAccountsAllowPrivate},
		SSO:            sso.Config{ResyncInterval: cfg.SSOResyncInterval},
		Satellites:     satelliteapi.Config{PoolURL: cfg.PoolURL},
		Placement:      placer.Config{Grace: cfg.PlacementGrace},
	})
	if err != nil {
		if ln != nil {
			ln.Close()
		}
		return err
	}
	defer srv.Close()
	if len(cfg.Command) > 0 {
		return runCommand(ctx, srv.Store(), cfg.Command, os.Stdin, os.Stdout)
	}
	logger.Info("control plane serving", "url", baseURL, "issuer", firstNonEmpty(cfg.Issuer, baseURL))

	// Serving outlasts ctx until what runs beside it has stopped, so that a development satellite's last
	// events still arrive.
	serveCtx, stopServing := context.WithCancel(context.WithoutCancel(ctx))
	defer stopServing()
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(serveCtx, ln, cfg.ShutdownTimeout) }()
	stopBeside := func() {}
	if cfg.DevSatellite != "" {
		satCtx, stopSatellite := context.WithCancel(ctx)
		sat, err := startDevSatellite(satCtx, logger, cfg, baseURL)
		if err != nil {
			stopSatellite()
			stopServing()
			return errors.Join(err, <-serveErr)
		}
		stopBeside = func() { stopSatellite(); sat.wait() }
		if err := createDevConsoleUser(ctx, cfg, baseURL); err != nil {
			logger.Error("the console's development user is missing", "error", err)
		}
		printDevSummary(cfg, baseURL, sat.url)
	}
	context.AfterFunc(ctx, func() {
		stopBeside()
		stopServing()
	})
	err = <-serveErr
	stopBeside() // serving may also end on its own
	return err
}

// privateDatabase starts the private PostgreSQL under dataDir and returns the URL of its orrery database.
func privateDatabase(ctx context.Context, logger *slog.Logger, dataDir string) (string, func(), error) {
	abs, err := filepath.Abs(filepath.Join(dataDir, "postgres"))
	if err != nil {
		return "", nil, err
	}
	logger.Info("no database URL configured: starting a private PostgreSQL", "data_dir", abs)
	cluster, err := pglocal.Start(ctx, pglocal.Config{DataDir: abs, Logger: logger, InstallMissing: true})
	if err != nil {
		return "", nil, fmt.Errorf("private PostgreSQL: %w", err)
	}
	stop := func() {
		if err := cluster.Stop(); err != nil {
			logger.Warn("stop private PostgreSQL", "error", err)
		}
	}
	if err := ensureDatabase(ctx, cluster.URL("postgres"), "orrery"); err != nil {
		stop()
		return "", nil, err
	}
	return cluster.URL("orrery"), stop, nil
}

func ensureDatabase(ctx context.Context, adminURL, name string) error {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("connect to private PostgreSQL: %w", err)
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, "select exists (select 1 from pg_database where datname = $1)", name).Scan(&exists); err != nil {
		return fmt.Errorf("look up database %s: %w", name, err)
	}
	if exists {
		return nil
	}
	if _, err := conn.Exec(ctx, "create database "+pgx.Identifier{name}.Sanitize()); err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}
