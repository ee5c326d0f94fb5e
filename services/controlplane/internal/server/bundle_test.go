package server_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/protobuf/types/known/durationpb"

	adminv1 "github.com/orrery/orrery/gen/orrery/admin/v1"
	"github.com/orrery/orrery/gen/orrery/admin/v1/adminv1connect"
	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/gen/orrery/satellite/v1/satellitev1connect"
	"github.com/orrery/orrery/internal/action"
	"github.com/orrery/orrery/internal/pgtest"
	"github.com/orrery/orrery/services/controlplane/internal/accountapi"
	"github.com/orrery/orrery/services/controlplane/internal/alert"
	"github.com/orrery/orrery/services/controlplane/internal/catalogapi"
	"github.com/orrery/orrery/services/controlplane/internal/instanceapi"
	"github.com/orrery/orrery/services/controlplane/internal/oauth"
	"github.com/orrery/orrery/services/controlplane/internal/placer"
	"github.com/orrery/orrery/services/controlplane/internal/regtoken"
	"github.com/orrery/orrery/services/controlplane/internal/remoteauth"
	"github.com/orrery/orrery/services/controlplane/internal/satelliteapi"
	"github.com/orrery/orrery/services/controlplane/internal/secrets"
	"github.com/orrery/orrery/services/controlplane/internal/server"
	"github.com/orrery/orrery/services/controlplane/internal/sso"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

const adminToken = "test-admin-token-0123456789"

// replica is one control-plane replica served on loopback.
type replica struct {
	srv *server.Server
	url string
}

// testBundle is a fresh database with the replicas serving it.
type testBundle struct {
	dbURL    string
	signer   *regtoken.Signer
	keyring  *secrets.Keyring
	keySpec  string // the keyring's configuration
	replicas []*replica
}

func (b *testBundle) store() *store.Store { return b.replicas[0].srv.Store() }

func (b *testBundle) admin(i int) adminv1connect.AdminServiceClient {
	return adminv1connect.NewAdminServiceClient(testClient, b.replicas[i].url,
		connect.WithInterceptors(withBearer(adminToken)))
}

type setupOpts struct {
	replicas  int
	satellite satelliteapi.Config
	// logger receives the replicas' logs; nil discards them.
	logger    *slog.Logger
	instances instanceapi.Config
	// oauth tunes the authorization server; its issuer is each replica's URL.
	oauth oauth.Config
	// remoteAccounts tunes members' connections to remote servers; its callback is each replica's.
	remoteAccounts remoteauth.Config
	// trustedProxies are the networks whose X-Forwarded-For names the client.
	trustedProxies []netip.Prefix
	// accounts tunes sign-in and invitations; a zero FailureDelay becomes a millisecond.
	accounts accountapi.Config
	// bodyTimeout is how long request bodies may take to arrive; zero takes the default.
	bodyTimeout time.Duration
	// templateCommands are the commands team templates may run; nil takes the default.
	templateCommands *catalogapi.CommandPolicy
	// alerts tunes webhook delivery.
	alerts alert.Config
	// sso tunes single sign-on; its base URL is each replica's URL.
	sso sso.Config
	// placement tunes where teams are placed on global satellites.
	placement placer.Config
}

