package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	mcpsdk "github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/internal/filelock"
	"github.com/orrery/orrery/services/satellite/internal/backend"
	"github.com/orrery/orrery/services/satellite/internal/backoff"
	"github.com/orrery/orrery/services/satellite/internal/build"
	"github.com/orrery/orrery/services/satellite/internal/desired"
	"github.com/orrery/orrery/services/satellite/internal/events"
	"github.com/orrery/orrery/services/satellite/internal/gateway"
	"github.com/orrery/orrery/services/satellite/internal/identity"
	"github.com/orrery/orrery/services/satellite/internal/mcpruntime"
	"github.com/orrery/orrery/services/satellite/internal/pool"
	"github.com/orrery/orrery/services/satellite/internal/selfupdate"
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
	metricsLn, err := listenMetrics(cfg)
	if err != nil {
		return err
	}
	if metricsLn != nil {
		defer metricsLn.Close()
	}
	internalLn, err := listenInternal(cfg)
	if err != nil {
		return err
	}
	if internalLn != nil {
		defer internalLn.Close()
		if cfg.InternalURL == "" {
			cfg.InternalURL = publicURLFor(internalLn.Addr().String())
		}
	} else {
		cfg.InternalURL = ""
	}
	gwRef := &gatewayRef{}
	// The pool refreshes the configuration through the communicator, built after it.
	var commRef *backend.Communicator
	pl, err := pool.New(logger.With("component", "pool"), pool.Config{
		Local:        gwRef,
		Capacity:     uint32(cfg.Capacity),
		InternalURL:  cfg.InternalURL,
		MaxBodyBytes: gateway.DefaultMaxBodyBytes,
		Resync: func(ctx context.Context) error {
			if commRef == nil {
				return nil
			}
			return commRef.SyncConfiguration(ctx)
		},
	})
	if err != nil {
		return err
	}
	registry := prometheus.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	stateDir, err := filepath.Abs(cfg.StateDir)
	if err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	unlock, err := lockStateDir(stateDir)
	if err != nil {
		return err
	}
	defer unlock()
	// Probed before anything talks to the control plane, so heartbeats report the isolation from the first.
	driver, isolation, err := openSandbox(ctx, logger.With("component", "sandbox"), cfg, stateDir)
	if err != nil {
		return err
	}
	store := identity.NewStore(cfg.StateDir)
	view := desired.New()
	// The event batcher sends through the communicator's client and the MCP runtime emits through the
	// batcher, so the communicator meets the runtime and the gateway through these, filled in before it runs.
	rtRef := &runtimeRef{}
	handlers := &backend.Handlers{}
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
		Commands:          handlers,
		Processes:         rtRef,
		Isolation:         isolationOf(isolation),
		Prometheus:        registry,
		Pool:              pl,
		CheckIdentity: func(id identity.Identity) error {
			if id.TeamID == "" {
				pl.SetSelf(id.SatelliteID)
			}
			requireLimits(driver, id, cfg.Dev)
			return checkIsolation(ctx, logger, id, isolation, cfg.Dev)
		},
	})
	if err != nil {
		return err
	}
	commRef = comm
	batcher, err := events.New(logger.With("component", "events"), comm.Client(), events.Config{
		Dir:        stateDir,
		FlushDelay: cfg.EventFlushDelay,
		MaxBatch:   cfg.EventBatchSize,
		BufferSize: cfg.EventBufferSize,
		Backoff:    policy,
	})
	if err != nil {
		return err
	}
	// Progress, log messages and requests from servers are routed by the gateway, which needs the runtime
	// in turn: the hooks read gw, which is set before the runtime runs.
	var gw *gateway.Gateway
	// Source archives download under the policy remote servers are dialed with, and build in the sandbox
	// their servers run in; builds are cached in the state directory, beside the homes.
	builds, err := build.New(logger.With("component", "build"), build.Config{
		Dir:        filepath.Join(stateDir, "builds"),
		HTTPClient: &http.Client{Transport: egressPolicy(cfg).Transport()},
		Driver:     driver,
		Uploaded:   comm.SourceArchive,
	})
	if err != nil {
		return err
	}
	rtRef.rt, err = mcpruntime.New(logger.With("component", "mcp"), mcpruntime.Config{
		Builds: builds,
		OnProgress: func(ctx context.Context, req *mcpsdk.ProgressNotificationClientRequest) {
			gw.HandleProgress(ctx, req)
		},
		ClientMiddleware: func(next mcpsdk.MethodHandler) mcpsdk.MethodHandler {
			return func(ctx context.Context, method string, req mcpsdk.Request) (mcpsdk.Result, error) {
				return gw.ClientMiddleware(next)(ctx, method, req)
			}
		},
		ClientCapabilities: gateway.ClientCapabilities(),
		Desired:            view,
		Events:             batcher,
		Driver:             driver,
		WorkDir:            filepath.Join(stateDir, "instances"),
		HTTPClient:         &http.Client{Transport: egressPolicy(cfg).Transport()},
		ClientInfo:         &mcpsdk.Implementation{Name: "orrery-satellite", Version: cfg.Version},
		IdleTimeout:        cfg.MCPIdleTimeout,
		StopGrace:          cfg.MCPStopGrace,
		// Beside the instances' working directories, not in them: a server must not write what the
		// endpoint lists for it after a restart.
		CatalogDir:          filepath.Join(stateDir, "catalogs"),
		MaxConcurrentStarts: cfg.MCPMaxConcurrentStarts,
		StartJitter:         cfg.MCPStartJitter,
		CallStartWait:       cfg.MCPCallStartWait,
	})
	if err != nil {
		_ = batcher.Close(ctx)
		return err
	}

	gw, err = gateway.New(logger.With("component", "gateway"), gateway.Config{
		PublicURL:           cfg.PublicURL,
		AuthorizationServer: cfg.AuthorizationServer,
		Backend:             runtimeBackend{rt: rtRef.rt},
		Introspector:        gateway.ServiceIntrospector{Client: comm.Client()},
		Events:              batcher,
		Version:             cfg.Version,
		CacheTTL:            cfg.TokenCacheTTL,
		SessionIdleTimeout:  cfg.MCPSessionIdleTimeout,
		MaxSessionsPerUser:  cfg.MCPMaxSessionsPerUser,
		MaxSessionsPerTeam:  cfg.MCPMaxSessionsPerTeam,
		MaxSessions:         cfg.MCPMaxSessions,
		AllowedHosts:        cfg.MCPAllowedHosts,
		Metrics:             registry,
		Forwarder:           pl,
		NewSessionID:        pl.NewSessionID,
		// main installed the provider telemetry configured, a no-op without a collector.
		TracerProvider: otel.GetTracerProvider(),
	})
	if err != nil {
		_ = batcher.Close(ctx)
		return err
	}
	gwRef.gw = gw
	handlers.Reconciler, handlers.Instances, handlers.Tokens, handlers.Policies = rtRef.rt, rtRef.rt, gw, gw
	updater, err := selfupdate.New(logger.With("component", "selfupdate"), selfupdate.Config{
		Keys:           cfg.ReleaseKeys,
		Version:        cfg.Version,
		StateDir:       stateDir,
		HealthyTimeout: cfg.UpdateTimeout,
		Download:       comm,
	})
	if err != nil {
		_ = batcher.Close(ctx)
		return err
	}
	updater.Inherit(cfg.inherited.Confirm, cfg.inherited.WatchdogPID)
	updater.SetReporter(comm)
	handlers.Updater = updater
	registry.MustRegister(rtRef.rt.Collector(), batcher.Collector())
	// Ready once the configuration is fetched and every instance has tools to list, discovered or kept
	// from the last run: only then does a new session see the team's tools.
	ready := func() error {
		if err := comm.Ready(); err != nil {
			return err
		}
		return rtRef.rt.Ready()
	}
	routes := server.New(ready)
	for _, pattern := range gateway.Patterns() {
		routes.Handle(pattern, pl.Public())
	}
	httpServer := &http.Server{
		Handler:           routes,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	serveErr := make(chan error, 2)
	go func() {
		if cfg.inherited.Listener != nil {
			// Restarted by an update on the previous process's socket: clients wait in its backlog until
			// this process knows its configuration and tools, rather than meet an endpoint without them.
			waitReady(ctx, logger, ready, cfg.UpdateReadyWait)
		}
		serveErr <- httpServer.Serve(ln)
	}()
	metricsServer := &http.Server{
		Handler:           metricsHandler(registry, logger),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	internalServer := &http.Server{
		Handler:           pl.Internal(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	if internalLn != nil {
		go func() { serveErr <- internalServer.Serve(internalLn) }()
	}
	metricsAddr := metricsOff
	if metricsLn != nil {
		metricsAddr = metricsLn.Addr().String()
		go func() { serveErr <- metricsServer.Serve(metricsLn) }()
	}
	logger.InfoContext(ctx, "satellite starting", slog.String("version", cfg.Version), slog.String("name", cfg.Name),
		slog.String("control_plane", cfg.ControlPlaneURL), slog.String("listen", ln.Addr().String()), slog.String("metrics_listen", metricsAddr),
		slog.String("public_url", cfg.PublicURL), slog.String("state_dir", cfg.StateDir), slog.String("sandbox", string(isolation)))

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	mcpDone := make(chan error, 1)
	go func() { mcpDone <- rtRef.rt.Run(ctx) }()
	poolDone := make(chan error, 1)
	go func() { poolDone <- pl.Run(ctx, comm.Client()) }()
	changes, unsubscribe := view.Subscribe()
	defer unsubscribe()
	janitor := &pool.HomeJanitor{
		Members: func() []pool.Member {
			var out []pool.Member
			for _, in := range view.Snapshot().Instances {
				if in.GetTeamId() != "" && in.GetUserId() != "" {
					out = append(out, pool.Member{TeamID: in.GetTeamId(), UserID: in.GetUserId()})
				}
			}
			return out
		},
		Changes: changes,
		Forget:  rtRef.rt.ForgetMember,
		Grace:   cfg.HomeGrace,
		Logger:  logger.With("component", "homes"),
	}
	janitorDone := make(chan error, 1)
	go func() { janitorDone <- janitor.Run(ctx) }()
	gatewayDone := make(chan error, 1)
	go func() { gatewayDone <- gw.Run(ctx) }()
	runErr := make(chan error, 1)
	go func() { runErr <- comm.Run(ctx) }()
	var restart *selfupdate.Restart
	select {
	case err = <-runErr:
	case err = <-serveErr:
		err = fmt.Errorf("serve HTTP: %w", err)
		cancel()
		<-runErr
	case restart = <-updater.Restarts():
		err = drainForRestart(ctx, logger, restart, ln, httpServer, cfg.ShutdownTimeout)
		cancel()
		<-runErr
	}
	cancel()
	// The runtime stops every server process before it returns, and its last status events go out with the
	// batcher's final flush below.
	if mcpErr := <-mcpDone; mcpErr != nil {
		logger.ErrorContext(ctx, "MCP runtime failed", slog.Any("error", mcpErr))
	}
	<-poolDone
	<-janitorDone
	if gwErr := <-gatewayDone; gwErr != nil {
		logger.ErrorContext(ctx, "MCP endpoint failed", slog.Any("error", gwErr))
	}

	shutdownCtx, cancelShutdown := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancelShutdown()
	if err := httpServer.Shutdown(shutdownCtx); err != nil {
		logger.WarnContext(shutdownCtx, "HTTP shutdown incomplete", slog.Any("error", err))
	}
	if err := internalServer.Shutdown(shutdownCtx); err != nil {
		logger.WarnContext(shutdownCtx, "internal HTTP shutdown incomplete", slog.Any("error", err))
	}
	// A scrape takes milliseconds; nothing is lost by cutting one short.
	_ = metricsServer.Close()
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
	if err == nil && restart != nil {
		logger.InfoContext(shutdownCtx, "satellite stopped for the update")
		return restart
	}
	if err == nil {
		logger.InfoContext(shutdownCtx, "satellite stopped")
	}
	return err
}

// waitReady returns once ready reports nil, ctx ends or limit passes.
func waitReady(ctx context.Context, logger *slog.Logger, ready func() error, limit time.Duration) {
	start := time.Now()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for ready() != nil && time.Since(start) < limit {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
	logger.InfoContext(ctx, "serving on the socket handed over by the update", slog.Duration("waited", time.Since(start)),
		slog.Bool("ready", ready() == nil))
}

// drainForRestart keeps the listening socket for the next process, stops accepting, and lets in-flight
// requests finish before the MCP servers stop, so that no call in progress is cut. Streams held open (an
// MCP client's GET stream) are closed after the drain window; their clients reconnect to the new process.
func drainForRestart(ctx context.Context, logger *slog.Logger, restart *selfupdate.Restart, ln net.Listener, srv *http.Server, window time.Duration) error {
	if err := restart.KeepListener(ln); err != nil {
		logger.WarnContext(ctx, "the listening socket cannot be handed over; clients are refused while the new version starts", slog.Any("error", err))
	}
	drainCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), min(window, 5*time.Second))
	defer cancel()
	started := time.Now()
	if err := srv.Shutdown(drainCtx); err != nil {
		_ = srv.Close()
	}
	logger.InfoContext(ctx, "HTTP requests drained for the update", slog.Duration("took", time.Since(started)))
	return nil
}

// listenMetrics opens the metrics listener, or returns nil when metrics are off.
// listenInternal opens the pool's internal listener, or returns nil when the satellite has none.
func listenInternal(cfg Config) (net.Listener, error) {
	if cfg.internalListener != nil {
		return cfg.internalListener, nil
	}
	if cfg.InternalListen == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", cfg.InternalListen)
	if err != nil {
		return nil, fmt.Errorf("listen for the pool's internal channel: %w (set ORRERY_INTERNAL_LISTEN to another address)", err)
	}
	return ln, nil
}

// gatewayRef shows the gateway to the pool, which is built before it.
type gatewayRef struct{ gw *gateway.Gateway }

func (r *gatewayRef) ServeHTTP(w http.ResponseWriter, req *http.Request) { r.gw.ServeHTTP(w, req) }
func (r *gatewayRef) SetPoolURL(u string) {
	if r.gw != nil {
		r.gw.SetPoolURL(u)
	}
}
func (r *gatewayRef) ForgetTokens() {
	if r.gw != nil {
		r.gw.ForgetTokens()
	}
}

func (r *gatewayRef) OpenSessions() int {
	if r.gw == nil {
		return 0
	}
	return r.gw.OpenSessions()
}

func listenMetrics(cfg Config) (net.Listener, error) {
	if cfg.metricsListener != nil {
		return cfg.metricsListener, nil
	}
	if cfg.MetricsListen == metricsOff {
		return nil, nil
	}
	ln, err := net.Listen("tcp", cfg.MetricsListen)
	if err != nil {
		return nil, fmt.Errorf("listen for metrics: %w (set ORRERY_METRICS_LISTEN to another address, or to %q)", err, metricsOff)
	}
	return ln, nil
}

// metricsHandler serves the registry's metrics at /metrics and nothing else.
func metricsHandler(registry *prometheus.Registry, logger *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{
		ErrorLog:            slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		MaxRequestsInFlight: 4,
	}))
	return mux
}

// runtimeRef hands the communicator's heartbeat questions to the MCP runtime, which is created after the
// communicator.
type runtimeRef struct {
	rt *mcpruntime.Runtime
}

func (r *runtimeRef) Processes() []*satellitev1.ProcessReport { return r.rt.Processes() }

// lockStateDir claims the state directory for this process. Two satellites on one directory would share an
// identity and each take the other's sandboxed servers for leftovers of a crash.
func lockStateDir(dir string) (unlock func(), err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	unlock, err = filelock.TryLock(filepath.Join(dir, "satellite.lock"))
	if errors.Is(err, filelock.ErrLocked) {
		return nil, fmt.Errorf("state directory %s is in use by another satellite process; give each satellite its own (ORRERY_STATE_DIR)", dir)
	}
	if err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	return unlock, nil
}
