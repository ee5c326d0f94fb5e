package events_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"

	"github.com/orrery/orrery/e2e"
	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/internal/pgtest"
	"github.com/orrery/orrery/services/satellite/internal/backend"
	"github.com/orrery/orrery/services/satellite/internal/backoff"
	"github.com/orrery/orrery/services/satellite/internal/desired"
	"github.com/orrery/orrery/services/satellite/internal/events"
	"github.com/orrery/orrery/services/satellite/internal/identity"
)

// TestDeliversAcrossControlPlaneRestart sends server-log events through the real client to a real control
// plane that is stopped halfway and started again as a new process: every line arrives exactly once and in
// order, and the batcher closes with nothing lost.
func TestDeliversAcrossControlPlaneRestart(t *testing.T) {
	t.Parallel()
	const perPhase = 50 // two phases stay within the 100 lines the control plane keeps per installation
	dbURL := pgtest.NewDatabase(t)
	cp := e2e.StartControlPlane(t, dbURL)
	db, err := pgx.Connect(t.Context(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close(context.Background()) })
	inst := seedInstance(t, db)

	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	fast := backoff.Policy{Min: 20 * time.Millisecond, Max: 250 * time.Millisecond}
	// The satellite's own communicator registers with a token from the admin API and provides the
	// authenticated client the satellite hands its batcher.
	comm, err := backend.New(logger.With("component", "backend"), backend.Config{
		URL:               cp.URL,
		RegistrationToken: cp.RegistrationToken(t),
		Name:              "events-restart",
		Version:           "test",
		PublicURL:         "http://127.0.0.1:8081",
		Identity:          identity.NewStore(t.TempDir()),
		Desired:           desired.New(),
		Backoff:           fast,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	runErr := make(chan error, 1)
	go func() { runErr <- comm.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-runErr; err != nil {
			t.Errorf("communicator: %v", err)
		}
	})
	e2e.WaitFor(t, 15*time.Second, "the communicator to register", comm.Ready)

	sender := &failureCounter{Sender: comm.Client()}
	batcher, err := events.New(logger.With("component", "events"), sender, events.Config{
		FlushDelay: 200 * time.Millisecond,
		MaxBatch:   20,
		Backoff:    fast,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Only a test that failed before its own Close gets here with events left; give up on them at once.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_ = batcher.Close(ctx)
	})
	emit := func(from, to int) {
		for i := from; i < to; i++ {
			batcher.Emit(&satellitev1.Event{
				TeamId: inst.teamID, InstallationId: inst.installationID, InstanceId: inst.id,
				Payload: &satellitev1.Event_ServerLog{ServerLog: &satellitev1.ServerLog{
					Level: satellitev1.LogLevel_LOG_LEVEL_INFO, Message: logLine(i),
				}},
			})
		}
	}

	// Two full batches go at once; the last ten wait out the flush delay, usually into the outage.
	emit(0, perPhase)
	e2e.WaitFor(t, 10*time.Second, "the first full batches to be acknowledged", func() error {
		if s := batcher.Stats(); s.Sent < 40 {
			return fmt.Errorf("%d events acknowledged", s.Sent)
		}
		return nil
	})
	cp.Stop(t)
	emit(perPhase, 2*perPhase)
	during := batcher.Stats()
	t.Logf("control plane down: %d events acknowledged, %d buffered", during.Sent, during.Buffered)
	if during.Buffered < perPhase || during.Sent+uint64(during.Buffered) != 2*perPhase {
		t.Fatalf("while the control plane is down the batcher has %+v, want the %d new events among the buffered",
			during, perPhase)
	}

	e2e.WaitFor(t, 10*time.Second, "a batch to fail against the stopped control plane", func() error {
		if sender.failed.Load() == 0 {
			return errors.New("no failed attempt yet")
		}
		return nil
	})

	cp.Start(t)
	closeCtx, cancelClose := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancelClose()
	if err := batcher.Close(closeCtx); err != nil {
		t.Fatalf("close: %v", err)
	}
	if s := batcher.Stats(); s.Sent != 2*perPhase || s.Dropped != 0 || s.Buffered != 0 {
		t.Errorf("stats after close = %+v, want all %d sent and none dropped", s, 2*perPhase)
	}

	rows, err := db.Query(t.Context(), "select message from server_logs where installation_id = $1 and team_id = $2 order by id",
		inst.installationID, inst.teamID)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := range 2 * perPhase {
		want = append(want, logLine(i))
	}
	if !slices.Equal(got, want) {
		t.Errorf("server_logs holds %d lines:\n%q\nwant %d lines, each once, in order:\n%q", len(got), got, len(want), want)
	}
	var reports int
	if err := db.QueryRow(t.Context(), "select count(*) from dropped_event_reports").Scan(&reports); err != nil {
		t.Fatal(err)
	}
	if reports != 0 {
		t.Errorf("%d dropped-event reports stored, want none", reports)
	}
}

// failureCounter sends through the real client and counts the attempts that failed.
type failureCounter struct {
	events.Sender
	failed atomic.Int64
}

func (f *failureCounter) EmitEvents(ctx context.Context, req *connect.Request[satellitev1.EmitEventsRequest]) (*connect.Response[satellitev1.EmitEventsResponse], error) {
	resp, err := f.Sender.EmitEvents(ctx, req)
	if err != nil {
		f.failed.Add(1)
	}
	return resp, err
}

func logLine(i int) string { return fmt.Sprintf("restart line %03d", i) }

// seededInstance is one user's instance of one installation.
type seededInstance struct {
	id, teamID, installationID string
}

// seedInstance creates a team with one member, a catalog entry, an installation of it and the member's
// instance, which the control plane accepts events about.
func seedInstance(t *testing.T, db *pgx.Conn) seededInstance {
	t.Helper()
	insert := func(sql string, args ...any) string {
		t.Helper()
		var id string
		if err := db.QueryRow(t.Context(), sql+" returning id::text", args...).Scan(&id); err != nil {
			t.Fatalf("seed: %s: %v", sql, err)
		}
		return id
	}
	teamID := insert("insert into teams (slug, name) values ('acme', 'Acme')")
	userID := insert("insert into users (slug, email, name) values ('ada', 'ada@example.com', 'Ada')")
	if _, err := db.Exec(t.Context(), "insert into team_memberships (team_id, user_id, role) values ($1, $2, 'team_user')",
		teamID, userID); err != nil {
		t.Fatalf("seed: membership: %v", err)
	}
	entryID := insert("insert into catalog_entries (slug, name, transport, command) values ('echo', 'Echo', 'stdio', 'echo-mcp')")
	installationID := insert("insert into installations (team_id, catalog_entry_id, name) values ($1, $2, 'Echo')", teamID, entryID)
	// {server_slug}-{team_slug}-{user_slug}-{installation_id}
	return seededInstance{
		id: insert("insert into instances (id, installation_id, team_id, user_id) values ($1, $2, $3, $4)",
			"echo-acme-ada-"+installationID, installationID, teamID, userID),
		teamID:         teamID,
		installationID: installationID,
	}
}
