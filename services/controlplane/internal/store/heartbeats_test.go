package store_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// TestRecordHeartbeats stores a batch of held heartbeats: each satellite's figures, history and process list
// as RecordHeartbeat would, never its last heard time moved back, and nothing for a satellite revoked, or
// with another key, since its heartbeat was held.
func TestRecordHeartbeats(t *testing.T) {
	t.Parallel()
	st, pool := newStore(t)
	ctx := t.Context()
	var team uuid.UUID
	if err := pool.QueryRow(ctx, `insert into teams (slug, name) values ('acme', 'Acme') returning id`).Scan(&team); err != nil {
		t.Fatal(err)
	}
	ids := make([]uuid.UUID, 4)
	for i := range ids {
		if err := pool.QueryRow(ctx, `insert into satellites (name, type, api_key_id, api_key_hash, activated_at, last_heartbeat_at)
			values ($1, 'global', $1, 'hash', now(), now() - interval '10 seconds') returning id`, fmt.Sprint("sat-", i)).Scan(&ids[i]); err != nil {
			t.Fatal(err)
		}
	}
	live, withProcesses, revoked, rekeyed := ids[0], ids[1], ids[2], ids[3]
	if _, err := pool.Exec(ctx, `update satellites set revoked_at = now() where id = $1`, revoked); err != nil {
		t.Fatal(err)
	}
	// withProcesses reported two processes before; the held heartbeat reports one of them and a new one.
	if _, err := pool.Exec(ctx, `insert into satellite_processes (satellite_id, instance_id, team_id, installation_id, status, health)
		values ($1, 'gone', $2, $2, 'running', 'healthy'), ($1, 'kept', $2, $2, 'running', 'healthy')`, withProcesses, team); err != nil {
		t.Fatal(err)
	}

	now := time.Now().Truncate(time.Microsecond)
	beat := func(id uuid.UUID, hash string, at time.Time, cpu int, procs ...string) store.HeldHeartbeat {
		hb := store.HeldHeartbeat{SatelliteID: id, APIKeyHash: hash, ReceivedAt: at, Heartbeat: store.Heartbeat{
			SystemMetrics: json.RawMessage(fmt.Sprintf(`{"cpuPercent":%d}`, cpu)), ProcessCounts: json.RawMessage(`[]`), OpenSessions: cpu,
		}}
		for _, p := range procs {
			hb.Processes = append(hb.Processes, store.Process{InstanceID: p, TeamID: team, InstallationID: team, Status: "running", Health: "unhealthy", PID: 7})
		}
		return hb
	}
	stored, err := st.RecordHeartbeats(ctx, []store.HeldHeartbeat{
		beat(live, "hash", now, 4),
		beat(withProcesses, "hash", now, 5, "kept", "new"),
		beat(revoked, "hash", now, 6),
		beat(rekeyed, "another hash", now, 7),
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(stored, func(a, b uuid.UUID) int { return slices.Compare(a[:], b[:]) })
	want := []uuid.UUID{live, withProcesses}
	slices.SortFunc(want, func(a, b uuid.UUID) int { return slices.Compare(a[:], b[:]) })
	if !slices.Equal(stored, want) {
		t.Fatalf("stored %v, want %v (revoked and rekeyed left out)", stored, want)
	}

	type row struct {
		last     time.Time
		metrics  string
		sessions int
		history  int
	}
	read := func(id uuid.UUID) row {
		t.Helper()
		var r row
		if err := pool.QueryRow(ctx, `select last_heartbeat_at, system_metrics::text, open_sessions,
			(select count(*) from satellite_heartbeats h where h.satellite_id = s.id) from satellites s where id = $1`, id).
			Scan(&r.last, &r.metrics, &r.sessions, &r.history); err != nil {
			t.Fatal(err)
		}
		return r
	}
	if got := read(live); !got.last.Equal(now) || got.metrics != `{"cpuPercent": 4}` || got.sessions != 4 || got.history != 1 {
		t.Errorf("live satellite: %+v", got)
	}
	for _, id := range []uuid.UUID{revoked, rekeyed} {
		if got := read(id); got.last.Equal(now) || got.history != 0 || got.sessions != 0 {
			t.Errorf("satellite %v stored though revoked or rekeyed: %+v", id, got)
		}
	}
	rows, err := pool.Query(ctx, `select instance_id || ':' || health || ':' || pid from satellite_processes where satellite_id = $1 order by instance_id`, withProcesses)
	if err != nil {
		t.Fatal(err)
	}
	var procs []string
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			t.Fatal(err)
		}
		procs = append(procs, p)
	}
	if want := []string{"kept:unhealthy:7", "new:unhealthy:7"}; !slices.Equal(procs, want) {
		t.Errorf("processes %v, want %v", procs, want)
	}

	// A heartbeat held longer than one stored since does not move the last heard time back.
	if _, err := st.RecordHeartbeats(ctx, []store.HeldHeartbeat{beat(live, "hash", now.Add(-5*time.Second), 8)}); err != nil {
		t.Fatal(err)
	}
	if got := read(live); !got.last.Equal(now) {
		t.Errorf("last heard %v, want it kept at %v", got.last, now)
	}
}
