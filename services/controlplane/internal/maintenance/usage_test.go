package maintenance_test

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"

	"github.com/orrery/orrery/services/controlplane/internal/maintenance"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// toolCall is a request-log event of a member's instance of in, at a given time.
func toolCall(t *testing.T, pool *pgxpool.Pool, in store.Installation, user store.User, tool string, at time.Time, d time.Duration, ok bool) store.Event {
	t.Helper()
	var instanceID string
	if err := pool.QueryRow(t.Context(), `select id from instances where installation_id = $1 and user_id = $2`,
		in.ID, user.ID).Scan(&instanceID); err != nil {
		t.Fatalf("find the instance: %v", err)
	}
	return store.Event{ID: uuid.New(), OccurredAt: at, TeamID: in.TeamID, InstallationID: in.ID, InstanceID: instanceID,
		RequestLog: &store.RequestLog{UserID: &user.ID, ToolName: tool, Duration: d, Success: ok, RequestBytes: 10, ResponseBytes: 100}}
}

// hourTotals reads a team's hourly rollups of one hour, checking that the per-tool and per-user rollups
// add up to the same.
func hourTotals(t *testing.T, pool *pgxpool.Pool, teamID uuid.UUID, hour time.Time) (calls, errors, bytesOut int64) {
	t.Helper()
	var sums [4][3]int64
	for i, table := range []string{"usage_hours", "usage_tool_hours", "usage_user_hours", "usage_team_hours"} {
		if err := pool.QueryRow(t.Context(), `select coalesce(sum(calls), 0), coalesce(sum(errors), 0), coalesce(sum(bytes_out), 0)
			from `+table+` where team_id = $1 and hour = $2`, teamID, hour).Scan(&sums[i][0], &sums[i][1], &sums[i][2]); err != nil {
			t.Fatal(err)
		}
	}
	if sums[1] != sums[0] || sums[2] != sums[0] || sums[3] != sums[0] {
		t.Errorf("hour %s: hourly, per-tool, per-user and team rollups hold %v; want the same sums", hour, sums)
	}
	var days [2]int64
	var hours int64
	if err := pool.QueryRow(t.Context(), `select (select coalesce(sum(calls), 0) from usage_tool_days where team_id = $1 and day = $2),
		(select coalesce(sum(calls), 0) from usage_user_days where team_id = $1 and day = $2),
		(select coalesce(sum(calls), 0) from usage_hours where team_id = $1 and hour >= $2 and hour < $2 + interval '1 day')`,
		teamID, hour.Truncate(24*time.Hour)).Scan(&days[0], &days[1], &hours); err != nil {
		t.Fatal(err)
	}
	if days[0] != hours || days[1] != hours {
		t.Errorf("day of %s: per-tool and per-user days hold %v calls, its hours %d", hour, days, hours)
	}
	return sums[0][0], sums[0][1], sums[0][2]
}

