package e2e_test

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/orrery/orrery/e2e"
	"github.com/orrery/orrery/internal/mcptest"
)

// maxBurst keeps a burst's request logs within the 100 the control plane keeps per installation, so none
// is trimmed before it is counted.
const maxBurst = 90

// deliveryTimeout covers the satellite's retries with backoff (at most 30 s apart) after an outage.
const deliveryTimeout = 90 * time.Second

// burst calls everything__echo from several MCP sessions at once, each call with its own marker, and
// remembers the markers of the calls that were answered.
type burst struct {
	made     atomic.Int64
	mu       sync.Mutex
	answered []string
	wg       sync.WaitGroup
	stop     chan struct{}
}

// startBurst starts workers sessions on te's endpoint calling without pause until stopped, a call fails or
// maxBurst calls were made.
func startBurst(t *testing.T, te *teamEndpoint, workers int) *burst {
	t.Helper()
	b := &burst{stop: make(chan struct{})}
	for w := range workers {
		session, err := connectMCP(t.Context(), te.endpoint, te.token)
		if err != nil {
			t.Fatalf("connect worker %d: %v", w, err)
		}
		b.wg.Go(func() {
			defer session.Close()
			for {
				select {
				case <-b.stop:
					return
				default:
				}
				n := b.made.Add(1)
				if n > maxBurst {
					return
				}
				marker := fmt.Sprintf("burst-%03d-end", n)
				ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
				res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "everything__echo", Arguments: map[string]any{"message": marker}})
				cancel()
				if err != nil || res.IsError {
					return // the satellite went away, or will answer no more on this session
				}
				b.mu.Lock()
				b.answered = append(b.answered, marker)
				b.mu.Unlock()
			}
		})
	}
	return b
}

// waitAnswered waits until n calls were answered.
func (b *burst) waitAnswered(t *testing.T, n int) {
	t.Helper()
	e2e.WaitFor(t, 60*time.Second, fmt.Sprintf("%d answered calls", n), func() error {
		if got := len(b.answers()); got < n {
			return fmt.Errorf("%d answered", got)
		}
		return nil
	})
}

func (b *burst) answers() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.answered...)
}

// finish stops the burst and returns the markers of the answered calls.
func (b *burst) finish() []string {
	close(b.stop)
	b.wg.Wait()
	return b.answers()
}

// checkLoggedOnce waits until every answered call is in the installation's request logs, then checks
// that each is there exactly once and that no call, answered or not, was stored twice.
func checkLoggedOnce(t *testing.T, te *teamEndpoint, answered []string) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), te.cp.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.WithoutCancel(t.Context()))
	counts := func() (map[string]int, error) {
		rows, err := conn.Query(t.Context(), `select substring(request::text from 'burst-[0-9]{3}-end') from request_logs
			where installation_id = $1 and request::text ~ 'burst-[0-9]{3}-end'`, te.installationID)
		if err != nil {
			return nil, err
		}
		markers, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return nil, err
		}
		out := map[string]int{}
		for _, m := range markers {
			out[m]++
		}
		return out, nil
	}
	var logged map[string]int
	e2e.WaitFor(t, deliveryTimeout, fmt.Sprintf("the %d answered calls in the request logs", len(answered)), func() error {
		if logged, err = counts(); err != nil {
			return err
		}
		var missing []string
		for _, m := range answered {
			if logged[m] == 0 {
				missing = append(missing, m)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("%d of %d answered calls not logged yet: %v", len(missing), len(answered), missing)
		}
		return nil
	})
	for m, n := range logged {
		if n != 1 {
			t.Errorf("call %s logged %d times, want once", m, n)
		}
	}
	t.Logf("%d calls answered, %d logged (calls cut off by the crash may or may not be)", len(answered), len(logged))
}

// TestSatelliteKillLosesNoAnsweredCall kills the satellite with SIGKILL in the middle of a burst of tool
// calls and starts it again on the same state directory: every call that was answered is in the request
// logs exactly once.
func TestSatelliteKillLosesNoAnsweredCall(t *testing.T) {
	t.Parallel()
	command, args := mcptest.Everything(t)
	te := startTeamEndpoint(t, "satkill", "everything", command, args, false, "everything__echo")
	b := startBurst(t, te, 4)
	b.waitAnswered(t, 30)
	te.sat.Signal(t, syscall.SIGKILL)
	te.sat.Wait(t, stopTimeoutKill)
	answered := b.finish()
	e2e.StartSatellite(t, te.cp, e2e.SatelliteConfig{StateDir: te.sat.StateDir})
	checkLoggedOnce(t, te, answered)
}

// stopTimeoutKill bounds how long a process takes to die of SIGKILL.
const stopTimeoutKill = 10 * time.Second

// TestControlPlaneKillLosesNoAnsweredCall kills the control plane (external PostgreSQL) with SIGKILL in the
// middle of a burst; the satellite keeps answering, and once the control plane is back every answered
// call is in the request logs exactly once.
func TestControlPlaneKillLosesNoAnsweredCall(t *testing.T) {
	t.Parallel()
	command, args := mcptest.Everything(t)
	te := startTeamEndpoint(t, "cpkill", "everything", command, args, false, "everything__echo")
	b := startBurst(t, te, 4)
	b.waitAnswered(t, 20)
	te.cp.Process().Signal(t, syscall.SIGKILL)
	te.cp.Process().Wait(t, stopTimeoutKill)
	b.waitAnswered(t, 40) // answered while the control plane is down
	te.cp.Start(t)
	checkLoggedOnce(t, te, b.finish())
}

// TestDatabaseOutageLosesNoAnsweredCall cuts the control plane off its PostgreSQL database for
// ORRERY_E2E_DATABASE_OUTAGE (default 30 s) in the middle of a burst: the database refuses connections to
// it and drops the open ones, as a server restarting or failing over does. Every answered call is in the
// request logs exactly once afterwards.
func TestDatabaseOutageLosesNoAnsweredCall(t *testing.T) {
	t.Parallel()
	outage, err := time.ParseDuration(cmp.Or(os.Getenv("ORRERY_E2E_DATABASE_OUTAGE"), "30s"))
	if err != nil {
		t.Fatalf("ORRERY_E2E_DATABASE_OUTAGE: %v", err)
	}
	command, args := mcptest.Everything(t)
	te := startTeamEndpoint(t, "pgdown", "everything", command, args, false, "everything__echo")

	// Staged from the cluster's maintenance database: a database cannot do this to itself.
	cfg, err := pgx.ParseConfig(te.cp.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	database := cfg.Database
	cfg.Database = "postgres"
	admin, err := pgx.ConnectConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = admin.Close(context.Background()) })
	setConnections := func(allow bool) {
		t.Helper()
		if _, err := admin.Exec(context.Background(), fmt.Sprintf("alter database %s allow_connections %v", pgx.Identifier{database}.Sanitize(), allow)); err != nil {
			t.Fatal(err)
		}
	}

	b := startBurst(t, te, 2)
	b.waitAnswered(t, 15)
	setConnections(false)
	t.Cleanup(func() { setConnections(true) })
	if _, err := admin.Exec(t.Context(), `select pg_terminate_backend(pid) from pg_stat_activity where datname = $1`,
		database); err != nil {
		t.Fatal(err)
	}
	down := time.Now()
	b.waitAnswered(t, 30) // answered while the database is down
	time.Sleep(time.Until(down.Add(outage)))
	setConnections(true)
	t.Logf("database back after %v", time.Since(down).Round(time.Millisecond))
	checkLoggedOnce(t, te, b.finish())
}
