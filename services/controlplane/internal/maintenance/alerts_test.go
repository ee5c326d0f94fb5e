package maintenance_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"

	"github.com/orrery/orrery/services/controlplane/internal/alert"
	"github.com/orrery/orrery/services/controlplane/internal/maintenance"
	"github.com/orrery/orrery/services/controlplane/internal/remoteauth"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// heard is a webhook receiver on loopback that keeps the alerts it got, each checked as a receiver would.
type heard struct {
	secret string
	mu     sync.Mutex
	alerts []heardAlert
}

type heardAlert struct {
	Type   string         `json:"type"`
	TeamID string         `json:"team_id"`
	Data   map[string]any `json:"data"`
}

func (h *heard) serve(t *testing.T) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err := alert.Verify(h.secret, r.Header.Get(alert.SignatureHeader), body, time.Now(), 5*time.Minute); err != nil {
			t.Errorf("a delivery's signature: %v", err)
		}
		var a heardAlert
		if err := json.Unmarshal(body, &a); err != nil {
			t.Errorf("a delivery's body %q: %v", body, err)
		}
		h.mu.Lock()
		h.alerts = append(h.alerts, a)
		h.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func (h *heard) kinds() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, a := range h.alerts {
		out = append(out, a.Type)
	}
	return out
}

// alertBundle is a store, an Alerter delivering through a running River client, and webhooks.
type alertBundle struct {
	st      *store.Store
	pool    *pgxpool.Pool
	alerter *alert.Alerter
}

func newAlertBundle(t *testing.T) *alertBundle {
	t.Helper()
	st, pool := newStoreAndPool(t)
	if err := maintenance.Migrate(t.Context(), pool); err != nil {
		t.Fatal(err)
	}
	alerter := alert.New(logger(t), st, alert.Config{AllowPrivate: true})
	remote, err := remoteauth.New(logger(t), st, remoteauth.Config{CallbackURL: "http://127.0.0.1/oauth/remote/callback"})
	if err != nil {
		t.Fatal(err)
	}
	client, err := maintenance.NewClient(logger(t), pool, st, 90*time.Second, remote, alerter)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := client.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stopCtx, stop := context.WithTimeout(context.Background(), 10*time.Second)
		defer stop()
		_ = client.Stop(stopCtx)
		cancel()
	})
	return &alertBundle{st: st, pool: pool, alerter: alerter}
}

// webhook creates a webhook for teamID (nil: global) hearing kinds and returns its receiver.
func (b *alertBundle) webhook(t *testing.T, teamID *uuid.UUID, usage, denials int64, kinds ...string) (*heard, store.Webhook) {
	t.Helper()
	h := &heard{secret: alert.NewSecret()}
	w, err := b.st.CreateWebhook(t.Context(), store.NewWebhook{Webhook: store.Webhook{
		TeamID: teamID, Name: "pager", URL: h.serve(t), EventKinds: kinds, UsageCallsPerHour: usage, PolicyDenialsPerHour: denials,
	}, Secret: h.secret}, 20)
	if err != nil {
		t.Fatal(err)
	}
	return h, w
}

func (b *alertBundle) deliveries(t *testing.T, w store.Webhook) int {
	t.Helper()
	var n int
	if err := b.pool.QueryRow(t.Context(), `select count(*) from webhook_deliveries where webhook_id = $1`, w.ID).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func waitKinds(t *testing.T, h *heard, want ...string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for len(h.kinds()) < len(want) {
		if time.Now().After(deadline) {
			t.Fatalf("heard %v, want %v", h.kinds(), want)
		}
		time.Sleep(20 * time.Millisecond)
	}
	got := h.kinds()
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("heard %v, want %v", got, want)
		}
	}
}

