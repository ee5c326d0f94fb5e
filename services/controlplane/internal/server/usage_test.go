package server_test

import (
	"math"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	"github.com/orrery/orrery/gen/orrery/api/v1/apiv1connect"
	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// usageClient calls UsageService on replica i as the owner of token.
func (b *testBundle) usageClient(i int, token string) apiv1connect.UsageServiceClient {
	return apiv1connect.NewUsageServiceClient(&http.Client{Transport: bearerTransport{token, testClient.Transport}}, b.replicas[i].url)
}

// usageCall is a request-log event for usage counting, with its sizes and outcome.
func usageCall(f teamFixture, u store.User, tool string, d time.Duration, ok bool, bytesIn, bytesOut uint64) *satellitev1.Event {
	e := requestEvent(f, u, tool)
	rl := e.GetRequestLog()
	rl.Duration, rl.Success, rl.RequestBytes, rl.ResponseBytes = durationpb.New(d), ok, bytesIn, bytesOut
	if !ok {
		rl.Error = "failed"
	}
	return e
}

// lastHour is a range that holds every call made in this test: the hour up to now. It must not end past
// now: a range that holds a whole clock hour reads it from the hourly rollups, which trail the minutes by
// up to maintenance.UsageRollupPeriod, and a range ending a minute ahead held one in the last minute of
// every hour.
func lastHour() (*timestamppb.Timestamp, *timestamppb.Timestamp) {
	now := time.Now()
	return timestamppb.New(now.Add(-time.Hour)), timestamppb.New(now)
}

func usageSeries(t *testing.T, c apiv1connect.UsageServiceClient, req *apiv1.GetUsageSeriesRequest) *apiv1.GetUsageSeriesResponse {
	t.Helper()
	if req.StartTime == nil {
		req.StartTime, req.EndTime = lastHour()
	}
	if req.Step == nil {
		req.Step = durationpb.New(time.Minute)
	}
	resp, err := c.GetUsageSeries(t.Context(), connect.NewRequest(req))
	if err != nil {
		t.Fatal(err)
	}
	return resp.Msg
}

// TestUsageCountsConcurrentSatellitesExactly has two satellites, each talking to its own replica, send
// batches of tool calls at the same time, and then every batch again through the other satellite, as a
// retry after a lost answer would: each call is counted exactly once, in the series and both top lists.
func TestUsageCountsConcurrentSatellitesExactly(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{replicas: 2})
	red := seedViewers(t, b, "red")
	one := b.activeSatellite(t, "")
	two, err := b.register(t, 1, b.createToken(t, ""), "sat-two")
	if err != nil {
		t.Fatal(err)
	}
	two.heartbeat(t, "")

	const batches, perBatch = 30, 20
	type tally struct{ calls, errors, bytesIn, bytesOut uint64 }
	var total tally
	byTool, byUser := map[string]*tally{}, map[string]*tally{}
	count := func(m map[string]*tally, k string, ok bool, in, out uint64) {
		if m[k] == nil {
			m[k] = &tally{}
		}
		m[k].calls++
		m[k].bytesIn += in
		m[k].bytesOut += out
		if !ok {
			m[k].errors++
		}
	}
	var all [][]*satellitev1.Event
	for i := range batches {
		var batch []*satellitev1.Event
		for j := range perBatch {
			user, tool := red.teamFixture.alice, []string{"read", "write", "search"}[(i+j)%3]
			if j%4 == 0 {
				user = red.teamFixture.bob
			}
			ok := (i*perBatch+j)%7 != 0
			in, out := uint64(10+j), uint64(100*(i+1))
			batch = append(batch, usageCall(red.teamFixture, user, tool, time.Duration(1+j)*time.Millisecond, ok, in, out))
			count(byTool, tool, ok, in, out)
			count(byUser, user.ID.String(), ok, in, out)
			total.calls++
			total.bytesIn += in
			total.bytesOut += out
			if !ok {
				total.errors++
			}
		}
		all = append(all, batch)
	}
	send := func(from func(i int) *satellite) {
		var wg sync.WaitGroup
		for i, batch := range all {
			wg.Go(func() { emit(t, from(i), batch...) })
		}
		wg.Wait()
	}
	sats := []*satellite{one, two}
	send(func(i int) *satellite { return sats[i%2] })
	send(func(i int) *satellite { return sats[(i+1)%2] })

	got := usageSeries(t, red.admin0(b), &apiv1.GetUsageSeriesRequest{TeamId: red.team.ID.String()}).Total
	if got.Calls != total.calls || got.Errors != total.errors || got.BytesIn != total.bytesIn || got.BytesOut != total.bytesOut {
		t.Errorf("series total = %v; want %d calls, %d errors, %d bytes in, %d bytes out", got, total.calls,
			total.errors, total.bytesIn, total.bytesOut)
	}
	start, end := lastHour()
	tools, err := red.admin0(b).ListTopTools(t.Context(), connect.NewRequest(&apiv1.ListTopToolsRequest{
		TeamId: red.team.ID.String(), StartTime: start, EndTime: end,
	}))
	if err != nil {
		t.Fatal(err)
	}
	if len(tools.Msg.Tools) != len(byTool) {
		t.Errorf("%d top tools, want %d", len(tools.Msg.Tools), len(byTool))
	}
	for _, tu := range tools.Msg.Tools {
		want := byTool[tu.ToolName]
		if want == nil || tu.Stats.Calls != want.calls || tu.Stats.Errors != want.errors || tu.Stats.BytesOut != want.bytesOut ||
			tu.InstallationId != red.installation.ID.String() {
			t.Errorf("tool %s = %v; want %+v", tu.ToolName, tu.Stats, want)
		}
	}
	users, err := red.admin0(b).ListTopUsers(t.Context(), connect.NewRequest(&apiv1.ListTopUsersRequest{
		TeamId: red.team.ID.String(), StartTime: start, EndTime: end,
	}))
	if err != nil {
		t.Fatal(err)
	}
	if len(users.Msg.Users) != 2 || users.Msg.Users[0].UserId != red.teamFixture.alice.ID.String() {
		t.Errorf("top users = %v, want alice before bob", users.Msg.Users)
	}
	for _, uu := range users.Msg.Users {
		if want := byUser[uu.UserId]; want == nil || uu.Stats.Calls != want.calls || uu.Stats.Errors != want.errors {
			t.Errorf("user %s = %v; want %+v", uu.UserId, uu.Stats, want)
		}
	}
}

