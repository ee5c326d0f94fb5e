package server_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "github.com/orrery/orrery/gen/orrery/admin/v1"
	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/services/controlplane/internal/regtoken"
	"github.com/orrery/orrery/services/controlplane/internal/satelliteapi"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// configure is an action for commands whose delivery a test is about.
var configure = &satellitev1.Command{Action: &satellitev1.Command_Configure{Configure: &satellitev1.ConfigureAction{
	Event: satellitev1.ConfigureEvent_CONFIGURE_EVENT_INSTALLATION_UPDATED,
}}}

const (
	immediate = satellitev1.CommandPriority_COMMAND_PRIORITY_IMMEDIATE
	high      = satellitev1.CommandPriority_COMMAND_PRIORITY_HIGH
	normal    = satellitev1.CommandPriority_COMMAND_PRIORITY_NORMAL
	low       = satellitev1.CommandPriority_COMMAND_PRIORITY_LOW
)

func TestRegistrationTokenIsSingleUse(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	token := b.createToken(t, "")
	if _, err := b.register(t, 0, token, "first"); err != nil {
		t.Fatalf("first registration: %v", err)
	}
	_, err := b.register(t, 0, token, "second")
	if connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("replayed token: got %v, want PermissionDenied", err)
	}
}

func TestRegistrationRaceRegistersOne(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{replicas: 2})
	token := b.createToken(t, "")
	const racers = 8
	var wg sync.WaitGroup
	errs := make([]error, racers)
	for i := range racers {
		wg.Go(func() { _, errs[i] = b.register(t, i%2, token, fmt.Sprintf("racer-%d", i)) })
	}
	wg.Wait()
	wins := 0
	for _, err := range errs {
		switch {
		case err == nil:
			wins++
		case connect.CodeOf(err) != connect.CodePermissionDenied:
			t.Errorf("losing registration: got %v, want PermissionDenied", err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d registrations succeeded with one token, want exactly 1", wins)
	}
}

func TestRegistrationRefusals(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	revoked := b.createToken(t, "")
	list, err := b.admin(0).ListRegistrationTokens(t.Context(), connect.NewRequest(&adminv1.ListRegistrationTokensRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.admin(0).RevokeRegistrationToken(t.Context(), connect.NewRequest(&adminv1.RevokeRegistrationTokenRequest{
		Id: list.Msg.RegistrationTokens[0].Id,
	})); err != nil {
		t.Fatal(err)
	}
	otherKey, err := regtokenFromOtherControlPlane()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		token string
		code  connect.Code
	}{
		{"revoked", revoked, connect.CodePermissionDenied},
		{"forged", otherKey, connect.CodeUnauthenticated},
		{"garbage", "orreg_not-a-token-at-all", connect.CodeUnauthenticated},
	} {
		_, err := b.register(t, 0, tc.token, "sat-"+tc.name)
		if connect.CodeOf(err) != tc.code {
			t.Errorf("%s token: got %v, want %v", tc.name, err, tc.code)
		}
	}
}

func TestHeartbeatActivatesAndStoresURL(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	sat, err := b.register(t, 0, b.createToken(t, ""), "activating")
	if err != nil {
		t.Fatal(err)
	}
	sats := listSatellites(t, b)
	if got := sats[0].Status; got != satellitev1.SatelliteStatus_SATELLITE_STATUS_INACTIVE {
		t.Fatalf("before heartbeat: status %v, want inactive", got)
	}
	if cmds := sat.poll(t, 0); len(cmds) != 0 {
		t.Fatalf("inactive satellite got %d commands", len(cmds))
	}
	resp := sat.heartbeat(t, "https://sat.example.test")
	if resp.Status != satellitev1.SatelliteStatus_SATELLITE_STATUS_ACTIVE {
		t.Fatalf("heartbeat answered status %v, want active", resp.Status)
	}
	sat.heartbeat(t, "") // later heartbeats carry no URL and must not erase it
	got := listSatellites(t, b)[0]
	if got.Status != satellitev1.SatelliteStatus_SATELLITE_STATUS_ACTIVE || got.Url != "https://sat.example.test" ||
		got.LastHeartbeatAt == nil || got.System.GetCpuPercent() != 12.5 {
		t.Fatalf("after heartbeats: %v", got)
	}
}

// TestHeartbeatOnPollIsRecorded checks that a heartbeat carried by a poll counts as a Heartbeat call would:
// a satellite silent long enough to show offline is active again, with the metrics the poll carried, and a
// revoked satellite's poll is refused.
func TestHeartbeatOnPollIsRecorded(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	sat := b.activeSatellite(t, "")
	if _, err := b.pool(t).Exec(t.Context(), "update satellites set last_heartbeat_at = now() - interval '100 seconds' where id = $1", sat.id); err != nil {
		t.Fatal(err)
	}
	if got := listSatellites(t, b)[0].Status; got != satellitev1.SatelliteStatus_SATELLITE_STATUS_OFFLINE {
		t.Fatalf("silent for 100 s: %v, want offline", got)
	}
	poll := func(beat *satellitev1.HeartbeatRequest) (*satellitev1.PollCommandsResponse, error) {
		resp, err := sat.client.PollCommands(t.Context(), connect.NewRequest(&satellitev1.PollCommandsRequest{Heartbeat: beat}))
		if err != nil {
			return nil, err
		}
		return resp.Msg, nil
	}
	resp, err := poll(nil)
	if err != nil || resp.Heartbeat != nil {
		t.Fatalf("poll without a heartbeat: %v, %v; want no heartbeat answered", resp, err)
	}
	if got := listSatellites(t, b)[0].Status; got != satellitev1.SatelliteStatus_SATELLITE_STATUS_OFFLINE {
		t.Fatalf("a poll without a heartbeat changed the status to %v", got)
	}
	resp, err = poll(&satellitev1.HeartbeatRequest{System: &satellitev1.SystemMetrics{CpuPercent: 42}})
	if err != nil || resp.Heartbeat.GetStatus() != satellitev1.SatelliteStatus_SATELLITE_STATUS_ACTIVE ||
		resp.Heartbeat.GetNextHeartbeat().AsDuration() <= 0 {
		t.Fatalf("poll with a heartbeat: %v, %v; want the heartbeat answered, active", resp, err)
	}
	// The database alone says the satellite was silent, so the replica, which heard it recently and found
	// nothing pending for it, may hold the heartbeat back for a moment.
	waitFor(t, 5*time.Second, "a heartbeat on a poll stored", func() bool {
		got := listSatellites(t, b)[0]
		return got.Status == satellitev1.SatelliteStatus_SATELLITE_STATUS_ACTIVE && got.System.GetCpuPercent() == 42
	})
	if _, err := b.admin(0).RevokeSatellite(t.Context(), connect.NewRequest(&adminv1.RevokeSatelliteRequest{Id: sat.id})); err != nil {
		t.Fatal(err)
	}
	if _, err := poll(&satellitev1.HeartbeatRequest{System: &satellitev1.SystemMetrics{}}); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Fatalf("revoked satellite's poll with a heartbeat: %v, want Unauthenticated", err)
	}
}

// TestQuietSatellitesHeartbeatsAreHeld checks that the heartbeat of a satellite with nothing pending, which
// changes only its figures, is answered at once and stored within a second or so; that one changing what
// placement reads is stored before it is answered; and that a revocation ends the holding, so that the
// revoked satellite is refused and nothing it sends afterwards is stored.
func TestQuietSatellitesHeartbeatsAreHeld(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	sat := b.activeSatellite(t, "")
	if cmds := sat.poll(t, 0); len(cmds) != 0 { // nothing pending: quiet from here
		t.Fatalf("nothing enqueued: got %v", cmds)
	}
	history := func() (n int) {
		t.Helper()
		if err := b.pool(t).QueryRow(t.Context(), `select count(*) from satellite_heartbeats where satellite_id = $1`, sat.id).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before, held := history(), b.replicas[0].srv.HeldHeartbeats()
	beat := func(req *satellitev1.HeartbeatRequest) error {
		_, err := sat.client.Heartbeat(t.Context(), connect.NewRequest(req))
		return err
	}
	if err := beat(&satellitev1.HeartbeatRequest{System: &satellitev1.SystemMetrics{CpuPercent: 77}}); err != nil {
		t.Fatal(err)
	}
	if got := b.replicas[0].srv.HeldHeartbeats() - held; got != 1 {
		t.Fatalf("%d heartbeats held, want 1", got)
	}
	waitFor(t, 5*time.Second, "the held heartbeat stored", func() bool {
		return listSatellites(t, b)[0].System.GetCpuPercent() == 77 && history() == before+1
	})

	// A new capacity changes what placement reads: stored before the answer.
	if err := beat(&satellitev1.HeartbeatRequest{System: &satellitev1.SystemMetrics{CpuPercent: 78}, Capacity: 300}); err != nil {
		t.Fatal(err)
	}
	if got := b.replicas[0].srv.HeldHeartbeats() - held; got != 1 {
		t.Fatalf("the heartbeat with a new capacity was held")
	}
	var capacity int
	if err := b.pool(t).QueryRow(t.Context(), `select capacity from satellites where id = $1`, sat.id).Scan(&capacity); err != nil || capacity != 300 {
		t.Fatalf("capacity %d (%v) right after the heartbeat, want 300", capacity, err)
	}

	if _, err := b.admin(0).RevokeSatellite(t.Context(), connect.NewRequest(&adminv1.RevokeSatelliteRequest{Id: sat.id})); err != nil {
		t.Fatal(err)
	}
	// The revocation's notification reaches the replica within milliseconds; from then on every heartbeat
	// is refused, and none is stored.
	waitFor(t, 5*time.Second, "the revoked satellite refused", func() bool {
		return connect.CodeOf(beat(&satellitev1.HeartbeatRequest{System: &satellitev1.SystemMetrics{CpuPercent: 79}})) == connect.CodeUnauthenticated
	})
	stored := history()
	for range 3 {
		if err := beat(&satellitev1.HeartbeatRequest{System: &satellitev1.SystemMetrics{CpuPercent: 80}}); connect.CodeOf(err) != connect.CodeUnauthenticated {
			t.Fatalf("revoked satellite's heartbeat: %v, want Unauthenticated", err)
		}
	}
	time.Sleep(1500 * time.Millisecond) // past the next store of held heartbeats
	if got := history(); got != stored {
		t.Fatalf("%d heartbeats stored after the revocation was seen, want none", got-stored)
	}
}

// TestUnstorableHeartbeatIsRefusedAlone is the hostile satellite's try: metrics that pass their rules but
// cannot be encoded (an uptime past what a JSON duration holds), sent while its heartbeats are held, would
// fail the statement that stores every held heartbeat. The heartbeat is refused as bad input, and another
// satellite's held heartbeat is still stored.
func TestUnstorableHeartbeatIsRefusedAlone(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	hostile, honest := b.activeSatellite(t, ""), b.activeSatellite(t, "")
	for _, s := range []*satellite{hostile, honest} {
		if cmds := s.poll(t, 0); len(cmds) != 0 { // nothing pending: quiet from here
			t.Fatalf("nothing enqueued: got %v", cmds)
		}
	}
	_, err := hostile.client.Heartbeat(t.Context(), connect.NewRequest(&satellitev1.HeartbeatRequest{
		System: &satellitev1.SystemMetrics{CpuPercent: 5, Uptime: &durationpb.Duration{Seconds: 1e15}},
	}))
	if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "uptime") {
		t.Fatalf("heartbeat with an unencodable uptime: %v, want InvalidArgument naming uptime", err)
	}
	if _, err := honest.client.Heartbeat(t.Context(), connect.NewRequest(&satellitev1.HeartbeatRequest{
		System: &satellitev1.SystemMetrics{CpuPercent: 66},
	})); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the honest satellite's held heartbeat stored", func() bool {
		var cpu float64
		err := b.pool(t).QueryRow(t.Context(), `select (system_metrics->>'cpuPercent')::float8 from satellites where id = $1`, honest.id).Scan(&cpu)
		return err == nil && cpu == 66
	})
}

