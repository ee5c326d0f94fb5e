package store

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/orrery/orrery/services/controlplane/internal/store/internal/dbsqlc"
)

// How long usage rollups are kept. Minutes are rolled up into hours long before they go.
const (
	UsageMinuteRetention = 30 * 24 * time.Hour
	UsageHourRetention   = 365 * 24 * time.Hour
)

// usageLateness is how old a tool call may be and still be counted: its hour must be recomputable from
// retained minutes, so a call near the minutes' retention is not counted rather than half counted.
const usageLateness = UsageMinuteRetention - 2*time.Hour

// Latency is counted in LatencyBuckets fixed buckets on a log scale: bucket 0 holds calls up to 0.5 ms,
// bucket i ≥ 1 those above its predecessor up to 0.5 ms × √2^i, and the last also everything slower
// (~99 minutes and up). Fixed buckets, unlike a sketch, merge by plain addition, so SQL sums rollups and
// concurrent increments stay exact; a quantile read from them lies in the true value's bucket.
const (
	LatencyBuckets     = 48
	latencyBucketBase  = 0.5 // milliseconds
	latencyBucketRatio = math.Sqrt2
)

// LatencyBucket is the bucket that counts a call of duration d.
func LatencyBucket(d time.Duration) int16 {
	ms := float64(d) / float64(time.Millisecond)
	if ms <= latencyBucketBase {
		return 0
	}
	i := int(math.Ceil(2 * math.Log2(ms/latencyBucketBase)))
	return int16(min(max(i, 1), LatencyBuckets-1))
}

// latencyBucketBounds returns the milliseconds that bucket i covers.
func latencyBucketBounds(i int) (lo, hi float64) {
	if i == 0 {
		return 0, latencyBucketBase
	}
	hi = latencyBucketBase * math.Pow(latencyBucketRatio, float64(i))
	return hi / latencyBucketRatio, hi
}

// Usage is what a set of tool calls adds up to.
type Usage struct {
	Calls, Errors     int64
	BytesIn, BytesOut int64
	// Latency counts the calls per latency bucket.
	Latency [LatencyBuckets]int64
}

func (u *Usage) add(bucket int16, calls, errors, bytesIn, bytesOut int64) {
	u.Calls += calls
	u.Errors += errors
	u.BytesIn += bytesIn
	u.BytesOut += bytesOut
	if bucket >= 0 && int(bucket) < LatencyBuckets {
		u.Latency[bucket] += calls
	}
}

// Merge adds o's calls to u's.
func (u *Usage) Merge(o *Usage) {
	u.Calls += o.Calls
	u.Errors += o.Errors
	u.BytesIn += o.BytesIn
	u.BytesOut += o.BytesOut
	for i, n := range o.Latency {
		u.Latency[i] += n
	}
}

// LatencyQuantile estimates the latency, in milliseconds, under which the fraction q of the calls
// finished; 0 without calls. Within its bucket the estimate is interpolated on the log scale.
func (u *Usage) LatencyQuantile(q float64) float64 {
	var total int64
	for _, n := range u.Latency {
		total += n
	}
	if total == 0 {
		return 0
	}
	rank := q * float64(total)
	var seen int64
	for i, n := range u.Latency {
		if n == 0 || float64(seen+n) < rank {
			seen += n
			continue
		}
		lo, hi := latencyBucketBounds(i)
		within := (rank - float64(seen)) / float64(n)
		if i == 0 {
			return lo + within*(hi-lo)
		}
		return lo * math.Pow(hi/lo, within)
	}
	_, hi := latencyBucketBounds(LatencyBuckets - 1)
	return hi
}

// usageKey is one per-minute rollup row.
type usageKey struct {
	teamID, installationID, userID uuid.UUID
	minute                         time.Time
	tool                           string
	bucket                         int16
}

func compareUsageKeys(a, b usageKey) int {
	return cmp.Or(bytes.Compare(a.teamID[:], b.teamID[:]), a.minute.Compare(b.minute),
		bytes.Compare(a.installationID[:], b.installationID[:]), cmp.Compare(a.tool, b.tool),
		bytes.Compare(a.userID[:], b.userID[:]), cmp.Compare(a.bucket, b.bucket))
}