// admin0 is the team admin's UsageService client on replica 0.
func (v viewers) admin0(b *testBundle) apiv1connect.UsageServiceClient {
	return b.usageClient(0, v.adminToken)
}

// TestUsageBatchDeliveredTwiceCountsOnce resends a batch, one of whose events it also repeats: the
// second delivery stores nothing and counts nothing.
func TestUsageBatchDeliveredTwiceCountsOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	red := seedViewers(t, b, "red")
	sat := b.activeSatellite(t, "")
	first := usageCall(red.teamFixture, red.teamFixture.alice, "read", 5*time.Millisecond, true, 1, 2)
	batch := []*satellitev1.Event{first, usageCall(red.teamFixture, red.teamFixture.alice, "read", 50*time.Millisecond, false, 1, 2), first}
	for i, want := range []uint32{2, 0} {
		resp, err := sat.client.EmitEvents(t.Context(), connect.NewRequest(&satellitev1.EmitEventsRequest{Events: batch}))
		if err != nil {
			t.Fatal(err)
		}
		if resp.Msg.Stored != want {
			t.Errorf("delivery %d stored %d events, want %d", i+1, resp.Msg.Stored, want)
		}
	}
	got := usageSeries(t, red.admin0(b), &apiv1.GetUsageSeriesRequest{TeamId: red.team.ID.String()}).Total
	if got.Calls != 2 || got.Errors != 1 || got.BytesIn != 2 {
		t.Errorf("usage after two deliveries = %v; want 2 calls, 1 error, 2 bytes in", got)
	}
	// The two calls took 5 and 50 ms: the median is the faster and the 95th percentile the slower, each
	// within the √2 width of a latency bucket.
	if got.P50LatencyMs < 5/math.Sqrt2 || got.P50LatencyMs > 5*math.Sqrt2 || got.P95LatencyMs < 50/math.Sqrt2 || got.P95LatencyMs > 50*math.Sqrt2 {
		t.Errorf("latency p50 %.1f ms, p95 %.1f ms; want 5 and 50 within a factor of √2", got.P50LatencyMs, got.P95LatencyMs)
	}
}

