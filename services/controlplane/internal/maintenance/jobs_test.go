package maintenance_test

import (
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"

	"github.com/orrery/orrery/services/controlplane/internal/command"
	"github.com/orrery/orrery/services/controlplane/internal/maintenance"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// installation is a team's installation of a template with the given transport, and one member.
func installation(t *testing.T, st *store.Store, slug, transport string) (store.Installation, store.User) {
	t.Helper()
	ctx := t.Context()
	team, err := st.CreateTeam(ctx, slug, slug)
	if err != nil {
		t.Fatal(err)
	}
	user, err := st.CreateUser(ctx, slug+"-user", slug+"@example.test", "")
	if err != nil {
		t.Fatal(err)
	}
	entry := store.CatalogEntry{Slug: slug, Name: slug, Transport: transport, Command: "server"}
	if transport != "stdio" {
		entry.Command, entry.URL = "", "https://mcp.example.test/"+slug
	}
	e, err := st.CreateCatalogEntry(ctx, entry, store.SystemAuthor)
	if err != nil {
		t.Fatal(err)
	}
	in, err := st.CreateInstallation(ctx, store.Installation{TeamID: team.ID, CatalogEntryID: e.ID, Name: slug, RequestLoggingEnabled: true}, store.SystemAuthor)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.AddMember(ctx, team.ID, user.ID, store.RoleTeamUser); err != nil {
		t.Fatal(err)
	}
	return in, user
}

func exec(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	if _, err := pool.Exec(t.Context(), sql, args...); err != nil {
		t.Fatal(err)
	}
}

func logger(t *testing.T) *slog.Logger { return slog.New(slog.NewTextHandler(t.Output(), nil)) }

func TestTrimLogsKeepsTheNewest(t *testing.T) {
	t.Parallel()
	st, pool := newStoreAndPool(t)
	in, _ := installation(t, st, "files", "stdio")
	exec(t, pool, `insert into server_logs (team_id, installation_id, instance_id, level, message, occurred_at)
		select $1, $2, 'i', 'info', 'line ' || n, now() from generate_series(1, 130) n`, in.TeamID, in.ID)
	w := &maintenance.TrimLogsWorker{Logger: logger(t), Store: st}
	if err := w.Work(t.Context(), &river.Job[maintenance.TrimLogsArgs]{}); err != nil {
		t.Fatal(err)
	}
	var n int
	var oldest string
	if err := pool.QueryRow(t.Context(), `select count(*), min(message) filter (where id = (select min(id) from server_logs))
		from server_logs where installation_id = $1`, in.ID).Scan(&n, &oldest); err != nil {
		t.Fatal(err)
	}
	if n != maintenance.KeepLogs || oldest != "line 31" {
		t.Errorf("kept %d lines from %q, want %d from line 31", n, oldest, maintenance.KeepLogs)
	}
}

func TestTemplateHealth(t *testing.T) {
	t.Parallel()
	st, pool := newStoreAndPool(t)
	in, _ := installation(t, st, "files", "stdio")
	other, _ := installation(t, st, "search", "stdio")
	exec(t, pool, `update instances set status = 'online' where installation_id = $1`, in.ID)
	exec(t, pool, `update instances set status = 'crashed' where installation_id = $1`, other.ID)
	w := &maintenance.TemplateHealthWorker{Store: st}
	if err := w.Work(t.Context(), &river.Job[maintenance.TemplateHealthArgs]{}); err != nil {
		t.Fatal(err)
	}
	for entry, want := range map[*store.Installation]string{&in: "healthy", &other: "failing"} {
		h, err := st.GetTemplateHealth(t.Context(), entry.CatalogEntryID)
		if err != nil {
			t.Fatal(err)
		}
		if h.Status != want || h.Instances != 1 {
			t.Errorf("%s: health %+v, want %s over 1 instance", entry.Name, h, want)
		}
	}
}

func TestCredentialChecksCoverRemoteInstallationsOncePerPeriod(t *testing.T) {
	t.Parallel()
	st, pool := newStoreAndPool(t)
	remote, _ := installation(t, st, "remote", "http")
	installation(t, st, "local", "stdio")
	sat := newSatellite(t, st)
	exec(t, pool, `update satellites set activated_at = now(), last_heartbeat_at = now() where id = $1`, sat.ID)
	// Checks go to the satellites a team is placed on.
	exec(t, pool, `insert into team_placements (team_id, satellite_id, rank) select team_id, $1, 0 from installations`, sat.ID)
	w := &maintenance.CredentialChecksWorker{Logger: logger(t), Store: st}
	for range 2 {
		if err := w.Work(t.Context(), &river.Job[maintenance.CredentialChecksArgs]{}); err != nil {
			t.Fatal(err)
		}
	}
	checks := healthChecks(t, st, sat.ID)
	if len(checks) != 1 || checks[0].TeamID == nil || *checks[0].TeamID != remote.TeamID {
		t.Fatalf("health checks = %+v, want one for the remote installation's team", checks)
	}
	// Once the period has passed, the installation is due again.
	exec(t, pool, `update installations set credentials_checked_at = now() - interval '16 minutes'`)
	if err := w.Work(t.Context(), &river.Job[maintenance.CredentialChecksArgs]{}); err != nil {
		t.Fatal(err)
	}
	if checks := healthChecks(t, st, sat.ID); len(checks) != 2 {
		t.Errorf("after the period: health checks %+v, want a second one", checks)
	}
}

func healthChecks(t *testing.T, st *store.Store, satelliteID uuid.UUID) []store.Command {
	t.Helper()
	cmds, err := st.ListCommands(t.Context(), store.CommandFilter{SatelliteID: &satelliteID}, nil, 100)
	if err != nil {
		t.Fatal(err)
	}
	var checks []store.Command
	for _, c := range cmds {
		if c.Kind == command.HealthCheck {
			checks = append(checks, c)
		}
	}
	return checks
}

func TestOfflineSatellitesAreNoticedOncePerOutage(t *testing.T) {
	t.Parallel()
	st, pool := newStoreAndPool(t)
	sat := newSatellite(t, st)
	exec(t, pool, `update satellites set activated_at = now(), last_heartbeat_at = now() - interval '5 minutes' where id = $1`, sat.ID)
	w := &maintenance.OfflineWorker{Logger: logger(t), Store: st, After: 90 * time.Second}
	for range 2 {
		if err := w.Work(t.Context(), &river.Job[maintenance.OfflineArgs]{}); err != nil {
			t.Fatal(err)
		}
	}
	outages := func() int {
		events, err := st.ListAuditEvents(t.Context(), nil, 1<<62, 100)
		if err != nil {
			t.Fatal(err)
		}
		return countAction(events, "satellite.offline")
	}
	if outages() != 1 {
		t.Fatalf("audited %d outages, want 1", outages())
	}
	if _, err := st.RecordHeartbeat(t.Context(), sat.ID, sat.APIKeyHash, store.Heartbeat{
		SystemMetrics: []byte("{}"), ProcessCounts: []byte("[]"),
	}); err != nil {
		t.Fatal(err)
	}
	exec(t, pool, `update satellites set last_heartbeat_at = now() - interval '5 minutes' where id = $1`, sat.ID)
	if err := w.Work(t.Context(), &river.Job[maintenance.OfflineArgs]{}); err != nil {
		t.Fatal(err)
	}
	if outages() != 2 {
		t.Errorf("audited %d outages after a heartbeat and a second silence, want 2", outages())
	}
}

func countAction(events []store.AuditEvent, action string) int {
	n := 0
	for _, e := range events {
		if e.Action == action {
			n++
		}
	}
	return n
}