// addUsage counts the tool calls among events into the per-minute rollups and marks their hours for the
// rollup, in the caller's transaction, so that a call is counted exactly when its event is first stored.
// A call from the future is counted now (clocks disagree); one too old to be rolled up is not counted.
func addUsage(ctx context.Context, q *dbsqlc.Queries, events []Event, now time.Time) error {
	sums := map[usageKey]*Usage{}
	for _, e := range events {
		r := e.RequestLog
		if r == nil {
			continue
		}
		at := e.OccurredAt
		if at.After(now) {
			at = now
		}
		if at.Before(now.Add(-usageLateness)) {
			continue
		}
		k := usageKey{teamID: e.TeamID, installationID: e.InstallationID, minute: at.UTC().Truncate(time.Minute),
			tool: r.ToolName, bucket: LatencyBucket(r.Duration)}
		if r.UserID != nil {
			k.userID = *r.UserID
		}
		u := sums[k]
		if u == nil {
			u = &Usage{}
			sums[k] = u
		}
		var failed int64
		if !r.Success {
			failed = 1
		}
		u.add(k.bucket, 1, failed, max(r.RequestBytes, 0), max(r.ResponseBytes, 0))
	}
	if len(sums) == 0 {
		return nil
	}
	keys := make([]usageKey, 0, len(sums))
	for k := range sums {
		keys = append(keys, k)
	}
	// Concurrent batches take row locks in one order, so they cannot deadlock.
	slices.SortFunc(keys, compareUsageKeys)
	var p dbsqlc.AddUsageMinutesParams
	type teamHour struct {
		teamID uuid.UUID
		hour   time.Time
	}
	var dirty []teamHour
	for _, k := range keys {
		u := sums[k]
		p.TeamIds = append(p.TeamIds, k.teamID)
		p.Minutes = append(p.Minutes, k.minute)
		p.InstallationIds = append(p.InstallationIds, k.installationID)
		p.ToolNames = append(p.ToolNames, k.tool)
		p.UserIds = append(p.UserIds, k.userID)
		p.LatencyBuckets = append(p.LatencyBuckets, k.bucket)
		p.Calls = append(p.Calls, u.Calls)
		p.Errors = append(p.Errors, u.Errors)
		p.BytesIn = append(p.BytesIn, u.BytesIn)
		p.BytesOut = append(p.BytesOut, u.BytesOut)
		th := teamHour{k.teamID, k.minute.Truncate(time.Hour)}
		if !slices.Contains(dirty, th) {
			dirty = append(dirty, th)
		}
	}
	if err := q.AddUsageMinutes(ctx, p); err != nil {
		return translate(err, "add usage minutes")
	}
	slices.SortFunc(dirty, func(a, b teamHour) int {
		return cmp.Or(bytes.Compare(a.teamID[:], b.teamID[:]), a.hour.Compare(b.hour))
	})
	teams, hours := make([]uuid.UUID, len(dirty)), make([]time.Time, len(dirty))
	for i, th := range dirty {
		teams[i], hours[i] = th.teamID, th.hour
	}
	return translate(q.MarkUsageHoursDirty(ctx, teams, hours), "mark usage hours")
}