// TestHeldHeartbeatsFailAlone: a hostile satellite's held heartbeat that the database refuses (an instance
// id with a NUL character, valid UTF-8 that PostgreSQL's text does not take) fails only itself; another's
// held heartbeat, and one reporting an instance twice, are stored.
func TestHeldHeartbeatsFailAlone(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	hostile, twice, honest := b.activeSatellite(t, ""), b.activeSatellite(t, ""), b.activeSatellite(t, "")
	for _, s := range []*satellite{hostile, twice, honest} {
		if cmds := s.poll(t, 0); len(cmds) != 0 { // nothing pending: quiet from here
			t.Fatalf("nothing enqueued: got %v", cmds)
		}
	}
	held := b.replicas[0].srv.HeldHeartbeats()
	team, installation := uuid.NewString(), uuid.NewString()
	process := func(id string) *satellitev1.ProcessReport {
		return &satellitev1.ProcessReport{InstanceId: id, TeamId: team, InstallationId: installation}
	}
	for _, c := range []struct {
		s     *satellite
		cpu   float64
		procs []*satellitev1.ProcessReport
	}{
		{hostile, 13, []*satellitev1.ProcessReport{process("bad\x00id")}},
		{twice, 22, []*satellitev1.ProcessReport{process("same"), process("same")}},
		{honest, 66, nil},
	} {
		if _, err := c.s.client.Heartbeat(t.Context(), connect.NewRequest(&satellitev1.HeartbeatRequest{
			System: &satellitev1.SystemMetrics{CpuPercent: c.cpu}, Processes: c.procs,
		})); err != nil {
			t.Fatal(err)
		}
	}
	if got := b.replicas[0].srv.HeldHeartbeats() - held; got != 3 {
		t.Fatalf("%d heartbeats held, want 3", got)
	}
	cpuOf := func(s *satellite) float64 {
		var cpu float64
		_ = b.pool(t).QueryRow(t.Context(), `select (system_metrics->>'cpuPercent')::float8 from satellites where id = $1`, s.id).Scan(&cpu)
		return cpu
	}
	waitFor(t, 5*time.Second, "the other satellites' held heartbeats stored", func() bool {
		return cpuOf(honest) == 66 && cpuOf(twice) == 22
	})
	if cpuOf(hostile) == 13 {
		t.Error("the heartbeat the database refuses was stored")
	}
}

