// Package server assembles the control plane: database, migrations, Connect services, health, metrics and
// the background work every replica runs.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"
	"connectrpc.com/otelconnect"
	"connectrpc.com/validate"
	"connectrpc.com/vanguard"
	"github.com/exaring/otelpgx"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/riverqueue/river"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/orrery/orrery/gen/orrery/admin/v1/adminv1connect"
	"github.com/orrery/orrery/gen/orrery/api/v1/apiv1connect"
	"github.com/orrery/orrery/gen/orrery/satellite/v1/satellitev1connect"
	"github.com/orrery/orrery/services/controlplane/internal/access"
	"github.com/orrery/orrery/services/controlplane/internal/accountapi"
	"github.com/orrery/orrery/services/controlplane/internal/adminapi"
	"github.com/orrery/orrery/services/controlplane/internal/admission"
	"github.com/orrery/orrery/services/controlplane/internal/alert"
	"github.com/orrery/orrery/services/controlplane/internal/alertapi"
	"github.com/orrery/orrery/services/controlplane/internal/bearer"
	"github.com/orrery/orrery/services/controlplane/internal/catalogapi"
	"github.com/orrery/orrery/services/controlplane/internal/console"
	"github.com/orrery/orrery/services/controlplane/internal/instanceapi"
	"github.com/orrery/orrery/services/controlplane/internal/maintenance"
	"github.com/orrery/orrery/services/controlplane/internal/notify"
	"github.com/orrery/orrery/services/controlplane/internal/oauth"
	"github.com/orrery/orrery/services/controlplane/internal/oauthapi"
	"github.com/orrery/orrery/services/controlplane/internal/openapi"
	"github.com/orrery/orrery/services/controlplane/internal/placer"
	"github.com/orrery/orrery/services/controlplane/internal/policyapi"
	"github.com/orrery/orrery/services/controlplane/internal/regtoken"
	"github.com/orrery/orrery/services/controlplane/internal/remoteauth"
	"github.com/orrery/orrery/services/controlplane/internal/reviewapi"
	"github.com/orrery/orrery/services/controlplane/internal/satelliteapi"
	"github.com/orrery/orrery/services/controlplane/internal/secrets"
	"github.com/orrery/orrery/services/controlplane/internal/sso"
	"github.com/orrery/orrery/services/controlplane/internal/store"
	"github.com/orrery/orrery/services/controlplane/internal/toolapi"
	"github.com/orrery/orrery/services/controlplane/internal/usageapi"
	"github.com/orrery/orrery/sql/migrations"
)

// Config is everything a control-plane replica needs.
type Config struct {
	// DatabaseURL locates PostgreSQL.
	DatabaseURL string
	// AdminToken bootstraps the first global admin: when no global admin exists at start-up, the user
	// admin@localhost is created as one, with this as a personal API token. Once a global admin exists it
	// is ignored; revoke that token like any other.
	AdminToken string
	// TokenSigner signs registration tokens; every replica needs the same key.
	TokenSigner *regtoken.Signer
	// Keyring seals installation secrets; every replica needs the same keys.
	Keyring *secrets.Keyring
	// Satellites tunes the satellite protocol; zero fields take its defaults.
	Satellites satelliteapi.Config
	// Accounts tunes sign-in; zero fields take its defaults.
	Accounts accountapi.Config
	// Instances tunes the status and log streams; zero fields take their defaults.
	Instances instanceapi.Config
	// OAuth configures the authorization server for MCP clients; its Issuer is required.
	OAuth oauth.Config
	// RemoteAccounts tunes how members connect their accounts at remote MCP servers; its CallbackURL
	// defaults to the issuer and remoteauth.CallbackPath.
	RemoteAccounts remoteauth.Config
	// SSO tunes sign-in through OpenID Connect providers; its BaseURL is the OAuth issuer.
	SSO sso.Config
	// TrustedProxies are the networks of the load balancers or reverse proxies in front of the replicas,
	// whose X-Forwarded-For names the client.
	TrustedProxies []netip.Prefix
	// TemplateCommands are the commands team-private stdio templates may run. Default (nil)
	// catalogapi.DefaultTemplateCommands; the zero CommandPolicy allows any.
	TemplateCommands *catalogapi.CommandPolicy
	// DrainPeriod is how long a replica told to stop keeps serving while /readyz fails, before it stops
	// accepting connections: time for load balancers that poll /readyz to send new requests elsewhere, so
	// none meets a refused connection. Default 0: stop at once.
	DrainPeriod time.Duration
	// BodyTimeout is how long a request's body may take to arrive. Default admission.DefaultBodyTimeout
	// (30 s).
	BodyTimeout time.Duration
	// Alerts tunes webhook delivery; zero fields take its defaults (public addresses only).
	Alerts alert.Config
	// Placement tunes where teams are placed on global satellites; zero fields take its defaults.
	Placement placer.Config
}

