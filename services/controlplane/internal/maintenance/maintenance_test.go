package maintenance_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/internal/pgtest"
	"github.com/orrery/orrery/services/controlplane/internal/maintenance"
	"github.com/orrery/orrery/services/controlplane/internal/secrets"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

func newStore(t *testing.T) *store.Store {
	st, _ := newStoreAndPool(t)
	return st
}

// newStoreAndPool returns a store over a fresh database, and the database's pool for seeding with SQL.
func newStoreAndPool(t *testing.T) (*store.Store, *pgxpool.Pool) {
	t.Helper()
	spec, err := secrets.NewKeySpec("test")
	if err != nil {
		t.Fatal(err)
	}
	keyring, err := secrets.ParseKeyring(spec)
	if err != nil {
		t.Fatal(err)
	}
	pool := pgtest.NewPool(t)
	return store.New(pool, keyring), pool
}

func newSatellite(t *testing.T, st *store.Store) store.Satellite {
	t.Helper()
	tok, err := st.CreateRegistrationToken(t.Context(), store.RegistrationToken{
		ID: uuid.New(), Name: "t", Scope: store.ScopeGlobal, ExpiresAt: time.Now().Add(time.Hour),
	})
	if err != nil {
		t.Fatal(err)
	}
	sat, err := st.RegisterSatellite(t.Context(), tok.ID, store.NewSatellite{Name: "s", APIKeyID: "k",
		HashAPIKey: func(context.Context) (string, error) { return "h", nil }})
	if err != nil {
		t.Fatal(err)
	}
	return sat
}

// configure is an action for commands whose life a test is about.
var configure = &satellitev1.Command{Action: &satellitev1.Command_Configure{Configure: &satellitev1.ConfigureAction{
	Event: satellitev1.ConfigureEvent_CONFIGURE_EVENT_INSTALLATION_UPDATED,
}}}