func TestSatelliteStatusGoesOfflineAfterThreeIntervals(t *testing.T) {
	t.Parallel()
	now := time.Now()
	beat := now.Add(-91 * time.Second)
	sat := store.Satellite{ActivatedAt: &beat, LastHeartbeatAt: &beat}
	if got := sat.Status(now, 90*time.Second); got != store.SatelliteOffline {
		t.Fatalf("silent for 91 s: %v, want offline", got)
	}
	recent := now.Add(-89 * time.Second)
	sat.LastHeartbeatAt = &recent
	if got := sat.Status(now, 90*time.Second); got != store.SatelliteActive {
		t.Fatalf("silent for 89 s: %v, want active", got)
	}
}

func TestRevokedSatelliteIsRefusedOnEveryReplica(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{replicas: 2})
	sat := b.activeSatellite(t, "")
	other := b.connect(1, sat.id, sat.apiKey)
	other.heartbeat(t, "") // warms replica 1's key cache
	if _, err := b.admin(0).RevokeSatellite(t.Context(), connect.NewRequest(&adminv1.RevokeSatelliteRequest{Id: sat.id})); err != nil {
		t.Fatal(err)
	}
	for i, s := range []*satellite{sat, other} {
		_, err := s.client.Heartbeat(t.Context(), connect.NewRequest(&satellitev1.HeartbeatRequest{System: &satellitev1.SystemMetrics{}}))
		if connect.CodeOf(err) != connect.CodeUnauthenticated {
			t.Errorf("replica %d after revocation: got %v, want Unauthenticated", i, err)
		}
	}
}