// Server is one control-plane replica.
type Server struct {
	logger     *slog.Logger
	pool       *pgxpool.Pool
	jobsPool   *pgxpool.Pool
	store      *store.Store
	hub        *notify.Hub
	events     *notify.Hub
	jobs       *river.Client[pgx.Tx]
	alerts     *alert.Alerter
	satellites *satelliteapi.Handler
	placer     *placer.Placer
	instances  *instanceapi.Handler
	signOn     *sso.Service
	gate       *admission.Gate
	handler    http.Handler

	drainPeriod time.Duration
	draining    atomic.Bool // set while the replica fails /readyz before it stops
}

// jobsPoolSize is the connections River's own pool may open: its notification listener holds one, and
// leader election, the producers of its two queues and job completion share the rest.
const jobsPoolSize = 4

// New connects to the database, applies migrations and builds the HTTP handler. Call Run for the
// background work and Close when done.
func New(ctx context.Context, logger *slog.Logger, cfg Config) (*Server, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.AdminToken == "" || cfg.TokenSigner == nil || cfg.Keyring == nil {
		return nil, errors.New("server config needs an admin token, a token signer and a keyring")
	}
	poolConfig, err := pgxpool.ParseConfig(cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("database URL: %w", err)
	}
	poolConfig.ConnConfig.Tracer = otelpgx.NewTracer()
	pool, err := pgxpool.NewWithConfig(ctx, poolConfig)
	if err != nil {
		return nil, fmt.Errorf("connect to database: %w", err)
	}
	s := &Server{logger: logger, pool: pool, store: store.New(pool, cfg.Keyring), drainPeriod: cfg.DrainPeriod}
	if err := s.migrate(ctx, cfg.AdminToken); err != nil {
		pool.Close()
		return nil, err
	}
	s.hub = notify.New(logger, pool, store.CommandChannel)
	if cfg.RemoteAccounts.CallbackURL == "" {
		cfg.RemoteAccounts.CallbackURL = strings.TrimRight(cfg.OAuth.Issuer, "/") + remoteauth.CallbackPath
	}
	remote, err := remoteauth.New(logger, s.store, cfg.RemoteAccounts)
	if err != nil {
		pool.Close()
		return nil, err
	}
	cfg.Satellites.AccountLink = remote.Link
	s.alerts = alert.New(logger, s.store, cfg.Alerts)
	cfg.Satellites.Alerts = s.alerts
	s.placer = placer.New(logger, s.store, cfg.Placement)
	s.store.SetPlacementGrace(s.placer.Grace())
	cfg.Satellites.Placement, cfg.Satellites.PlacementGrace = s.placer, s.placer.Grace()
	// Every replica derives the same key from the keyring, so any replica's signature verifies.
	if cfg.Satellites.PeerKeys, err = cfg.Keyring.DeriveSigningKeys("satellite pool"); err != nil {
		pool.Close()
		return nil, err
	}
	s.satellites = satelliteapi.New(logger, s.store, cfg.TokenSigner, s.hub, cfg.Satellites)
	s.events = notify.New(logger, pool, store.EventChannel)
	s.instances = instanceapi.New(logger, s.store, s.events, cfg.Instances)
	admin := adminapi.New(logger, s.store, cfg.TokenSigner, s.satellites.OfflineAfter(), s.placer)
	cfg.Accounts.PoolURL, cfg.Accounts.Placer = cfg.Satellites.PoolURL, s.placer
	accounts, err := accountapi.New(logger, s.store, cfg.Accounts)
	if err != nil {
		pool.Close()
		return nil, err
	}
	ssoCfg := cfg.SSO
	ssoCfg.BaseURL = cfg.OAuth.Issuer
	s.signOn, err = sso.New(logger, s.store, accounts, ssoCfg)
	if err != nil {
		pool.Close()
		return nil, err
	}
	// River's own work (leader election, fetching and completing jobs, its notification listener) runs on
	// connections of its own: a fleet of satellites reconnecting at once keeps every connection of the main
	// pool busy for seconds, and River gives up a leadership attempt after five.
	jobsConfig := poolConfig.Copy()
	jobsConfig.MaxConns = jobsPoolSize
	if s.jobsPool, err = pgxpool.NewWithConfig(ctx, jobsConfig); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to database: %w", err)
	}
	closePools := func() {
		pool.Close()
		s.jobsPool.Close()
	}
	if s.jobs, err = maintenance.NewClient(logger, s.jobsPool, s.store, s.satellites.OfflineAfter(), remote, s.alerts, s.signOn.Periodic, s.placer.Periodic); err != nil {
		closePools()
		return nil, err
	}
	oauthCfg := cfg.OAuth
	oauthCfg.PoolURL = cfg.Satellites.PoolURL
	oauthCfg.SignInOptions = s.signOn
	authServer, err := oauth.New(logger, s.store, accounts, oauthCfg)
	if err != nil {
		closePools()
		return nil, err
	}
	commands := cfg.TemplateCommands
	if commands == nil {
		defaults, err := catalogapi.NewCommandPolicy(catalogapi.DefaultTemplateCommands)
		if err != nil {
			closePools()
			return nil, err
		}
		commands = &defaults
	}
	handler, err := s.routes(admin, accounts, catalogapi.New(logger, s.store, *commands), authServer, remote, s.signOn, cfg.BodyTimeout)
	if err != nil {
		closePools()
		return nil, err
	}
	s.handler = trustProxies(cfg.TrustedProxies, s.gate.Handler(handler))
	return s, nil
}