// RollUpUsage recomputes, from their minutes, the hourly rollups of up to maxHours team-hours whose
// minutes changed since they were last rolled up, and returns how many it recomputed. Hours that an
// ingest is writing to are left for the next call.
func (s *Store) RollUpUsage(ctx context.Context, maxHours int) (hours int, err error) {
	err = s.inTx(ctx, func(q *dbsqlc.Queries) error {
		dirty, err := q.TakeDirtyUsageHours(ctx, int32(min(maxHours, math.MaxInt32)))
		if err != nil {
			return translate(err, "take dirty usage hours")
		}
		if len(dirty) == 0 {
			return nil
		}
		teams, at := make([]uuid.UUID, len(dirty)), make([]time.Time, len(dirty))
		for i, d := range dirty {
			teams[i], at[i] = d.TeamID, d.Hour
		}
		for _, step := range []struct {
			what string
			run  func(context.Context, []uuid.UUID, []time.Time) error
		}{
			{"delete usage hours", q.DeleteUsageHours},
			{"delete usage tool hours", q.DeleteUsageToolHours},
			{"delete usage user hours", q.DeleteUsageUserHours},
			{"roll up usage hours", func(ctx context.Context, teams []uuid.UUID, at []time.Time) error {
				_, err := q.RollUpUsageHours(ctx, teams, at)
				return err
			}},
			// The coarser rollups are sums of the hourly ones just written.
			{"roll up usage tool hours", q.RollUpUsageToolHours},
			{"roll up usage user hours", q.RollUpUsageUserHours},
			{"delete usage team hours", q.DeleteUsageTeamHours},
			{"roll up usage team hours", q.RollUpUsageTeamHours},
		} {
			if err := step.run(ctx, teams, at); err != nil {
				return translate(err, step.what)
			}
		}
		dayTeams, days := usageDays(teams, at)
		for _, step := range []struct {
			what string
			run  func(context.Context, []uuid.UUID, []time.Time) error
		}{
			{"delete usage tool days", q.DeleteUsageToolDays},
			{"delete usage user days", q.DeleteUsageUserDays},
			{"roll up usage tool days", q.RollUpUsageToolDays},
			{"roll up usage user days", q.RollUpUsageUserDays},
		} {
			if err := step.run(ctx, dayTeams, days); err != nil {
				return translate(err, step.what)
			}
		}
		hours = len(dirty)
		return nil
	})
	return hours, err
}

// usageDays returns the distinct UTC days of the given team-hours, as pairs of team and day.
func usageDays(teams []uuid.UUID, hours []time.Time) ([]uuid.UUID, []time.Time) {
	type teamDay struct {
		team uuid.UUID
		day  time.Time
	}
	seen := map[teamDay]bool{}
	var dayTeams []uuid.UUID
	var days []time.Time
	for i, h := range hours {
		td := teamDay{teams[i], h.UTC().Truncate(24 * time.Hour)}
		if !seen[td] {
			seen[td] = true
			dayTeams, days = append(dayTeams, td.team), append(days, td.day)
		}
	}
	return dayTeams, days
}

// PruneUsage deletes minute and hour rollups older than their retention at now, and counts the rows of
// usage_minutes and usage_hours it deleted.
func (s *Store) PruneUsage(ctx context.Context, now time.Time) (minutes, hours int64, err error) {
	if minutes, err = s.q.PruneUsageMinutes(ctx, now.Add(-UsageMinuteRetention)); err != nil {
		return 0, 0, translate(err, "prune usage minutes")
	}
	before := now.Add(-UsageHourRetention)
	if hours, err = s.q.PruneUsageHours(ctx, before); err != nil {
		return minutes, 0, translate(err, "prune usage hours")
	}
	for _, prune := range []struct {
		what string
		run  func(context.Context, time.Time) (int64, error)
	}{
		{"prune usage tool hours", s.q.PruneUsageToolHours},
		{"prune usage user hours", s.q.PruneUsageUserHours},
		{"prune usage team hours", s.q.PruneUsageTeamHours},
		{"prune usage tool days", s.q.PruneUsageToolDays},
		{"prune usage user days", s.q.PruneUsageUserDays},
	} {
		if _, err = prune.run(ctx, before); err != nil {
			return minutes, hours, translate(err, prune.what)
		}
	}
	return minutes, hours, nil
}

// UsageFilter selects a team's tool calls. Zero fields match everything.
type UsageFilter struct {
	TeamID         uuid.UUID
	InstallationID uuid.UUID
	ToolName       string
	UserID         uuid.UUID
	// Start and End bound the calls' minutes: Start ≤ minute < End.
	Start, End time.Time
}