// TestSatelliteOutageAlertsItsTeamAndGlobalWebhooks lets a team's satellite fall silent and come back,
// with the offline job noticing both: the team's webhook and the global one hear satellite.offline and
// then satellite.online, signed; another team's webhook hears nothing.
func TestSatelliteOutageAlertsItsTeamAndGlobalWebhooks(t *testing.T) {
	t.Parallel()
	b := newAlertBundle(t)
	ctx := t.Context()
	teamA, err := b.st.CreateTeam(ctx, "team-a", "Team A")
	if err != nil {
		t.Fatal(err)
	}
	teamB, err := b.st.CreateTeam(ctx, "team-b", "Team B")
	if err != nil {
		t.Fatal(err)
	}
	kinds := []string{alert.KindSatelliteOffline, alert.KindSatelliteOnline}
	hearsA, _ := b.webhook(t, &teamA.ID, 0, 0, kinds...)
	hearsB, hookB := b.webhook(t, &teamB.ID, 0, 0, kinds...)
	hearsAll, _ := b.webhook(t, nil, 0, 0, kinds...)

	tok, err := b.st.CreateRegistrationToken(ctx, store.RegistrationToken{
		ID: uuid.New(), Name: "t", Scope: store.ScopeTeam, TeamID: &teamA.ID, ExpiresAt: time.Now().Add(time.Hour),
	})
	if err != nil {
		t.Fatal(err)
	}
	sat, err := b.st.RegisterSatellite(ctx, tok.ID, store.NewSatellite{Name: "edge-a", APIKeyID: "k",
		HashAPIKey: func(context.Context) (string, error) { return "h", nil }})
	if err != nil {
		t.Fatal(err)
	}
	exec(t, b.pool, `update satellites set activated_at = now(), last_heartbeat_at = now() - interval '5 minutes' where id = $1`, sat.ID)
	w := &maintenance.OfflineWorker{Logger: logger(t), Store: b.st, Alerts: b.alerter, After: 90 * time.Second}
	if err := w.Work(ctx, &river.Job[maintenance.OfflineArgs]{}); err != nil {
		t.Fatal(err)
	}
	waitKinds(t, hearsA, alert.KindSatelliteOffline)
	waitKinds(t, hearsAll, alert.KindSatelliteOffline)

	if _, err := b.st.RecordHeartbeat(ctx, sat.ID, sat.APIKeyHash, store.Heartbeat{SystemMetrics: []byte("{}"), ProcessCounts: []byte("[]")}); err != nil {
		t.Fatal(err)
	}
	for range 2 { // the return is told once
		if err := w.Work(ctx, &river.Job[maintenance.OfflineArgs]{}); err != nil {
			t.Fatal(err)
		}
	}
	waitKinds(t, hearsA, alert.KindSatelliteOffline, alert.KindSatelliteOnline)
	waitKinds(t, hearsAll, alert.KindSatelliteOffline, alert.KindSatelliteOnline)
	hearsA.mu.Lock()
	offline := hearsA.alerts[0]
	hearsA.mu.Unlock()
	if offline.TeamID != teamA.ID.String() || offline.Data["satellite_id"] != sat.ID.String() || offline.Data["satellite_name"] != "edge-a" {
		t.Errorf("offline alert = %+v", offline)
	}
	if n := b.deliveries(t, hookB); n != 0 || len(hearsB.kinds()) != 0 {
		t.Errorf("team B's webhook got %d deliveries (%v) of team A's satellite", n, hearsB.kinds())
	}
	if got := len(hearsA.kinds()); got != 2 {
		t.Errorf("team A heard %d alerts, want 2", got)
	}
}

