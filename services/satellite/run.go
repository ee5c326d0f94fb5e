package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/orrery/orrery/services/satellite/internal/backend"
	"github.com/orrery/orrery/services/satellite/internal/backoff"
	"github.com/orrery/orrery/services/satellite/internal/desired"
	"github.com/orrery/orrery/services/satellite/internal/events"
	"github.com/orrery/orrery/services/satellite/internal/identity"
	"github.com/orrery/orrery/services/satellite/internal/server"
	"github.com/orrery/orrery/services/satellite/internal/sysmetrics"
)

// run wires the satellite together and runs it until ctx is done (returning nil) or something fails for
// good, such as the control plane refusing the satellite's API key.
func run(ctx context.Context, cfg Config, logger *slog.Logger) error {
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return err
	}
	policy := backoff.Policy{Min: cfg.BackoffMin, Max: cfg.BackoffMax}

	ln := cfg.listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", cfg.Listen); err != nil {
			return fmt.Errorf("listen for HTTP: %w", err)
		}
	}
	// Whatever happens below, the listener is closed: by Shutdown once serving, else here.
	defer ln.Close()
	if cfg.PublicURL == "" {
		cfg.PublicURL = publicURLFor(ln.Addr().String())
	}

	store := identity.NewStore(cfg.StateDir)
	view := desired.New()
	comm, err := backend.New(logger.With("component", "backend"), backend.Config{
		URL:               cfg.ControlPlaneURL,
		RegistrationToken: cfg.RegistrationToken,
		Name:              cfg.Name,
		Version:           cfg.Version,
		PublicURL:         cfg.PublicURL,
		Identity:          store,
		Desired:           view,
		Metrics:           sysmetrics.New(cfg.StateDir),
		HeartbeatInterval: cfg.HeartbeatInterval,
		PollWait:          cfg.PollWait,
		PollInterval:      cfg.PollInterval,
		RequestTimeout:    cfg.RequestTimeout,
		Backoff:           policy,
		CommandHistory:    cfg.CommandHistory,
	})
	if err != nil {
		return err
	}
	// The MCP runtime will emit its status, log and lifecycle events through this batcher and act on the
	// desired view; until it exists, the batcher stays empty.
	batcher := events.New(logger.With("component", "events"), comm.Client(), events.Config{
		FlushDelay: cfg.EventFlushDelay,
		MaxBatch:   cfg.EventBatchSize,
		BufferSize: cfg.EventBufferSize,
		Backoff:    policy,
	})

	httpServer := &http.Server{
		Handler:           server.New(comm.Ready),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- httpServer.Serve(ln) }()
	logger.InfoContext(ctx, "satellite starting", slog.String("version", cfg.Version), slog.String("name", cfg.Name),
		slog.String("control_plane", cfg.ControlPlaneURL), slog.String("listen", ln.Addr().String()),
		slog.String("public_url", cfg.PublicURL), slog.String("state_dir", cfg.StateDir))

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- comm.Run(ctx) }()
	select {
	case err = <-runErr:
	case err = <-serveErr:
		err = fmt.Errorf("serve HTTP: %w", err)
		cancel()
		<-runErr
	}
	cancel()

	shutdownCtx, cancelShutdown := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancelShutdown()
	if err := httpServer.Shutdown(shutdownCtx); err != nil {
		logger.WarnContext(shutdownCtx, "HTTP shutdown incomplete", slog.Any("error", err))
	}
	flushCtx := shutdownCtx
	if errors.Is(err, backend.ErrKeyRefused) {
		// The control plane would refuse the events too; do not make the operator wait for that.
		var cancelFlush context.CancelFunc
		flushCtx, cancelFlush = context.WithCancel(shutdownCtx)
		cancelFlush()
	}
	if err := batcher.Close(flushCtx); err != nil {
		logger.WarnContext(shutdownCtx, "events lost at shutdown", slog.Any("error", err))
	}
	if err == nil {
		logger.InfoContext(shutdownCtx, "satellite stopped")
	}
	return err
}