// bucketRow is a sum of rollups in one latency bucket, as every usage query returns them.
type bucketRow struct {
	step                             int32
	bucket                           int16
	calls, errors, bytesIn, bytesOut int64
}

// rowsOf converts the rows of a query, through the function it returns, into bucketRows.
func rowsOf[R any](rows []R, err error) func(func(R) bucketRow) ([]bucketRow, error) {
	return func(row func(R) bucketRow) ([]bucketRow, error) {
		if err != nil {
			return nil, translate(err, "read usage")
		}
		out := make([]bucketRow, len(rows))
		for i, r := range rows {
			out[i] = row(r)
		}
		return out, nil
	}
}

// usageDay is the length of the daily rollups' days, which are UTC days.
const usageDay = 24 * time.Hour

// UsageSeries sums the filter's calls in steps of step from f.Start truncated to the rollups used: daily
// or hourly rollups when step is whole days or hours, per-minute ones otherwise. Of the rollups of a
// resolution it reads the coarsest that the filter allows. It returns the start of the first step and one
// Usage per step up to f.End. Hourly and daily rollups trail the minutes by up to one rollup period.
func (s *Store) UsageSeries(ctx context.Context, f UsageFilter, step time.Duration) (time.Time, []Usage, error) {
	resolution := time.Minute
	switch {
	case step%usageDay == 0:
		resolution = usageDay
	case step%time.Hour == 0:
		resolution = time.Hour
	}
	if step < resolution || step%resolution != 0 {
		return time.Time{}, nil, fmt.Errorf("usage step %s is not whole minutes", step)
	}
	origin := f.Start.UTC().Truncate(resolution)
	steps := int((f.End.Sub(origin) + step - 1) / step)
	points := make([]Usage, max(steps, 0))
	stepSeconds := int64(step / time.Second)
	var rows []bucketRow
	var err error
	allTools := f.InstallationID == uuid.Nil && f.ToolName == ""
	switch {
	case resolution == time.Minute:
		rows, err = rowsOf(s.q.UsageSeriesMinutes(ctx, dbsqlc.UsageSeriesMinutesParams{
			Origin: origin.Unix(), StepSeconds: stepSeconds, TeamID: f.TeamID, Start: origin, EndBefore: f.End,
			InstallationID: f.InstallationID, ToolName: f.ToolName, UserID: f.UserID,
		}))(func(r dbsqlc.UsageSeriesMinutesRow) bucketRow {
			return bucketRow{r.Step, r.LatencyBucket, r.Calls, r.Errors, r.BytesIn, r.BytesOut}
		})
	case f.UserID == uuid.Nil && allTools:
		rows, err = rowsOf(s.q.UsageSeriesTeamHours(ctx, dbsqlc.UsageSeriesTeamHoursParams{
			Origin: origin.Unix(), StepSeconds: stepSeconds, TeamID: f.TeamID, Start: origin, EndBefore: f.End,
		}))(func(r dbsqlc.UsageSeriesTeamHoursRow) bucketRow {
			return bucketRow{r.Step, r.LatencyBucket, r.Calls, r.Errors, r.BytesIn, r.BytesOut}
		})
	case f.UserID == uuid.Nil && resolution == usageDay:
		rows, err = rowsOf(s.q.UsageSeriesToolDays(ctx, dbsqlc.UsageSeriesToolDaysParams{
			Origin: origin.Unix(), StepSeconds: stepSeconds, TeamID: f.TeamID, Start: origin, EndBefore: f.End,
			InstallationID: f.InstallationID, ToolName: f.ToolName,
		}))(func(r dbsqlc.UsageSeriesToolDaysRow) bucketRow {
			return bucketRow{r.Step, r.LatencyBucket, r.Calls, r.Errors, r.BytesIn, r.BytesOut}
		})
	case f.UserID == uuid.Nil:
		rows, err = rowsOf(s.q.UsageSeriesToolHours(ctx, dbsqlc.UsageSeriesToolHoursParams{
			Origin: origin.Unix(), StepSeconds: stepSeconds, TeamID: f.TeamID, Start: origin, EndBefore: f.End,
			InstallationID: f.InstallationID, ToolName: f.ToolName,
		}))(func(r dbsqlc.UsageSeriesToolHoursRow) bucketRow {
			return bucketRow{r.Step, r.LatencyBucket, r.Calls, r.Errors, r.BytesIn, r.BytesOut}
		})
	case allTools && resolution == usageDay:
		rows, err = rowsOf(s.q.UsageSeriesUserDays(ctx, dbsqlc.UsageSeriesUserDaysParams{
			Origin: origin.Unix(), StepSeconds: stepSeconds, TeamID: f.TeamID, UserID: f.UserID, Start: origin,
			EndBefore: f.End,
		}))(func(r dbsqlc.UsageSeriesUserDaysRow) bucketRow {
			return bucketRow{r.Step, r.LatencyBucket, r.Calls, r.Errors, r.BytesIn, r.BytesOut}
		})
	case allTools:
		rows, err = rowsOf(s.q.UsageSeriesUserHours(ctx, dbsqlc.UsageSeriesUserHoursParams{
			Origin: origin.Unix(), StepSeconds: stepSeconds, TeamID: f.TeamID, UserID: f.UserID, Start: origin,
			EndBefore: f.End,
		}))(func(r dbsqlc.UsageSeriesUserHoursRow) bucketRow {
			return bucketRow{r.Step, r.LatencyBucket, r.Calls, r.Errors, r.BytesIn, r.BytesOut}
		})
	default:
		rows, err = rowsOf(s.q.UsageSeriesHours(ctx, dbsqlc.UsageSeriesHoursParams{
			Origin: origin.Unix(), StepSeconds: stepSeconds, TeamID: f.TeamID, Start: origin, EndBefore: f.End,
			InstallationID: f.InstallationID, ToolName: f.ToolName, UserID: f.UserID,
		}))(func(r dbsqlc.UsageSeriesHoursRow) bucketRow {
			return bucketRow{r.Step, r.LatencyBucket, r.Calls, r.Errors, r.BytesIn, r.BytesOut}
		})
	}
	if err != nil {
		return origin, nil, fmt.Errorf("usage series: %w", err)
	}
	for _, r := range rows {
		if r.step >= 0 && int(r.step) < len(points) {
			points[r.step].add(r.bucket, r.calls, r.errors, r.bytesIn, r.bytesOut)
		}
	}
	return origin, points, nil
}