func TestWrongAPIKeyIsRefused(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	sat := b.activeSatellite(t, "")
	forged := sat.apiKey[:len(sat.apiKey)-4] + "AAAA"
	for _, key := range []string{forged, "not-a-key", ""} {
		_, err := b.connect(0, sat.id, key).client.PollCommands(t.Context(), connect.NewRequest(&satellitev1.PollCommandsRequest{}))
		if connect.CodeOf(err) != connect.CodeUnauthenticated {
			t.Errorf("key %q: got %v, want Unauthenticated", key, err)
		}
	}
}

func TestCommandReachesSatellitePollingAnotherReplica(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{replicas: 2})
	registered := b.activeSatellite(t, "")
	sat := b.connect(1, registered.id, registered.apiKey)

	got := make(chan []*satellitev1.Command, 1)
	started := time.Now()
	go func() {
		resp, err := sat.client.PollCommands(t.Context(), connect.NewRequest(&satellitev1.PollCommandsRequest{
			Wait: durationpb.New(20 * time.Second),
		}))
		if err != nil {
			t.Error(err)
			got <- nil
			return
		}
		got <- resp.Msg.Commands
	}()
	time.Sleep(200 * time.Millisecond) // let the poll reach its wait
	enqueuedAt := time.Now()
	cmd := b.enqueue(t, 0, sat.id, configure, immediate, 0)
	cmds := <-got
	latency := time.Since(enqueuedAt)
	if len(cmds) != 1 || cmds[0].Id != cmd.Command.Id {
		t.Fatalf("poll returned %v, want command %s", cmds, cmd.Command.Id)
	}
	// Not woken, the poll would wait out its 20 s; how fast a woken one answers, BenchmarkCommandDispatch
	// measures.
	if latency > 5*time.Second {
		t.Fatalf("command took %v to reach the satellite through the other replica, want it woken at once", latency)
	}
	t.Logf("delivered across replicas %v after enqueue (poll open %v)", latency, time.Since(started))
}