// TestUsageVisibility: a team user sees only their own calls and may not ask for a colleague's; team
// admins see everyone's.
func TestUsageVisibility(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	red := seedViewers(t, b, "red")
	sat := b.activeSatellite(t, "")
	emit(t, sat, usageCall(red.teamFixture, red.teamFixture.alice, "read", time.Millisecond, true, 1, 1),
		usageCall(red.teamFixture, red.teamFixture.bob, "read", time.Millisecond, true, 1, 1),
		usageCall(red.teamFixture, red.teamFixture.bob, "write", time.Millisecond, true, 1, 1))
	team := red.team.ID.String()
	alice := b.usageClient(0, red.aliceToken)

	if got := usageSeries(t, alice, &apiv1.GetUsageSeriesRequest{TeamId: team}).Total.Calls; got != 1 {
		t.Errorf("alice sees %d calls, want only her own 1", got)
	}
	if got := usageSeries(t, red.admin0(b), &apiv1.GetUsageSeriesRequest{TeamId: team}).Total.Calls; got != 3 {
		t.Errorf("the team admin sees %d calls, want 3", got)
	}
	if got := usageSeries(t, red.admin0(b), &apiv1.GetUsageSeriesRequest{TeamId: team, UserId: red.teamFixture.bob.ID.String(), ToolName: "write"}).Total.Calls; got != 1 {
		t.Errorf("the team admin sees %d of bob's write calls, want 1", got)
	}
	start, end := lastHour()
	users, err := alice.ListTopUsers(t.Context(), connect.NewRequest(&apiv1.ListTopUsersRequest{TeamId: team, StartTime: start, EndTime: end}))
	if err != nil {
		t.Fatal(err)
	}
	if len(users.Msg.Users) != 1 || users.Msg.Users[0].UserId != red.teamFixture.alice.ID.String() {
		t.Errorf("alice's top users = %v, want only herself", users.Msg.Users)
	}
	tools, err := alice.ListTopTools(t.Context(), connect.NewRequest(&apiv1.ListTopToolsRequest{TeamId: team, StartTime: start, EndTime: end}))
	if err != nil {
		t.Fatal(err)
	}
	if len(tools.Msg.Tools) != 1 || tools.Msg.Tools[0].ToolName != "read" {
		t.Errorf("alice's top tools = %v, want only read, which she called", tools.Msg.Tools)
	}
	for name, call := range map[string]func() error{
		"GetUsageSeries": func() error {
			_, err := alice.GetUsageSeries(t.Context(), connect.NewRequest(&apiv1.GetUsageSeriesRequest{
				TeamId: team, StartTime: start, EndTime: end, Step: durationpb.New(time.Minute), UserId: red.teamFixture.bob.ID.String(),
			}))
			return err
		},
		"ListTopTools": func() error {
			_, err := alice.ListTopTools(t.Context(), connect.NewRequest(&apiv1.ListTopToolsRequest{
				TeamId: team, StartTime: start, EndTime: end, UserId: red.teamFixture.bob.ID.String(),
			}))
			return err
		},
	} {
		if err := call(); connect.CodeOf(err) != connect.CodePermissionDenied || !strings.Contains(err.Error(), "own usage") {
			t.Errorf("%s of bob's calls by alice: %v, want PermissionDenied saying she sees her own usage", name, err)
		}
	}
}