// ToolUsage is one tool's usage.
type ToolUsage struct {
	InstallationID uuid.UUID
	ToolName       string
	Usage
}

// UserUsage is one user's usage; UserID is uuid.Nil for calls that named no user.
type UserUsage struct {
	UserID uuid.UUID
	Usage
}

// wholeHours returns the whole hours within [start, end), which the hourly rollups count; the minutes
// before and after them are counted from the per-minute rollups. An empty span is [end, end).
func wholeHours(start, end time.Time) (time.Time, time.Time) {
	first := start.UTC().Truncate(time.Hour)
	if first.Before(start) {
		first = first.Add(time.Hour)
	}
	last := end.UTC().Truncate(time.Hour)
	if !first.Before(last) {
		return end, end
	}
	return first, last
}

// wholeDays returns the whole UTC days within the whole hours [start, end), which the daily rollups
// count. An empty span is [end, end).
func wholeDays(start, end time.Time) (time.Time, time.Time) {
	first := start.Truncate(usageDay)
	if first.Before(start) {
		first = first.Add(usageDay)
	}
	last := end.Truncate(usageDay)
	if !first.Before(last) {
		return end, end
	}
	return first, last
}

// UsageByTool sums the filter's calls per installation and tool, in no particular order. The filter's
// tool name is ignored.
func (s *Store) UsageByTool(ctx context.Context, f UsageFilter) ([]ToolUsage, error) {
	hoursStart, hoursEnd := wholeHours(f.Start, f.End)
	daysStart, daysEnd := wholeDays(hoursStart, hoursEnd)
	var rows []dbsqlc.UsageByToolRow
	var err error
	if f.UserID == uuid.Nil {
		var team []dbsqlc.UsageByToolOfTeamRow
		team, err = s.q.UsageByToolOfTeam(ctx, dbsqlc.UsageByToolOfTeamParams{
			TeamID: f.TeamID, InstallationID: f.InstallationID, DaysStart: daysStart, DaysEnd: daysEnd,
			HoursStart: hoursStart, HoursEnd: hoursEnd, Start: f.Start, EndBefore: f.End,
		})
		for _, r := range team {
			rows = append(rows, dbsqlc.UsageByToolRow(r))
		}
	} else {
		rows, err = s.q.UsageByTool(ctx, dbsqlc.UsageByToolParams{
			TeamID: f.TeamID, InstallationID: f.InstallationID, UserID: f.UserID,
			HoursStart: hoursStart, HoursEnd: hoursEnd, Start: f.Start, EndBefore: f.End,
		})
	}
	if err != nil {
		return nil, translate(err, "usage by tool")
	}
	type key struct {
		installationID uuid.UUID
		tool           string
	}
	keys, sums := sumBy(rows, func(r dbsqlc.UsageByToolRow) (key, bucketRow) {
		return key{r.InstallationID, r.ToolName}, bucketRow{0, r.LatencyBucket, r.Calls, r.Errors, r.BytesIn, r.BytesOut}
	})
	tools := make([]ToolUsage, len(keys))
	for i, k := range keys {
		tools[i] = ToolUsage{InstallationID: k.installationID, ToolName: k.tool, Usage: sums[i]}
	}
	return tools, nil
}