func TestCommandsArriveByPriorityThenAge(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	sat := b.activeSatellite(t, "")
	var want []string
	low1 := b.enqueue(t, 0, sat.id, configure, low, 0)
	norm1 := b.enqueue(t, 0, sat.id, configure, normal, 0)
	imm1 := b.enqueue(t, 0, sat.id, configure, immediate, 0)
	high1 := b.enqueue(t, 0, sat.id, configure, high, 0)
	imm2 := b.enqueue(t, 0, sat.id, configure, immediate, 0)
	for _, c := range []*adminv1.AdminCommand{imm1, imm2, high1, norm1, low1} {
		want = append(want, c.Command.Id)
	}
	cmds := sat.poll(t, 0)
	var got []string
	for _, c := range cmds {
		got = append(got, c.Id)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("delivery order %v, want %v", got, want)
	}
}

func TestExpiredCommandIsNeverDelivered(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	sat := b.activeSatellite(t, "")
	expiring := b.enqueue(t, 0, sat.id, configure, immediate, time.Second)
	time.Sleep(1100 * time.Millisecond)
	if cmds := sat.poll(t, 0); len(cmds) != 0 {
		t.Fatalf("got %d commands after expiry, want none", len(cmds))
	}
	if state := commandState(t, b, expiring.Command.Id); state != satellitev1.CommandState_COMMAND_STATE_EXPIRED {
		t.Fatalf("expired command state %v", state)
	}
}

func TestLapsedLeaseRedeliversThenFails(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{satellite: satelliteapi.Config{CommandLease: 300 * time.Millisecond}})
	sat := b.activeSatellite(t, "")
	cmd := b.enqueue(t, 0, sat.id, configure, immediate, 0)
	for attempt := int32(1); attempt <= 3; attempt++ {
		// A long poll wakes by itself when the lease lapses.
		cmds := sat.poll(t, 5*time.Second)
		if len(cmds) != 1 || cmds[0].Id != cmd.Command.Id || cmds[0].Attempt != attempt {
			t.Fatalf("delivery %d: got %v", attempt, cmds)
		}
	}
	if cmds := sat.poll(t, time.Second); len(cmds) != 0 {
		t.Fatalf("fourth delivery: got %v, want none", cmds)
	}
	if state := commandState(t, b, cmd.Command.Id); state != satellitev1.CommandState_COMMAND_STATE_FAILED {
		t.Fatalf("after three lapsed leases: state %v, want failed", state)
	}
}

