package server_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// BenchmarkUsageQueries measures UsageService latency, as a team admin sees it, over 30 days of rollups
// of a team of 50 users and 20 tools (4 installations of 5 tools). Each user works 10 hours a day, every
// day, calling a tool in 20 minutes of each hour: 300,000 calls a month in 300,000 minute rows, rolled up
// by the rollup job into hours. The rows are written with COPY; the rollup is timed too.
func BenchmarkUsageQueries(b *testing.B) {
	const (
		users, installations, toolsPerInstallation = 50, 4, 5
		days, workHours, activeMinutes             = 30, 10, 20
		callsPerQuery                              = 40
	)
	bundle := setupBench(b, 1)
	ctx := b.Context()
	f := seedTeam(b, bundle, "bench")
	st := bundle.store()
	admin, err := st.CreateUser(ctx, "bench-admin", "admin@bench.test", "Admin")
	if err != nil {
		b.Fatal(err)
	}
	if err := st.AddMember(ctx, f.team.ID, admin.ID, store.RoleTeamAdmin); err != nil {
		b.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, bundle.dbURL)
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()

	userIDs := make([]uuid.UUID, users)
	for i := range userIDs {
		userIDs[i] = uuid.New()
	}
	installationIDs := make([]uuid.UUID, installations)
	for i := range installationIDs {
		installationIDs[i] = uuid.New()
	}
	r := rand.New(rand.NewPCG(7, 13))
	now := time.Now().UTC()
	first := now.Truncate(24*time.Hour).AddDate(0, 0, -days)
	var rows [][]any
	for day := range days {
		for u, user := range userIDs {
			for h := range workHours {
				hour := first.AddDate(0, 0, day).Add(time.Duration(8+h+u%3) * time.Hour)
				for _, m := range r.Perm(60)[:activeMinutes] {
					tool := r.IntN(installations * toolsPerInstallation)
					ms := 5 * (1 + r.ExpFloat64()*float64(1+tool%7)) // tools differ in speed
					failed := int64(0)
					if r.IntN(20) == 0 {
						failed = 1
					}
					rows = append(rows, []any{f.team.ID, hour.Add(time.Duration(m) * time.Minute),
						installationIDs[tool/toolsPerInstallation], fmt.Sprintf("tool_%02d", tool%toolsPerInstallation),
						user, store.LatencyBucket(time.Duration(ms * float64(time.Millisecond))), int64(1), failed,
						int64(100 + r.IntN(400)), int64(1000 + r.IntN(9000))})
				}
			}
		}
	}
	began := time.Now()
	n, err := pool.CopyFrom(ctx, pgx.Identifier{"usage_minutes"}, []string{"team_id", "minute", "installation_id",
		"tool_name", "user_id", "latency_bucket", "calls", "errors", "bytes_in", "bytes_out"}, pgx.CopyFromRows(rows))
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("copied %d minute rows in %v", n, time.Since(began))
	if _, err := pool.Exec(ctx, `insert into usage_dirty_hours (team_id, hour)
		select distinct team_id, date_trunc('hour', minute) from usage_minutes`); err != nil {
		b.Fatal(err)
	}
	began = time.Now()
	var rolled int
	for {
		n, err := st.RollUpUsage(ctx, 500)
		if err != nil {
			b.Fatal(err)
		}
		rolled += n
		if n == 0 {
			break
		}
	}
	var hourRows int64
	if err := pool.QueryRow(ctx, `select count(*) from usage_hours`).Scan(&hourRows); err != nil {
		b.Fatal(err)
	}
	b.Logf("rolled up %d team-hours into %d hour rows in %v", rolled, hourRows, time.Since(began))
	// As autovacuum would by now: statistics for the planner, the visibility map for index-only scans.
	if _, err := pool.Exec(ctx, `vacuum analyze usage_minutes, usage_hours`); err != nil {
		b.Fatal(err)
	}

	c := bundle.usageClient(0, bundle.apiToken(b, admin.ID))
	team := f.team.ID.String()
	month, day := timestamppb.New(now.Add(-days*24*time.Hour)), timestamppb.New(now.Add(-24*time.Hour))
	end := timestamppb.New(now)
	queries := []struct {
		name string
		call func() error
	}{
		{"series-30d-by-hour", func() error {
			_, err := c.GetUsageSeries(ctx, connect.NewRequest(&apiv1.GetUsageSeriesRequest{
				TeamId: team, StartTime: month, EndTime: end, Step: durationpb.New(time.Hour)}))
			return err
		}},
		{"series-30d-by-day", func() error {
			_, err := c.GetUsageSeries(ctx, connect.NewRequest(&apiv1.GetUsageSeriesRequest{
				TeamId: team, StartTime: month, EndTime: end, Step: durationpb.New(24 * time.Hour)}))
			return err
		}},
		{"series-30d-one-user", func() error {
			_, err := c.GetUsageSeries(ctx, connect.NewRequest(&apiv1.GetUsageSeriesRequest{
				TeamId: team, StartTime: month, EndTime: end, Step: durationpb.New(time.Hour), UserId: userIDs[7].String()}))
			return err
		}},
		{"series-24h-by-minute", func() error {
			_, err := c.GetUsageSeries(ctx, connect.NewRequest(&apiv1.GetUsageSeriesRequest{
				TeamId: team, StartTime: day, EndTime: end, Step: durationpb.New(time.Minute)}))
			return err
		}},
		{"top-tools-30d-p95", func() error {
			_, err := c.ListTopTools(ctx, connect.NewRequest(&apiv1.ListTopToolsRequest{
				TeamId: team, StartTime: month, EndTime: end, OrderBy: apiv1.UsageOrder_USAGE_ORDER_P95_LATENCY}))
			return err
		}},
		{"top-users-30d", func() error {
			_, err := c.ListTopUsers(ctx, connect.NewRequest(&apiv1.ListTopUsersRequest{
				TeamId: team, StartTime: month, EndTime: end, Limit: 50}))
			return err
		}},
	}
	for b.Loop() {
		for _, q := range queries {
			samples := make([]time.Duration, 0, callsPerQuery)
			for range callsPerQuery {
				t0 := time.Now()
				if err := q.call(); err != nil {
					b.Fatalf("%s: %v", q.name, err)
				}
				samples = append(samples, time.Since(t0))
			}
			p50, p99 := percentiles(b, q.name, samples)
			load, _ := os.ReadFile("/proc/loadavg") // the figures mean little on a crowded machine
			b.Logf("%s: p50 %v, p99 %v over %d calls; load average %s", q.name, p50, p99, callsPerQuery,
				strings.Fields(string(load) + " ?")[0])
		}
	}
}