// migrationLock serialises start-up migrations of replicas that start together.
const migrationLock = 0x6f72726572790001

// migrate applies Orrery's and River's migrations and bootstraps the first global admin while holding a
// session advisory lock, so replicas that start together do this one after another.
func (s *Server) migrate(ctx context.Context, adminToken string) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("connect to database: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "select pg_advisory_lock($1)", int64(migrationLock)); err != nil {
		return fmt.Errorf("take migration lock: %w", err)
	}
	defer func() {
		// Failing to unlock is harmless: the lock goes with the session when the pool closes the connection.
		_, _ = conn.Exec(context.WithoutCancel(ctx), "select pg_advisory_unlock($1)", int64(migrationLock))
	}()
	if err := migrations.Apply(ctx, conn.Conn()); err != nil {
		return fmt.Errorf("apply migrations: %w", err)
	}
	if err := maintenance.Migrate(ctx, s.pool); err != nil {
		return err
	}
	return s.bootstrapAdmin(ctx, adminToken)
}

// bootstrapAdmin creates the first global admin, with adminToken as their API token, unless one exists.
func (s *Server) bootstrapAdmin(ctx context.Context, adminToken string) error {
	admins, err := s.store.CountGlobalAdmins(ctx)
	if err != nil || admins > 0 {
		return err
	}
	user, _, err := s.store.CreateAccount(ctx, store.NewAccount{
		Email: "admin@localhost", Name: "Administrator", GlobalRole: store.RoleGlobalAdmin,
	})
	if err != nil {
		return fmt.Errorf("create the first global admin: %w", err)
	}
	if _, err := s.store.CreateAPIToken(ctx, bearer.Hash(adminToken), user.ID, "bootstrap admin token", nil); err != nil {
		return fmt.Errorf("create the first global admin's token: %w", err)
	}
	s.logger.InfoContext(ctx, "created the first global admin, admin@localhost, with the configured admin token")
	return s.store.Audit(ctx, store.AuditEvent{Actor: "system", Action: "user.bootstrap_admin", Target: user.ID.String()})
}