// TestPollsThatSkipTheirReadStillDeliver checks the quiet mark that lets a held poll skip its database read
// for a satellite the replica last found with nothing pending: a poll that does not wait sees a command at
// once, a held poll is woken by the next one, and a lease that lapses is still redelivered (a delivered
// command must keep the replica from trusting quiet).
func TestPollsThatSkipTheirReadStillDeliver(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{satellite: satelliteapi.Config{CommandLease: 300 * time.Millisecond}})
	sat := b.activeSatellite(t, "")
	if cmds := sat.poll(t, 0); len(cmds) != 0 {
		t.Fatalf("nothing enqueued: got %v", cmds)
	}
	cmd := b.enqueue(t, 0, sat.id, configure, immediate, 0)
	pollUntil := func(attempt int32) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			cmds := sat.poll(t, 0)
			if len(cmds) == 1 && cmds[0].Id == cmd.Command.Id && cmds[0].Attempt == attempt {
				return
			}
			if len(cmds) != 0 || time.Now().After(deadline) {
				t.Fatalf("delivery %d: got %v", attempt, cmds)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	pollUntil(1)
	if cmds := sat.poll(t, 0); len(cmds) != 0 {
		t.Fatalf("while the lease runs: got %v", cmds)
	}
	// A held poll wakes by itself when the lease lapses, though the poll before it found nothing.
	if cmds := sat.poll(t, 5*time.Second); len(cmds) != 1 || cmds[0].Id != cmd.Command.Id || cmds[0].Attempt != 2 {
		t.Fatalf("redelivery: got %v", cmds)
	}

	if _, err := sat.client.ReportCommandResult(t.Context(), connect.NewRequest(&satellitev1.ReportCommandResultRequest{
		CommandId: cmd.Command.Id, Result: satellitev1.CommandResult_COMMAND_RESULT_COMPLETED,
	})); err != nil {
		t.Fatal(err)
	}
	if cmds := sat.poll(t, 0); len(cmds) != 0 { // finds nothing pending and no lease: quiet from here
		t.Fatalf("after the result: got %v", cmds)
	}
	held := make(chan []*satellitev1.Command, 1)
	go func() { held <- sat.poll(t, 5*time.Second) }()
	next := b.enqueue(t, 0, sat.id, configure, immediate, 0)
	if cmds := <-held; len(cmds) != 1 || cmds[0].Id != next.Command.Id {
		t.Fatalf("held poll after quiet: got %v, want %s", cmds, next.Command.Id)
	}
}

func TestCommandResultIsIdempotent(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	sat := b.activeSatellite(t, "")
	cmd := b.enqueue(t, 0, sat.id, configure, immediate, 0)
	sat.poll(t, 0)
	for range 2 {
		resp, err := sat.client.ReportCommandResult(t.Context(), connect.NewRequest(&satellitev1.ReportCommandResultRequest{
			CommandId: cmd.Command.Id, Result: satellitev1.CommandResult_COMMAND_RESULT_COMPLETED,
		}))
		if err != nil {
			t.Fatal(err)
		}
		if resp.Msg.State != satellitev1.CommandState_COMMAND_STATE_COMPLETED {
			t.Fatalf("state %v, want completed", resp.Msg.State)
		}
	}
	// A late failure report does not overwrite the completed result.
	resp, err := sat.client.ReportCommandResult(t.Context(), connect.NewRequest(&satellitev1.ReportCommandResultRequest{
		CommandId: cmd.Command.Id, Result: satellitev1.CommandResult_COMMAND_RESULT_FAILED, Error: "late",
	}))
	if err != nil || resp.Msg.State != satellitev1.CommandState_COMMAND_STATE_COMPLETED {
		t.Fatalf("late failure report: %v, %v", resp, err)
	}
	other := b.activeSatellite(t, "")
	_, err = other.client.ReportCommandResult(t.Context(), connect.NewRequest(&satellitev1.ReportCommandResultRequest{
		CommandId: cmd.Command.Id, Result: satellitev1.CommandResult_COMMAND_RESULT_FAILED,
	}))
	if connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("another satellite reporting the command: got %v, want NotFound", err)
	}
}