func TestSweepExpiresCommandsOfSilentSatellites(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	sat := newSatellite(t, st)
	if _, err := st.EnqueueCommand(t.Context(), sat.ID, store.NewCommand{Action: configure, TTL: time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	live, err := st.EnqueueCommand(t.Context(), sat.ID, store.NewCommand{Action: configure, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond)
	w := &maintenance.SweepWorker{Logger: slog.New(slog.NewTextHandler(t.Output(), nil)), Store: st}
	if err := w.Work(t.Context(), &river.Job[maintenance.SweepArgs]{}); err != nil {
		t.Fatal(err)
	}
	cmds, err := st.ListCommands(t.Context(), store.CommandFilter{SatelliteID: &sat.ID}, nil, 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cmds {
		want := store.CommandExpired
		if c.ID == live.ID {
			want = store.CommandPending
		}
		if c.State != want {
			t.Errorf("command %s: state %s, want %s", c.ID, c.State, want)
		}
	}
}

func TestPruneKeepsRecentHistory(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	sat := newSatellite(t, st)
	if _, err := st.RecordHeartbeat(t.Context(), sat.ID, sat.APIKeyHash, store.Heartbeat{
		SystemMetrics: []byte("{}"), ProcessCounts: []byte("[]"),
	}); err != nil {
		t.Fatal(err)
	}
	p, err := st.Prune(t.Context(), time.Now(), maintenance.DefaultRetention)
	if err != nil || p.Heartbeats != 0 {
		t.Fatalf("prune now: %+v, %v; want the fresh heartbeat kept", p, err)
	}
	p, err = st.Prune(t.Context(), time.Now().Add(25*time.Hour), maintenance.DefaultRetention)
	if err != nil || p.Heartbeats != 1 {
		t.Fatalf("prune a day later: %+v, %v; want the heartbeat gone", p, err)
	}
}

func TestPruneDeletesExpiredOAuthTokens(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	user, team, err := st.CreateAccount(t.Context(), store.NewAccount{Email: "ada@example.test", GlobalRole: store.RoleGlobalUser})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CreateOAuthToken(t.Context(), store.OAuthToken{
		Signature: []byte("refresh"), Kind: store.OAuthRefreshToken, RequestID: "grant", ClientID: "client",
		TeamID: team.ID, UserID: user.ID, Request: []byte("{}"), ExpiresAt: time.Now().Add(time.Hour),
	}); err != nil {
		t.Fatal(err)
	}
	p, err := st.Prune(t.Context(), time.Now(), maintenance.DefaultRetention)
	if err != nil || p.OAuthTokens != 0 {
		t.Fatalf("prune now: %+v, %v; want the live token kept", p, err)
	}
	p, err = st.Prune(t.Context(), time.Now().Add(26*time.Hour), maintenance.DefaultRetention)
	if err != nil || p.OAuthTokens != 1 {
		t.Fatalf("prune a day after expiry: %+v, %v; want the token gone", p, err)
	}
}

// TestPruneDeletesExpiredInvitations keeps an invitation while it may be accepted and deletes it, with the
// address it holds, a day after it expired.
func TestPruneDeletesExpiredInvitations(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	user, team, err := st.CreateAccount(t.Context(), store.NewAccount{Email: "ada@example.test", GlobalRole: store.RoleGlobalUser})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Invite(t.Context(), store.NewInvitation{
		TeamID: team.ID, Email: "grace@example.test", Role: store.RoleTeamUser, InvitedBy: user.ID, TTL: time.Hour, MaxPending: 10,
	}); err != nil {
		t.Fatal(err)
	}
	p, err := st.Prune(t.Context(), time.Now(), maintenance.DefaultRetention)
	if err != nil || p.Invitations != 0 {
		t.Fatalf("prune now: %+v, %v; want the pending invitation kept", p, err)
	}
	p, err = st.Prune(t.Context(), time.Now().Add(26*time.Hour), maintenance.DefaultRetention)
	if err != nil || p.Invitations != 1 {
		t.Fatalf("prune a day after expiry: %+v, %v; want the invitation gone", p, err)
	}
}

// TestPruneDeletesUnusedOAuthClients registers clients and prunes a day later: only the registered client
// that no consent or token names goes; a team's own client stays whatever its use.
func TestPruneDeletesUnusedOAuthClients(t *testing.T) {
	t.Parallel()
	st := newStore(t)
	ctx := t.Context()
	user, team, err := st.CreateAccount(ctx, store.NewAccount{Email: "ada@example.test", GlobalRole: store.RoleGlobalUser})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []store.OAuthClient{
		{ID: "unused"}, {ID: "consented"}, {ID: "with-token"},
		{ID: "orcc_teamclient", TeamID: &team.ID, TokenEndpointAuthMethod: "client_secret_basic", SecretHash: "hash"},
	} {
		if c.TokenEndpointAuthMethod == "" {
			c.TokenEndpointAuthMethod = "none"
		}
		if _, err := st.CreateOAuthClient(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.SaveOAuthConsent(ctx, store.OAuthConsent{UserID: user.ID, ClientID: "consented", TeamID: team.ID, Scopes: []string{"mcp:read"}}); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateOAuthToken(ctx, store.OAuthToken{
		Signature: []byte("code"), Kind: store.OAuthAuthorizeCode, RequestID: "grant", ClientID: "with-token",
		TeamID: team.ID, UserID: user.ID, Request: []byte("{}"), ExpiresAt: time.Now().Add(48 * time.Hour),
	}); err != nil {
		t.Fatal(err)
	}

	if p, err := st.Prune(ctx, time.Now(), maintenance.DefaultRetention); err != nil || p.OAuthClients != 0 {
		t.Fatalf("prune now: %+v, %v; want every new client kept", p, err)
	}
	if p, err := st.Prune(ctx, time.Now().Add(25*time.Hour), maintenance.DefaultRetention); err != nil || p.OAuthClients != 1 {
		t.Fatalf("prune a day later: %+v, %v; want one client gone", p, err)
	}
	// orreryctl is seeded by a migration and used by no one yet: it stays all the same.
	for id, want := range map[string]bool{"unused": false, "consented": true, "with-token": true, "orcc_teamclient": true, "orreryctl": true} {
		_, err := st.OAuthClient(ctx, id)
		if got := err == nil; got != want {
			t.Errorf("client %s kept = %v (%v), want %v", id, got, err, want)
		}
	}
}