func (s *Server) routes(admin *adminapi.Handler, accounts *accountapi.Handler, catalog *catalogapi.Handler, authServer *oauth.Server, remote *remoteauth.Connector, signOn *sso.Service, bodyTimeout time.Duration) (http.Handler, error) {
	registry := prometheus.NewRegistry()
	registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "orrery_satellite_key_argon2_verifications_total",
			Help: "Satellite API-key checks that ran Argon2 because the verified-key cache could not answer.",
		}, func() float64 { return float64(s.satellites.Argon2Runs()) }),
	)
	exporter, err := otelprom.New(otelprom.WithRegisterer(registry))
	if err != nil {
		return nil, fmt.Errorf("create metrics exporter: %w", err)
	}
	otelInterceptor, err := otelconnect.NewInterceptor(
		otelconnect.WithMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))),
	)
	if err != nil {
		return nil, fmt.Errorf("create telemetry interceptor: %w", err)
	}
	interceptors := []connect.Interceptor{otelInterceptor, validate.NewInterceptor()}
	// Compressing the small messages of the satellite protocol costs more CPU than it saves bytes.
	compressMin := connect.WithCompressMinBytes(1024)

	// The gate authenticates callers from their headers and bounds every body before a handler reads it
	// (see package admission); the interceptors behind it take the caller it found.
	users := access.New(s.logger, s.store, access.APIPolicy, authServer.APIResource())
	signedIn := func(r *http.Request, _ string) (context.Context, error) {
		return users.Authenticate(r.Context(), r.Header)
	}
	s.gate, err = admission.New(s.logger, admission.Config{
		// Every REST route needs a signed-in caller (TestRESTRoutesNeedSignIn). The gate reads a REST body
		// before it knows the route's procedure, so it allows the largest limit of any; the procedure's own
		// limit applies to the message Vanguard makes of the body.
		RESTPrefix: restPrefix, REST: admission.Procedure{MaxBytes: restMaxBytes(), Authenticate: signedIn},
		BodyTimeout: bodyTimeout,
	})
	if err != nil {
		return nil, err
	}
	admitUsers := s.gate.Admit(func(procedure string) admission.Procedure {
		if access.APIPolicy[procedure] == access.Public {
			return admission.Procedure{MaxBytes: admission.MaxBytes(procedure)}
		}
		return admission.Procedure{MaxBytes: admission.MaxBytes(procedure), Authenticate: signedIn}
	})
	admitSatellites := s.gate.Admit(func(procedure string) admission.Procedure {
		p := admission.Procedure{MaxBytes: admission.MaxBytes(procedure)}
		if satelliteapi.NeedsKey(procedure) {
			p.Authenticate = func(r *http.Request, procedure string) (context.Context, error) {
				return s.satellites.Authenticate(r.Context(), procedure, r.Header, r.RemoteAddr)
			}
		}
		return p
	})
	admitAnyone := s.gate.Admit(func(procedure string) admission.Procedure {
		return admission.Procedure{MaxBytes: admission.AnonymousMaxBytes}
	})

	mux := http.NewServeMux()
	mux.Handle(satellitev1connect.NewSatelliteServiceHandler(s.satellites, compressMin, admitSatellites,
		connect.WithInterceptors(append(interceptors, s.satellites.Interceptor())...)))
	// The access policy runs before validation, so a caller learns nothing from validation errors about
	// requests they may not make.
	userAPI := connect.WithHandlerOptions(admitUsers,
		connect.WithInterceptors(otelInterceptor, users, validate.NewInterceptor()))
	// Each service of the user-facing API is served as Connect, gRPC and gRPC-Web at its own path and, for
	// the procedures with google.api.http rules, as REST under restPrefix: Vanguard transcodes those into
	// the same Connect handlers, interceptors included. Vanguard would inflate a compressed body whole
	// before checking its size, so the gate reads REST bodies itself and hands them on inflated within the
	// limit.
	var restServices []*vanguard.Service
	handleUserAPI := func(path string, handler http.Handler) {
		mux.Handle(path, handler)
		restServices = append(restServices, vanguard.NewService(path, handler))
	}
	handleUserAPI(adminv1connect.NewAdminServiceHandler(admin, userAPI))
	handleUserAPI(adminv1connect.NewSingleSignOnServiceHandler(signOn, userAPI))
	handleUserAPI(apiv1connect.NewAccountServiceHandler(accounts, userAPI))
	handleUserAPI(apiv1connect.NewUserServiceHandler(accounts, userAPI))
	handleUserAPI(apiv1connect.NewTeamServiceHandler(accounts, userAPI))
	handleUserAPI(apiv1connect.NewAuditServiceHandler(accounts, userAPI))
	handleUserAPI(apiv1connect.NewCatalogServiceHandler(catalog, userAPI))
	handleUserAPI(apiv1connect.NewInstallationServiceHandler(catalog, userAPI))
	handleUserAPI(apiv1connect.NewSecretServiceHandler(catalog, userAPI))
	handleUserAPI(apiv1connect.NewConfigHistoryServiceHandler(catalog, userAPI))
	handleUserAPI(apiv1connect.NewEmergencyStopServiceHandler(catalog, userAPI))
	handleUserAPI(apiv1connect.NewOAuthServiceHandler(oauthapi.New(s.logger, s.store, authServer), userAPI))
	handleUserAPI(apiv1connect.NewInstanceServiceHandler(s.instances, userAPI))
	handleUserAPI(apiv1connect.NewRemoteAccountServiceHandler(remoteauth.NewHandler(s.logger, remote), userAPI))
	handleUserAPI(apiv1connect.NewUsageServiceHandler(usageapi.New(s.logger, s.store, usageapi.Config{}), userAPI))
	handleUserAPI(apiv1connect.NewToolServiceHandler(toolapi.New(s.logger, s.store), userAPI))
	handleUserAPI(apiv1connect.NewPolicyServiceHandler(policyapi.New(s.logger, s.store), userAPI))
	handleUserAPI(apiv1connect.NewAlertServiceHandler(alertapi.New(s.logger, s.store, s.alerts), userAPI))
	handleUserAPI(apiv1connect.NewAccessReviewServiceHandler(reviewapi.New(s.logger, s.store), userAPI))
	rest, err := newREST(restServices)
	if err != nil {
		return nil, err
	}
	mux.Handle(restPrefix, rest)
	mux.Handle("GET /openapi.json", openapi.Handler())

	services := append([]string{satellitev1connect.SatelliteServiceName}, userAPIServices...)
	checker := grpchealth.NewStaticChecker(services...)
	mux.Handle(grpchealth.NewHandler(checker, admitAnyone))
	reflector := grpcreflect.NewStaticReflector(services...)
	mux.Handle(grpcreflect.NewHandlerV1(reflector, admitAnyone))
	mux.Handle(grpcreflect.NewHandlerV1Alpha(reflector, admitAnyone))

	authServer.Register(mux)
	mux.HandleFunc("GET "+remoteauth.CallbackPath, remote.ServeCallback)
	mux.HandleFunc("GET "+remoteauth.ConnectPath, remote.ServeConnect)
	signOn.Register(mux)

	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", s.ready)
	mux.Handle("GET /metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))
	// Every path no route above claims belongs to the console, a single-page app.
	mux.Handle("/", console.Handler())
	return mux, nil
}