func TestInvalidRequestsNameTheField(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	sat := b.activeSatellite(t, "")
	for _, tc := range []struct {
		name  string
		call  func() error
		field string
	}{
		{"register without name", func() error {
			_, err := b.register(t, 0, b.createToken(t, ""), "")
			return err
		}, "name"},
		{"result with bad id", func() error {
			_, err := sat.client.ReportCommandResult(t.Context(), connect.NewRequest(&satellitev1.ReportCommandResultRequest{
				CommandId: "nope", Result: satellitev1.CommandResult_COMMAND_RESULT_COMPLETED,
			}))
			return err
		}, "command_id"},
		{"poll waiting too long", func() error {
			_, err := sat.client.PollCommands(t.Context(), connect.NewRequest(&satellitev1.PollCommandsRequest{
				Wait: durationpb.New(time.Hour),
			}))
			return err
		}, "wait"},
		{"team token without team", func() error {
			_, err := b.admin(0).CreateRegistrationToken(t.Context(), connect.NewRequest(&adminv1.CreateRegistrationTokenRequest{
				Name: "x", Scope: adminv1.TokenScope_TOKEN_SCOPE_TEAM,
			}))
			return err
		}, "team_id"},
		{"command without action", func() error {
			_, err := b.admin(0).EnqueueCommand(t.Context(), connect.NewRequest(&adminv1.EnqueueCommandRequest{
				Target: &adminv1.EnqueueCommandRequest_SatelliteId{SatelliteId: sat.id},
			}))
			return err
		}, "action"},
		{"restart of an instance id that is no UUID of an installation", func() error {
			_, err := b.admin(0).EnqueueCommand(t.Context(), connect.NewRequest(&adminv1.EnqueueCommandRequest{
				Target: &adminv1.EnqueueCommandRequest_SatelliteId{SatelliteId: sat.id},
				Action: &adminv1.EnqueueCommandRequest_Restart{Restart: &satellitev1.RestartAction{
					Instances: &satellitev1.InstanceSelector{Target: &satellitev1.InstanceSelector_InstallationId{InstallationId: "x'; drop table"}},
					Reason:    satellitev1.RestartReason_RESTART_REASON_MANUAL_RESTART,
				}},
			}))
			return err
		}, "installation_id"},
		{"revocation of too many tokens", func() error {
			_, err := b.admin(0).EnqueueCommand(t.Context(), connect.NewRequest(&adminv1.EnqueueCommandRequest{
				Target: &adminv1.EnqueueCommandRequest_SatelliteId{SatelliteId: sat.id},
				Action: &adminv1.EnqueueCommandRequest_RevokeTokens{RevokeTokens: &satellitev1.RevokeTokensAction{
					TokenHashes: slices.Repeat([]string{strings.Repeat("ab", 32)}, 1001),
				}},
			}))
			return err
		}, "token_hashes"},
		{"member removal without the member", func() error {
			_, err := b.admin(0).EnqueueCommand(t.Context(), connect.NewRequest(&adminv1.EnqueueCommandRequest{
				Target: &adminv1.EnqueueCommandRequest_SatelliteId{SatelliteId: sat.id},
				Action: &adminv1.EnqueueCommandRequest_Configure{Configure: &satellitev1.ConfigureAction{
					Event: satellitev1.ConfigureEvent_CONFIGURE_EVENT_MEMBER_REMOVED,
				}},
			}))
			return err
		}, "user_id"},
		{"event without id", func() error {
			_, err := sat.client.EmitEvents(t.Context(), connect.NewRequest(&satellitev1.EmitEventsRequest{
				Events: []*satellitev1.Event{{OccurredAt: timestamppb.Now(), Payload: &satellitev1.Event_EventsDropped{
					EventsDropped: &satellitev1.EventsDropped{Count: 1},
				}}},
			}))
			return err
		}, "events[0].id"},
	} {
		err := tc.call()
		var ce *connect.Error
		if !errors.As(err, &ce) || ce.Code() != connect.CodeInvalidArgument {
			t.Errorf("%s: got %v, want InvalidArgument", tc.name, err)
			continue
		}
		if !containsField(ce.Message(), tc.field) {
			t.Errorf("%s: message %q does not name %s", tc.name, ce.Message(), tc.field)
		}
	}
}