// TestUsageRefusesOtherTeams is what an attacker in team blue tries against team red: naming red's
// team, red's installation or red's users from blue, and calling without credentials.
func TestUsageRefusesOtherTeams(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	red := seedViewers(t, b, "red")
	blue := seedViewers(t, b, "blue")
	sat := b.activeSatellite(t, "")
	emit(t, sat, usageCall(red.teamFixture, red.teamFixture.alice, "secret_tool", time.Millisecond, true, 1, 1))
	start, end := lastHour()
	step := durationpb.New(time.Minute)
	calls := func(c apiv1connect.UsageServiceClient, team, installation, user string) map[string]error {
		_, seriesErr := c.GetUsageSeries(t.Context(), connect.NewRequest(&apiv1.GetUsageSeriesRequest{
			TeamId: team, StartTime: start, EndTime: end, Step: step, InstallationId: installation, UserId: user}))
		_, toolsErr := c.ListTopTools(t.Context(), connect.NewRequest(&apiv1.ListTopToolsRequest{
			TeamId: team, StartTime: start, EndTime: end, InstallationId: installation, UserId: user}))
		_, usersErr := c.ListTopUsers(t.Context(), connect.NewRequest(&apiv1.ListTopUsersRequest{
			TeamId: team, StartTime: start, EndTime: end, InstallationId: installation}))
		return map[string]error{"GetUsageSeries": seriesErr, "ListTopTools": toolsErr, "ListTopUsers": usersErr}
	}
	blueAdmin := blue.admin0(b)
	redTeam := calls(blueAdmin, red.team.ID.String(), "", "")
	noTeam := calls(blueAdmin, uuid.NewString(), "", "")
	for name, err := range redTeam {
		if connect.CodeOf(err) != connect.CodePermissionDenied {
			t.Errorf("%s of red's team by blue's admin: %v, want PermissionDenied", name, err)
		}
		// The answer is the same for a team that does not exist: red's existence is not confirmed.
		if other := noTeam[name]; err == nil || other == nil || err.Error() != other.Error() {
			t.Errorf("%s answers %v for red's team and %v for no team; want the same", name, err, other)
		}
	}
	for name, err := range calls(b.usageClient(0, "not-a-token"), red.team.ID.String(), "", "") {
		if connect.CodeOf(err) != connect.CodeUnauthenticated {
			t.Errorf("%s with a wrong token: %v, want Unauthenticated", name, err)
		}
	}
	anonymous := apiv1connect.NewUsageServiceClient(testClient, b.replicas[0].url)
	for name, err := range calls(anonymous, red.team.ID.String(), "", "") {
		if connect.CodeOf(err) != connect.CodeUnauthenticated {
			t.Errorf("%s without credentials: %v, want Unauthenticated", name, err)
		}
	}
	// Within blue's own team, red's ids match nothing: blue sees no trace of red's calls.
	for name, err := range calls(blueAdmin, blue.team.ID.String(), red.installation.ID.String(), red.teamFixture.alice.ID.String()) {
		if err != nil {
			t.Errorf("%s of blue filtered by red's ids: %v", name, err)
		}
	}
	got := usageSeries(t, blueAdmin, &apiv1.GetUsageSeriesRequest{TeamId: blue.team.ID.String(), InstallationId: red.installation.ID.String()})
	tools, err := blueAdmin.ListTopTools(t.Context(), connect.NewRequest(&apiv1.ListTopToolsRequest{
		TeamId: blue.team.ID.String(), StartTime: start, EndTime: end, InstallationId: red.installation.ID.String()}))
	if err != nil || got.Total.Calls != 0 || len(tools.Msg.Tools) != 0 {
		t.Errorf("blue filtered by red's installation sees %d calls and tools %v (%v); want nothing", got.Total.Calls, tools, err)
	}
	if got := usageSeries(t, red.admin0(b), &apiv1.GetUsageSeriesRequest{TeamId: red.team.ID.String()}).Total.Calls; got != 1 {
		t.Errorf("red's admin sees %d calls, want 1: the attack must not have hidden them either", got)
	}
}