// ready answers 200 when the database answers and command and event notifications are being received.
func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		http.Error(w, "draining: shutting down", http.StatusServiceUnavailable)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		http.Error(w, "database unreachable", http.StatusServiceUnavailable)
		return
	}
	if !s.hub.Listening() || !s.events.Listening() {
		http.Error(w, "not listening for notifications yet", http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ready")
}

// Handler serves every route of the replica.
func (s *Server) Handler() http.Handler { return s.handler }

// Procedures says how the replica admits requests to each procedure it serves: its read limit and
// whether the caller is authenticated before the body is read.
func (s *Server) Procedures() map[string]admission.Procedure { return s.gate.Procedures() }

// REST says how the replica admits requests to its REST routes, which it does before knowing their
// procedure.
func (s *Server) REST() admission.Procedure { return s.gate.REST() }

// Store is the replica's database access, for seeding data.
func (s *Server) Store() *store.Store { return s.store }

// SSO is the replica's single sign-on, whose periodic check tests run on demand.
func (s *Server) SSO() *sso.Service { return s.signOn }

// Run does the replica's background work until ctx ends: listening for notifications and the periodic jobs.
func (s *Server) Run(ctx context.Context) error {
	if err := s.jobs.Start(ctx); err != nil {
		return fmt.Errorf("start periodic jobs: %w", err)
	}
	eventsDone := make(chan error, 1)
	go func() { eventsDone <- s.events.Run(ctx) }()
	beatsDone := make(chan struct{})
	go func() { s.satellites.RunHeldHeartbeats(ctx); close(beatsDone) }()
	err := errors.Join(s.hub.Run(ctx), <-eventsDone)
	<-beatsDone
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	return errors.Join(err, s.jobs.Stop(stopCtx))
}

// Argon2Runs counts satellite API-key checks that ran Argon2.
func (s *Server) Argon2Runs() int64 { return s.satellites.Argon2Runs() }

// HeldHeartbeats counts satellite heartbeats held to be stored with others.
func (s *Server) HeldHeartbeats() int64 { return s.satellites.HeldHeartbeats() }

// Drain makes long polls answer and streams end at once, ahead of a shutdown.
func (s *Server) Drain() {
	s.satellites.Drain()
	s.instances.Drain()
}

// closeWhileDraining asks every client to close its connection after the response while the replica
// drains (HTTP/2: a graceful GOAWAY), so a client holding a connection open comes back through the load
// balancer, to another replica, instead of meeting this one's closed listener. Closing idle connections
// outright instead could race a request a proxy is just sending on one.
func (s *Server) closeWhileDraining(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.draining.Load() {
			w.Header().Set("Connection", "close")
		}
		next.ServeHTTP(w, r)
	})
}