// TestRateAlertsFollowEachWebhooksThreshold counts a team's calls (the usage rollups) and policy denials
// over the trailing hour against each webhook's thresholds: a webhook hears a rate alert once per hour
// when its threshold is reached, and never about another team.
func TestRateAlertsFollowEachWebhooksThreshold(t *testing.T) {
	t.Parallel()
	b := newAlertBundle(t)
	ctx := t.Context()
	in, user := installation(t, b.st, "files", "stdio")
	teamB, err := b.st.CreateTeam(ctx, "team-b", "Team B")
	if err != nil {
		t.Fatal(err)
	}
	rates := []string{alert.KindUsageThreshold, alert.KindPolicyDenials}
	hearsA, _ := b.webhook(t, &in.TeamID, 100, 5, rates...)
	hearsHigh, hookHigh := b.webhook(t, &in.TeamID, 1000, 50, rates...)
	hearsB, hookB := b.webhook(t, &teamB.ID, 1, 1, rates...)
	hearsAll, _ := b.webhook(t, nil, 150, 0, alert.KindUsageThreshold)

	exec(t, b.pool, `insert into usage_minutes (team_id, minute, installation_id, tool_name, user_id, latency_bucket, calls, errors, bytes_in, bytes_out)
		values ($1, date_trunc('minute', now()) - interval '10 minutes', $2, 'read', $3, 4, 90, 0, 0, 0),
		       ($1, date_trunc('minute', now()) - interval '3 minutes', $2, 'write', $3, 4, 70, 2, 0, 0),
		       ($1, date_trunc('minute', now()) - interval '2 hours', $2, 'write', $3, 4, 5000, 0, 0, 0)`,
		in.TeamID, in.ID, user.ID)
	if err := b.st.AddPolicyDenials(ctx, in.TeamID, time.Now(), 4); err != nil {
		t.Fatal(err)
	}
	if err := b.st.AddPolicyDenials(ctx, in.TeamID, time.Now().Add(-time.Minute), 3); err != nil {
		t.Fatal(err)
	}
	for range 3 { // each alert once per hour, however often the job runs
		if err := b.alerter.Evaluate(ctx); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(hearsA.kinds()) < 2 || len(hearsAll.kinds()) < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("team A heard %v, the global webhook %v", hearsA.kinds(), hearsAll.kinds())
		}
		time.Sleep(20 * time.Millisecond)
	}
	hearsA.mu.Lock()
	got := map[string]heardAlert{}
	for _, a := range hearsA.alerts {
		got[a.Type] = a
	}
	hearsA.mu.Unlock()
	if u := got[alert.KindUsageThreshold]; u.Data["calls"] != float64(160) || u.Data["threshold"] != float64(100) || u.TeamID != in.TeamID.String() {
		t.Errorf("usage alert = %+v", u)
	}
	if d := got[alert.KindPolicyDenials]; d.Data["denials"] != float64(7) || d.Data["threshold"] != float64(5) {
		t.Errorf("denials alert = %+v", d)
	}
	if n := len(hearsA.kinds()); n != 2 {
		t.Errorf("team A's webhook heard %d alerts, want 2: %v", n, hearsA.kinds())
	}
	for _, w := range []store.Webhook{hookHigh, hookB} {
		if n := b.deliveries(t, w); n != 0 {
			t.Errorf("webhook %s (threshold not reached, or another team) got %d deliveries", w.Name, n)
		}
	}
	if len(hearsHigh.kinds())+len(hearsB.kinds()) != 0 {
		t.Errorf("heard %v and %v", hearsHigh.kinds(), hearsB.kinds())
	}
}

// TestStrandedDeliveriesAreQueuedAgain stores an alert whose delivery job was never queued, as when a
// replica stops between the two: the periodic evaluation queues it, once however often it runs, and the
// receiver gets it.
func TestStrandedDeliveriesAreQueuedAgain(t *testing.T) {
	t.Parallel()
	b := newAlertBundle(t)
	team, err := b.st.CreateTeam(t.Context(), "team-a", "Team A")
	if err != nil {
		t.Fatal(err)
	}
	hears, _ := b.webhook(t, &team.ID, 0, 0, alert.KindSatelliteOffline)
	deliveries, err := b.st.RecordAlert(t.Context(), store.Alert{
		ID: uuid.New(), TeamID: &team.ID, Kind: alert.KindSatelliteOffline, DedupeKey: "stranded",
		Body: []byte(`{"type":"satellite.offline","data":{}}`),
	})
	if err != nil || len(deliveries) != 1 {
		t.Fatalf("deliveries %v, %v", deliveries, err)
	}
	exec(t, b.pool, `update webhook_deliveries set created_at = now() - interval '10 minutes' where id = $1`, deliveries[0])
	for range 2 {
		if err := b.alerter.Evaluate(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	waitKinds(t, hears, alert.KindSatelliteOffline)
	var jobs int
	if err := b.pool.QueryRow(t.Context(), `select count(*) from river_job where kind = 'deliver_webhook'`).Scan(&jobs); err != nil {
		t.Fatal(err)
	}
	if jobs != 1 {
		t.Errorf("%d delivery jobs for one stranded delivery, want 1", jobs)
	}
}