// TestUsageRefusesBadRanges: every unbounded or malformed request is InvalidArgument, with a message
// that says what to change.
func TestUsageRefusesBadRanges(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	red := seedViewers(t, b, "red")
	c := red.admin0(b)
	team := red.team.ID.String()
	now := time.Now()
	ts := timestamppb.New
	minute := durationpb.New(time.Minute)
	for _, tc := range []struct {
		name string
		req  *apiv1.GetUsageSeriesRequest
		want string
	}{
		{"end before start", &apiv1.GetUsageSeriesRequest{TeamId: team, StartTime: ts(now), EndTime: ts(now.Add(-time.Hour)), Step: minute}, "end_time must be after start_time"},
		{"empty range", &apiv1.GetUsageSeriesRequest{TeamId: team, StartTime: ts(now), EndTime: ts(now), Step: minute}, "end_time must be after start_time"},
		{"over a year", &apiv1.GetUsageSeriesRequest{TeamId: team, StartTime: ts(now.Add(-367 * 24 * time.Hour)), EndTime: ts(now), Step: durationpb.New(24 * time.Hour)}, "at most 366 days"},
		{"too many steps", &apiv1.GetUsageSeriesRequest{TeamId: team, StartTime: ts(now.Add(-48 * time.Hour)), EndTime: ts(now), Step: minute}, "more than 1440 steps"},
		{"no start", &apiv1.GetUsageSeriesRequest{TeamId: team, EndTime: ts(now), Step: minute}, "start_time"},
		{"no step", &apiv1.GetUsageSeriesRequest{TeamId: team, StartTime: ts(now.Add(-time.Hour)), EndTime: ts(now)}, "step"},
		{"step under a minute", &apiv1.GetUsageSeriesRequest{TeamId: team, StartTime: ts(now.Add(-time.Hour)), EndTime: ts(now), Step: durationpb.New(time.Second)}, "step"},
		{"step of part minutes", &apiv1.GetUsageSeriesRequest{TeamId: team, StartTime: ts(now.Add(-time.Hour)), EndTime: ts(now), Step: durationpb.New(90 * time.Second)}, "whole minutes"},
		{"step over a month", &apiv1.GetUsageSeriesRequest{TeamId: team, StartTime: ts(now.Add(-300 * 24 * time.Hour)), EndTime: ts(now), Step: durationpb.New(32 * 24 * time.Hour)}, "step"},
		{"minute steps past their retention", &apiv1.GetUsageSeriesRequest{TeamId: team, StartTime: ts(now.Add(-40 * 24 * time.Hour)), EndTime: ts(now.Add(-39 * 24 * time.Hour)), Step: minute}, "kept 30 days"},
		{"installation not a UUID", &apiv1.GetUsageSeriesRequest{TeamId: team, StartTime: ts(now.Add(-time.Hour)), EndTime: ts(now), Step: minute, InstallationId: "../other"}, "installation_id"},
		{"tool name too long", &apiv1.GetUsageSeriesRequest{TeamId: team, StartTime: ts(now.Add(-time.Hour)), EndTime: ts(now), Step: minute, ToolName: strings.Repeat("x", 257)}, "tool_name"},
	} {
		_, err := c.GetUsageSeries(t.Context(), connect.NewRequest(tc.req))
		if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want InvalidArgument mentioning %q", tc.name, err, tc.want)
		}
	}
	_, err := c.ListTopTools(t.Context(), connect.NewRequest(&apiv1.ListTopToolsRequest{
		TeamId: team, StartTime: ts(now.Add(-time.Hour)), EndTime: ts(now), Limit: 101}))
	if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "limit") {
		t.Errorf("a limit of 101: %v, want InvalidArgument naming limit", err)
	}
	_, err = c.ListTopUsers(t.Context(), connect.NewRequest(&apiv1.ListTopUsersRequest{
		TeamId: team, StartTime: ts(now.Add(-400 * 24 * time.Hour)), EndTime: ts(now)}))
	if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "366 days") {
		t.Errorf("top users over 400 days: %v, want InvalidArgument", err)
	}
	// A year in steps of a day is fine: it reads the hourly rollups.
	resp, err := c.GetUsageSeries(t.Context(), connect.NewRequest(&apiv1.GetUsageSeriesRequest{
		TeamId: team, StartTime: ts(now.Add(-365 * 24 * time.Hour)), EndTime: ts(now), Step: durationpb.New(24 * time.Hour)}))
	if err != nil || len(resp.Msg.Points) < 365 || len(resp.Msg.Points) > 366 {
		var n int
		if resp != nil {
			n = len(resp.Msg.Points)
		}
		t.Errorf("a year by day: %d points, %v", n, err)
	}
}