// Close releases the database pools.
func (s *Server) Close() {
	s.pool.Close()
	s.jobsPool.Close()
}

// Serve runs a replica on ln until ctx ends, then shuts down gracefully: it drains for the configured
// period (/readyz fails, requests are still served), then stops accepting connections, answers long polls
// at once and lets in-flight requests finish within shutdownTimeout.
func (s *Server) Serve(ctx context.Context, ln net.Listener, shutdownTimeout time.Duration) error {
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true) // satellites and gRPC clients may speak h2c
	srv := &http.Server{
		Handler:           s.closeWhileDraining(s.handler),
		ReadHeaderTimeout: 10 * time.Second,
		Protocols:         protocols,
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	srv.RegisterOnShutdown(s.Drain)
	// The background work outlasts ctx until the listener closes: while the replica drains, held long polls
	// must still be woken by notifications of new commands.
	runCtx, stopRun := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRun()
	runErr := make(chan error, 1)
	go func() { runErr <- s.Run(runCtx) }()

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	select {
	case err := <-serveErr:
		return err
	case <-ctx.Done():
	}
	if s.drainPeriod > 0 {
		s.logger.Info("draining: /readyz fails so that load balancers send new requests to other replicas",
			"period", s.drainPeriod)
		s.draining.Store(true)
		drained := time.NewTimer(s.drainPeriod)
		select {
		case <-drained.C:
		case err := <-serveErr:
			drained.Stop()
			stopRun()
			<-runErr
			return err
		}
	}
	s.logger.Info("shutting down", "timeout", shutdownTimeout)
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	err := srv.Shutdown(shutdownCtx)
	stopRun()
	<-runErr
	return err
}