func setup(t testing.TB, opts setupOpts) *testBundle {
	t.Helper()
	if opts.replicas == 0 {
		opts.replicas = 1
	}
	signer, err := regtoken.NewSigner([]byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	spec, err := secrets.NewKeySpec("test1")
	if err != nil {
		t.Fatal(err)
	}
	keyring, err := secrets.ParseKeyring(spec)
	if err != nil {
		t.Fatal(err)
	}
	b := &testBundle{dbURL: pgtest.NewDatabase(t), signer: signer, keyring: keyring, keySpec: spec}
	for range opts.replicas {
		b.replicas = append(b.replicas, b.startReplica(t, opts))
	}
	return b
}

// startReplica starts a replica on the bundle's database and waits until it listens for notifications.
func (b *testBundle) startReplica(t testing.TB, opts setupOpts) *replica {
	logger, cfg := opts.logger, opts.satellite
	t.Helper()
	// The listener comes first: the replica's URL is its OAuth issuer.
	hs := httptest.NewUnstartedServer(nil)
	issuer := "http://" + hs.Listener.Addr().String()
	oauthCfg := opts.oauth
	oauthCfg.Issuer = issuer
	accounts := opts.accounts
	if accounts.FailureDelay == 0 {
		accounts.FailureDelay = time.Millisecond
	}
	srv, err := server.New(t.Context(), logger, server.Config{
		DatabaseURL: b.dbURL, AdminToken: adminToken, TokenSigner: b.signer, Keyring: b.keyring, Satellites: cfg, Instances: opts.instances,
		Accounts: accounts, OAuth: oauthCfg, TrustedProxies: opts.trustedProxies, BodyTimeout: opts.bodyTimeout,
		RemoteAccounts:   opts.remoteAccounts,
		TemplateCommands: opts.templateCommands, Alerts: opts.alerts, SSO: opts.sso, Placement: opts.placement,
	})
	if err != nil {
		hs.Listener.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Run(ctx) }()
	hs.Config.Handler = srv.Handler()
	hs.Config.Protocols = new(http.Protocols)
	hs.Config.Protocols.SetHTTP1(true)
	hs.Config.Protocols.SetUnencryptedHTTP2(true) // as in production, for h2c satellites
	hs.Start()
	t.Cleanup(func() {
		srv.Drain()
		hs.Close()
		cancel()
		<-done
		srv.Close()
	})
	waitFor(t, 10*time.Second, "replica ready", func() bool {
		resp, err := testClient.Get(hs.URL + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return &replica{srv: srv, url: hs.URL}
}

func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func withBearer(token string) connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			req.Header().Set("Authorization", "Bearer "+token)
			return next(ctx, req)
		}
	}
}

// satellite is a registered satellite's client.
type satellite struct {
	id     string
	apiKey string
	client satellitev1connect.SatelliteServiceClient
}

// createToken creates a registration token through replica 0; teamID "" makes a global token.
func (b *testBundle) createToken(t testing.TB, teamID string) string {
	t.Helper()
	req := &adminv1.CreateRegistrationTokenRequest{Name: "test", Scope: adminv1.TokenScope_TOKEN_SCOPE_GLOBAL}
	if teamID != "" {
		req.Scope, req.TeamId = adminv1.TokenScope_TOKEN_SCOPE_TEAM, teamID
	}
	resp, err := b.admin(0).CreateRegistrationToken(t.Context(), connect.NewRequest(req))
	if err != nil {
		t.Fatal(err)
	}
	return resp.Msg.Token
}

// register registers a satellite through replica i.
func (b *testBundle) register(t testing.TB, i int, token, name string) (*satellite, error) {
	t.Helper()
	c := satellitev1connect.NewSatelliteServiceClient(testClient, b.replicas[i].url)
	resp, err := c.Register(t.Context(), connect.NewRequest(&satellitev1.RegisterRequest{
		RegistrationToken: token, Name: name, Version: "test",
	}))
	if err != nil {
		return nil, err
	}
	return b.connect(i, resp.Msg.SatelliteId, resp.Msg.ApiKey), nil
}

// connect returns a client of replica i for an already registered satellite.
func (b *testBundle) connect(i int, id, apiKey string) *satellite {
	return &satellite{id: id, apiKey: apiKey, client: satellitev1connect.NewSatelliteServiceClient(
		testClient, b.replicas[i].url, connect.WithInterceptors(withBearer(apiKey)))}
}

// activeSatellite registers a satellite with a fresh token of teamID ("" for global) and sends its first
// heartbeat.
func (b *testBundle) activeSatellite(t testing.TB, teamID string) *satellite {
	t.Helper()
	sat, err := b.register(t, 0, b.createToken(t, teamID), "sat-"+uuid.NewString()[:8])
	if err != nil {
		t.Fatal(err)
	}
	sat.heartbeat(t, "")
	return sat
}

func (s *satellite) heartbeat(t testing.TB, url string) *satellitev1.HeartbeatResponse {
	t.Helper()
	resp, err := s.client.Heartbeat(t.Context(), connect.NewRequest(&satellitev1.HeartbeatRequest{
		System: &satellitev1.SystemMetrics{CpuPercent: 12.5, MemoryTotalBytes: 1 << 30}, Url: url,
	}))
	if err != nil {
		t.Fatal(err)
	}
	return resp.Msg
}

func (s *satellite) poll(t *testing.T, wait time.Duration) []*satellitev1.Command {
	t.Helper()
	resp, err := s.client.PollCommands(t.Context(), connect.NewRequest(&satellitev1.PollCommandsRequest{
		Wait: durationpb.New(wait),
	}))
	if err != nil {
		t.Fatal(err)
	}
	return resp.Msg.Commands
}

// enqueue queues a command for one satellite through replica i.
func (b *testBundle) enqueue(t testing.TB, i int, satelliteID string, command *satellitev1.Command, prio satellitev1.CommandPriority, ttl time.Duration) *adminv1.AdminCommand {
	t.Helper()
	req := &adminv1.EnqueueCommandRequest{
		Target: &adminv1.EnqueueCommandRequest_SatelliteId{SatelliteId: satelliteID}, Priority: prio,
	}
	action.Copy(req, command)
	if ttl > 0 {
		req.Ttl = durationpb.New(ttl)
	}
	resp, err := b.admin(i).EnqueueCommand(t.Context(), connect.NewRequest(req))
	if err != nil {
		t.Fatal(err)
	}
	return resp.Msg.Commands[0]
}

// pool connects to the bundle's database directly, for checks the API does not expose.
func (b *testBundle) pool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(t.Context(), b.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}