// TestUsageHourlyReadsAgreeWithMinutes reads the same calls from the per-minute rollups and, once rolled
// up, from each kind of hourly rollup a filter selects: the counts agree.
func TestUsageHourlyReadsAgreeWithMinutes(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	red := seedViewers(t, b, "red")
	sat := b.activeSatellite(t, "")
	alice, bob := red.teamFixture.alice, red.teamFixture.bob
	calls := []*satellitev1.Event{usageCall(red.teamFixture, alice, "read", time.Millisecond, true, 1, 1),
		usageCall(red.teamFixture, alice, "write", 80*time.Millisecond, false, 1, 1),
		usageCall(red.teamFixture, bob, "read", 3*time.Millisecond, true, 1, 1),
		usageCall(red.teamFixture, bob, "read", 9*time.Millisecond, true, 1, 1)}
	at := time.Now()
	for _, c := range calls {
		c.OccurredAt = timestamppb.New(at) // one hour holds them all
	}
	emit(t, sat, calls...)
	if _, err := b.store().RollUpUsage(t.Context(), 100); err != nil {
		t.Fatal(err)
	}
	// The hour of the calls, whole: a step of an hour and a top list over whole hours read hourly rollups.
	hour, day := at.UTC().Truncate(time.Hour), at.UTC().Truncate(24*time.Hour)
	start, end := timestamppb.New(hour), timestamppb.New(hour.Add(time.Hour))
	team, asAlice := red.team.ID.String(), b.usageClient(0, red.aliceToken)
	for _, tc := range []struct {
		name   string
		client apiv1connect.UsageServiceClient
		req    *apiv1.GetUsageSeriesRequest
		want   uint64
	}{
		{"the team (per-tool rollups)", red.admin0(b), &apiv1.GetUsageSeriesRequest{TeamId: team}, 4},
		{"one tool (per-tool rollups)", red.admin0(b), &apiv1.GetUsageSeriesRequest{TeamId: team, ToolName: "read"}, 3},
		{"alice (per-user rollups)", asAlice, &apiv1.GetUsageSeriesRequest{TeamId: team}, 2},
		{"bob's reads (hourly rollups)", red.admin0(b), &apiv1.GetUsageSeriesRequest{TeamId: team, UserId: bob.ID.String(), ToolName: "read"}, 2},
	} {
		byMinute := proto.Clone(tc.req).(*apiv1.GetUsageSeriesRequest)
		byMinute.StartTime, byMinute.EndTime, byMinute.Step = start, end, durationpb.New(time.Minute)
		byHour := proto.Clone(tc.req).(*apiv1.GetUsageSeriesRequest)
		byHour.StartTime, byHour.EndTime, byHour.Step = start, end, durationpb.New(time.Hour)
		byDay := proto.Clone(tc.req).(*apiv1.GetUsageSeriesRequest)
		byDay.StartTime, byDay.EndTime, byDay.Step = timestamppb.New(day), timestamppb.New(day.Add(24*time.Hour)), durationpb.New(24*time.Hour)
		minutes, hours, days := usageSeries(t, tc.client, byMinute), usageSeries(t, tc.client, byHour), usageSeries(t, tc.client, byDay)
		if minutes.Total.Calls != tc.want || !proto.Equal(minutes.Total, hours.Total) || !proto.Equal(minutes.Total, days.Total) ||
			len(hours.Points) != 1 || len(days.Points) != 1 {
			t.Errorf("%s: by minute %v, by hour %v in %d points, by day %v in %d points; want %d calls all ways, in 1 point by hour and day",
				tc.name, minutes.Total, hours.Total, len(hours.Points), days.Total, len(days.Points), tc.want)
		}
	}
	// Over the whole UTC day, top lists read the daily rollups.
	dayTools, err := red.admin0(b).ListTopTools(t.Context(), connect.NewRequest(&apiv1.ListTopToolsRequest{
		TeamId: team, StartTime: timestamppb.New(day), EndTime: timestamppb.New(day.Add(24 * time.Hour))}))
	if err != nil || len(dayTools.Msg.Tools) != 2 || dayTools.Msg.Tools[0].ToolName != "read" || dayTools.Msg.Tools[0].Stats.Calls != 3 {
		t.Errorf("tools of the day (daily rollups): %v, %v; want read with 3 calls, then write", dayTools, err)
	}
	dayUsers, err := red.admin0(b).ListTopUsers(t.Context(), connect.NewRequest(&apiv1.ListTopUsersRequest{
		TeamId: team, StartTime: timestamppb.New(day), EndTime: timestamppb.New(day.Add(24 * time.Hour))}))
	if err != nil || len(dayUsers.Msg.Users) != 2 || dayUsers.Msg.Users[0].Stats.Calls != 2 || dayUsers.Msg.Users[1].Stats.Calls != 2 {
		t.Errorf("users of the day (daily rollups): %v, %v; want alice and bob with 2 calls each", dayUsers, err)
	}
	tools, err := asAlice.ListTopTools(t.Context(), connect.NewRequest(&apiv1.ListTopToolsRequest{TeamId: team, StartTime: start, EndTime: end}))
	if err != nil || len(tools.Msg.Tools) != 2 || tools.Msg.Tools[0].Stats.Calls != 1 {
		t.Errorf("alice's tools of the hour (hourly rollups): %v, %v; want read and write, one call each", tools, err)
	}
	users, err := red.admin0(b).ListTopUsers(t.Context(), connect.NewRequest(&apiv1.ListTopUsersRequest{
		TeamId: team, StartTime: start, EndTime: end, ToolName: "read"}))
	if err != nil || len(users.Msg.Users) != 2 || users.Msg.Users[0].UserId != bob.ID.String() || users.Msg.Users[0].Stats.Calls != 2 {
		t.Errorf("users of read in the hour (hourly rollups): %v, %v; want bob with 2, then alice", users, err)
	}
	users, err = red.admin0(b).ListTopUsers(t.Context(), connect.NewRequest(&apiv1.ListTopUsersRequest{
		TeamId: team, StartTime: start, EndTime: end, OrderBy: apiv1.UsageOrder_USAGE_ORDER_P95_LATENCY}))
	if err != nil || len(users.Msg.Users) != 2 || users.Msg.Users[0].UserId != alice.ID.String() {
		t.Errorf("users of the hour by p95 (per-user rollups): %v, %v; want alice, whose write took 80 ms, first", users, err)
	}
}