func listSatellites(t *testing.T, b *testBundle) []*adminv1.Satellite {
	t.Helper()
	resp, err := b.admin(0).ListSatellites(t.Context(), connect.NewRequest(&adminv1.ListSatellitesRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	return resp.Msg.Satellites
}

func commandState(t *testing.T, b *testBundle, id string) satellitev1.CommandState {
	t.Helper()
	resp, err := b.admin(0).ListCommands(t.Context(), connect.NewRequest(&adminv1.ListCommandsRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range resp.Msg.Commands {
		if c.Command.Id == id {
			return c.State
		}
	}
	t.Fatalf("command %s not listed", id)
	return 0
}

// regtokenFromOtherControlPlane signs a well-formed token with a key this control plane does not have.
func regtokenFromOtherControlPlane() (string, error) {
	signer, err := regtoken.NewSigner([]byte("another-control-plane-key-0123456789"))
	if err != nil {
		return "", err
	}
	return signer.Sign(regtoken.Claims{ID: uuid.New(), Scope: regtoken.ScopeGlobal, ExpiresAt: time.Now().Add(time.Hour)})
}

func containsField(message, field string) bool { return strings.Contains(message, field) }

func TestRevocationEndsOpenLongPoll(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{replicas: 2})
	sat := b.activeSatellite(t, "")
	poller := b.connect(1, sat.id, sat.apiKey)
	polled := make(chan error, 1)
	go func() {
		_, err := poller.client.PollCommands(t.Context(), connect.NewRequest(&satellitev1.PollCommandsRequest{
			Wait: durationpb.New(20 * time.Second),
		}))
		polled <- err
	}()
	time.Sleep(200 * time.Millisecond) // let the poll reach its wait
	if _, err := b.admin(0).RevokeSatellite(t.Context(), connect.NewRequest(&adminv1.RevokeSatelliteRequest{Id: sat.id})); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-polled:
		if connect.CodeOf(err) != connect.CodeUnauthenticated {
			t.Fatalf("open poll after revocation: %v, want Unauthenticated", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("revocation did not end the open long poll")
	}
}

// TestCommandToAllGlobalSatellites sends one command to every live global satellite at once: each gets its
// own, with the policy's priority and the requested lifetime; team satellites and revoked ones get none, and
// the audit log names every command created.
func TestCommandToAllGlobalSatellites(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	first, second := b.activeSatellite(t, ""), b.activeSatellite(t, "")
	revoked := b.activeSatellite(t, "")
	if _, err := b.admin(0).RevokeSatellite(t.Context(), connect.NewRequest(&adminv1.RevokeSatelliteRequest{Id: revoked.id})); err != nil {
		t.Fatal(err)
	}
	f := seedTeam(t, b, "teamsat")
	teamSat := b.activeSatellite(t, f.team.ID.String())
	for _, s := range []*satellite{first, second, teamSat} {
		s.poll(t, 0) // the seeded team's configure commands
	}

	resp, err := b.admin(0).EnqueueCommand(t.Context(), connect.NewRequest(&adminv1.EnqueueCommandRequest{
		Target: &adminv1.EnqueueCommandRequest_AllGlobalSatellites{AllGlobalSatellites: true},
		Action: &adminv1.EnqueueCommandRequest_Configure{Configure: configure.GetConfigure()},
		Ttl:    durationpb.New(time.Hour),
	}))
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{} // satellite → command
	for _, c := range resp.Msg.Commands {
		ids[c.SatelliteId] = c.Command.Id
		if d := c.Command.ExpiresAt.AsTime().Sub(c.Command.CreatedAt.AsTime()); d != time.Hour || c.Command.Priority != immediate {
			t.Errorf("command %s: %v, lives %v; want the policy's priority (immediate) and the requested hour", c.Command.Id, c.Command.Priority, d)
		}
	}
	if len(ids) != 2 || ids[first.id] == "" || ids[second.id] == "" {
		t.Fatalf("commands went to %v, want one for each live global satellite (%s, %s)", ids, first.id, second.id)
	}
	for _, s := range []*satellite{first, second} {
		if got := s.poll(t, 0); len(got) != 1 || got[0].Id != ids[s.id] || got[0].GetConfigure() == nil {
			t.Errorf("global satellite %s received %v, want command %s", s.id, got, ids[s.id])
		}
	}
	if got := teamSat.poll(t, 0); len(got) != 0 {
		t.Errorf("a team satellite received %v", got)
	}

	var target string
	var details map[string]string
	if err := b.pool(t).QueryRow(t.Context(), `select target, details from audit_events where action = 'command.enqueued'`).
		Scan(&target, &details); err != nil {
		t.Fatalf("the audit log has no command.enqueued event: %v", err)
	}
	logged := strings.Split(details["command_ids"], ",")
	slices.Sort(logged)
	want := []string{ids[first.id], ids[second.id]}
	slices.Sort(want)
	if target != "global satellites" || details["action"] != "configure" || !slices.Equal(logged, want) {
		t.Errorf("audit event %q %v, want global satellites, configure and commands %v", target, details, want)
	}
}