// TestUsageRollupFollowsLateCalls rolls minutes up into hours, then receives a late call for an hour
// already rolled up: the next rollup counts it, and an unchanged hour is not recomputed.
func TestUsageRollupFollowsLateCalls(t *testing.T) {
	t.Parallel()
	st, pool := newStoreAndPool(t)
	in, user := installation(t, st, "files", "stdio")
	sat := newSatellite(t, st)
	hour := time.Now().UTC().Truncate(time.Hour).Add(-3 * time.Hour)
	events := []store.Event{
		toolCall(t, pool, in, user, "read", hour.Add(time.Minute), 3*time.Millisecond, true),
		toolCall(t, pool, in, user, "read", hour.Add(59*time.Minute), 300*time.Millisecond, false),
		toolCall(t, pool, in, user, "write", hour.Add(30*time.Minute), time.Second, true),
		toolCall(t, pool, in, user, "read", hour.Add(time.Hour), time.Millisecond, true), // the next hour
	}
	if _, _, err := st.RecordEvents(t.Context(), sat, events); err != nil {
		t.Fatal(err)
	}
	w := &maintenance.UsageRollupWorker{Logger: logger(t), Store: st}
	if err := w.Work(t.Context(), &river.Job[maintenance.UsageRollupArgs]{}); err != nil {
		t.Fatal(err)
	}
	if calls, errors, out := hourTotals(t, pool, in.TeamID, hour); calls != 3 || errors != 1 || out != 300 {
		t.Errorf("hour rollup = %d calls, %d errors, %d bytes out; want 3, 1, 300", calls, errors, out)
	}
	if calls, _, _ := hourTotals(t, pool, in.TeamID, hour.Add(time.Hour)); calls != 1 {
		t.Errorf("next hour rollup = %d calls, want 1", calls)
	}

	late := toolCall(t, pool, in, user, "read", hour.Add(10*time.Minute), 3*time.Millisecond, true)
	if _, _, err := st.RecordEvents(t.Context(), sat, []store.Event{late}); err != nil {
		t.Fatal(err)
	}
	if n, err := st.RollUpUsage(t.Context(), 100); err != nil || n != 1 {
		t.Fatalf("rollup after a late call recomputed %d hours (%v), want only the late call's", n, err)
	}
	if calls, _, _ := hourTotals(t, pool, in.TeamID, hour); calls != 4 {
		t.Errorf("hour rollup after a late call = %d calls, want 4", calls)
	}
	if n, err := st.RollUpUsage(t.Context(), 100); err != nil || n != 0 {
		t.Errorf("rollup with nothing new recomputed %d hours (%v)", n, err)
	}
	// The per-tool split survives the rollup: reading whole hours comes from usage_hours alone.
	tools, err := st.UsageByTool(t.Context(), store.UsageFilter{TeamID: in.TeamID, Start: hour, End: hour.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, tu := range tools {
		got[tu.ToolName] = tu.Calls
	}
	if len(got) != 2 || got["read"] != 3 || got["write"] != 1 {
		t.Errorf("tools of the hour = %v, want read 3, write 1", got)
	}
	users, err := st.UsageByUser(t.Context(), store.UsageFilter{TeamID: in.TeamID, Start: hour, End: hour.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if len(users) != 1 || users[0].UserID != user.ID || users[0].Calls != 4 || users[0].Errors != 1 {
		t.Errorf("users of the hour = %+v, want the one user with 4 calls, 1 failed", users)
	}
}

// TestCallsTooOldToRollUpAreNotCounted: a call whose minutes are about to be pruned would make its hour
// be recomputed from part of its minutes, so it is not counted at all; a call from the future counts now.
func TestCallsTooOldToRollUpAreNotCounted(t *testing.T) {
	t.Parallel()
	st, pool := newStoreAndPool(t)
	in, user := installation(t, st, "files", "stdio")
	sat := newSatellite(t, st)
	now := time.Now()
	if _, _, err := st.RecordEvents(t.Context(), sat, []store.Event{
		toolCall(t, pool, in, user, "read", now.Add(-store.UsageMinuteRetention+time.Hour), time.Millisecond, true),
		toolCall(t, pool, in, user, "read", now.Add(24*time.Hour), time.Millisecond, true),
	}); err != nil {
		t.Fatal(err)
	}
	var n int
	var latest time.Time
	if err := pool.QueryRow(t.Context(), `select count(*), max(minute) from usage_minutes where team_id = $1`, in.TeamID).Scan(&n, &latest); err != nil {
		t.Fatal(err)
	}
	if n != 1 || latest.After(time.Now()) {
		t.Errorf("%d minute rows, the latest at %s; want only the future call, counted now", n, latest)
	}
}

// TestPruneDropsUsagePastRetention keeps a month of minutes and a year of hours.
func TestPruneDropsUsagePastRetention(t *testing.T) {
	t.Parallel()
	st, pool := newStoreAndPool(t)
	in, _ := installation(t, st, "files", "stdio")
	now := time.Now().UTC().Truncate(time.Hour)
	for _, age := range []time.Duration{time.Hour, 29 * 24 * time.Hour, 31 * 24 * time.Hour, 364 * 24 * time.Hour, 366 * 24 * time.Hour} {
		at := now.Add(-age)
		exec(t, pool, `insert into usage_minutes values ($1, $2, $3, 'read', $4, 3, 1, 0, 1, 1)`, in.TeamID, at, in.ID, uuid.Nil)
		exec(t, pool, `insert into usage_hours values ($1, $2, $3, 'read', $4, 3, 1, 0, 1, 1)`, in.TeamID, at, in.ID, uuid.Nil)
		exec(t, pool, `insert into usage_tool_hours values ($1, $2, $3, 'read', 3, 1, 0, 1, 1)`, in.TeamID, at, in.ID)
		exec(t, pool, `insert into usage_user_hours values ($1, $2, $3, 3, 1, 0, 1, 1)`, in.TeamID, at, uuid.Nil)
		exec(t, pool, `insert into usage_team_hours values ($1, $2, 3, 1, 0, 1, 1)`, in.TeamID, at)
		exec(t, pool, `insert into usage_tool_days values ($1, $2, $3, 'read', 3, 1, 0, 1, 1)`, in.TeamID, at, in.ID)
		exec(t, pool, `insert into usage_user_days values ($1, $2, $3, 3, 1, 0, 1, 1)`, in.TeamID, at, uuid.Nil)
	}
	w := &maintenance.PruneWorker{Logger: logger(t), Store: st, Retention: maintenance.DefaultRetention}
	if err := w.Work(t.Context(), &river.Job[maintenance.PruneArgs]{}); err != nil {
		t.Fatal(err)
	}
	var minutes int
	if err := pool.QueryRow(t.Context(), `select count(*) from usage_minutes`).Scan(&minutes); err != nil {
		t.Fatal(err)
	}
	if minutes != 2 {
		t.Errorf("kept %d minute rows, want 2 (up to 29 days old)", minutes)
	}
	for _, table := range []string{"usage_hours", "usage_tool_hours", "usage_user_hours", "usage_team_hours", "usage_tool_days", "usage_user_days"} {
		var n int
		if err := pool.QueryRow(t.Context(), `select count(*) from `+table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 4 {
			t.Errorf("kept %d rows of %s, want 4 (up to 364 days old)", n, table)
		}
	}
}