// sumBy adds up rows into one Usage per key, the keys in the order they first appear.
func sumBy[R any, K comparable](rows []R, keyOf func(R) (K, bucketRow)) ([]K, []Usage) {
	index := map[K]int{}
	var keys []K
	var sums []Usage
	for _, r := range rows {
		k, b := keyOf(r)
		i, ok := index[k]
		if !ok {
			i = len(keys)
			index[k] = i
			keys = append(keys, k)
			sums = append(sums, Usage{})
		}
		sums[i].add(b.bucket, b.calls, b.errors, b.bytesIn, b.bytesOut)
	}
	return keys, sums
}

// UsageByUser sums the filter's calls per user, in no particular order.
func (s *Store) UsageByUser(ctx context.Context, f UsageFilter) ([]UserUsage, error) {
	hoursStart, hoursEnd := wholeHours(f.Start, f.End)
	daysStart, daysEnd := wholeDays(hoursStart, hoursEnd)
	var rows []dbsqlc.UsageByUserRow
	var err error
	if f.InstallationID == uuid.Nil && f.ToolName == "" {
		var team []dbsqlc.UsageByUserOfTeamRow
		team, err = s.q.UsageByUserOfTeam(ctx, dbsqlc.UsageByUserOfTeamParams{
			TeamID: f.TeamID, UserID: f.UserID, DaysStart: daysStart, DaysEnd: daysEnd,
			HoursStart: hoursStart, HoursEnd: hoursEnd, Start: f.Start, EndBefore: f.End,
		})
		for _, r := range team {
			rows = append(rows, dbsqlc.UsageByUserRow(r))
		}
	} else {
		rows, err = s.q.UsageByUser(ctx, dbsqlc.UsageByUserParams{
			TeamID: f.TeamID, InstallationID: f.InstallationID, ToolName: f.ToolName, UserID: f.UserID,
			HoursStart: hoursStart, HoursEnd: hoursEnd, Start: f.Start, EndBefore: f.End,
		})
	}
	if err != nil {
		return nil, translate(err, "usage by user")
	}
	keys, sums := sumBy(rows, func(r dbsqlc.UsageByUserRow) (uuid.UUID, bucketRow) {
		return r.UserID, bucketRow{0, r.LatencyBucket, r.Calls, r.Errors, r.BytesIn, r.BytesOut}
	})
	users := make([]UserUsage, len(keys))
	for i, k := range keys {
		users[i] = UserUsage{UserID: k, Usage: sums[i]}
	}
	return users, nil
}
