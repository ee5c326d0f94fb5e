package backend_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/services/satellite/internal/backend"
	"github.com/orrery/orrery/services/satellite/internal/backendtest"
	"github.com/orrery/orrery/services/satellite/internal/backoff"
	"github.com/orrery/orrery/services/satellite/internal/desired"
	"github.com/orrery/orrery/services/satellite/internal/identity"
)

const (
	token     = "orreg_test-registration-token"
	publicURL = "http://satellite.test:8081"
	teamA     = "6f1c8a52-3c1e-4a8e-9d0f-6a1f2b3c4d5e"
	teamB     = "0b7e9d1a-5f2c-4b3d-8e4f-1a2b3c4d5e6f"
	waitLimit = 5 * time.Second
)

type testBundle struct {
	srv  *backendtest.Server
	cfg  backend.Config
	dir  string
	view *desired.View
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	srv := backendtest.New(t)
	srv.AddToken(token, satellitev1.SatelliteType_SATELLITE_TYPE_GLOBAL, "")
	srv.SetConfiguration("v0")
	dir := filepath.Join(t.TempDir(), "state")
	view := desired.New()
	return &testBundle{
		srv:  srv,
		dir:  dir,
		view: view,
		cfg: backend.Config{
			URL:               srv.URL,
			RegistrationToken: token,
			Name:              "edge-1",
			Version:           "test",
			PublicURL:         publicURL,
			Identity:          identity.NewStore(dir),
			Desired:           view,
			HeartbeatInterval: time.Hour,
			PollWait:          2 * time.Second,
			Backoff:           backoff.Policy{Min: 5 * time.Millisecond, Max: 20 * time.Millisecond},
		},
	}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// start runs a Communicator until the test ends or the returned stop is called; stop returns Run's error.
func start(t *testing.T, cfg backend.Config) (*backend.Communicator, func() error) {
	t.Helper()
	c, err := backend.New(testLogger(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- c.Run(ctx) }()
	var result error
	stopped := false
	stop := func() error {
		if !stopped {
			cancel()
			result = <-errc
			stopped = true
		}
		return result
	}
	t.Cleanup(func() { stop() })
	return c, stop
}

// waitReady waits until the communicator has registered and applied its first configuration.
func (b *testBundle) waitReady(t *testing.T, c *backend.Communicator) {
	t.Helper()
	changes, unsubscribe := b.view.Subscribe()
	defer unsubscribe()
	select {
	case <-changes:
	case <-time.After(waitLimit):
		t.Fatalf("not ready: %v", c.Ready())
	}
	if err := c.Ready(); err != nil {
		t.Fatalf("Ready after the first configuration: %v", err)
	}
}

func instance(id, team, hash string) *satellitev1.Instance {
	return &satellitev1.Instance{Id: id, TeamId: team, ContentHash: hash, InstallationId: uuid.NewString()}
}

// Actions for the commands of tests.
var (
	configureAction = &satellitev1.Command{Action: &satellitev1.Command_Configure{Configure: &satellitev1.ConfigureAction{
		Event: satellitev1.ConfigureEvent_CONFIGURE_EVENT_INSTALLATION_UPDATED,
	}}}
	installation  = uuid.NewString()
	selection     = &satellitev1.InstanceSelector{Target: &satellitev1.InstanceSelector_InstallationId{InstallationId: installation}}
	spawnAction   = &satellitev1.Command{Action: &satellitev1.Command_Spawn{Spawn: &satellitev1.SpawnAction{Instances: selection}}}
	killAction    = &satellitev1.Command{Action: &satellitev1.Command_Kill{Kill: &satellitev1.KillAction{Instances: selection}}}
	restartAction = &satellitev1.Command{Action: &satellitev1.Command_Restart{Restart: &satellitev1.RestartAction{
		Instances: selection, Reason: satellitev1.RestartReason_RESTART_REASON_MANUAL_RESTART,
	}}}
	healthCheckAction = &satellitev1.Command{Action: &satellitev1.Command_HealthCheck{HealthCheck: &satellitev1.HealthCheckAction{
		InstallationId: installation, Check: satellitev1.HealthCheckType_HEALTH_CHECK_TYPE_CREDENTIAL_VALIDATION,
	}}}
	recoveryAction = &satellitev1.Command{Action: &satellitev1.Command_Recovery{Recovery: &satellitev1.RecoveryAction{
		InstallationId: installation,
	}}}
	revokeAction = &satellitev1.Command{Action: &satellitev1.Command_RevokeTokens{RevokeTokens: &satellitev1.RevokeTokensAction{
		TokenHashes: []string{strings.Repeat("0f", 32)},
	}}}
	redeployAction = &satellitev1.Command{Action: &satellitev1.Command_Redeploy{Redeploy: &satellitev1.RedeployAction{
		InstallationId: installation,
	}}}
	updateAction = &satellitev1.Command{Action: &satellitev1.Command_Update{Update: &satellitev1.UpdateAction{}}}
)

// command is a fresh command, on its first delivery, carrying action's action.
func command(action *satellitev1.Command) *satellitev1.Command {
	cmd := proto.CloneOf(action)
	cmd.Id, cmd.Priority, cmd.Attempt = uuid.NewString(), satellitev1.CommandPriority_COMMAND_PRIORITY_IMMEDIATE, 1
	return cmd
}

func TestRegistersOnceAndStoresIdentity(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c, stop := start(t, b.cfg)
	b.waitReady(t, c)
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}

	regs := b.srv.Registrations()
	if len(regs) != 1 || regs[0].GetName() != "edge-1" || regs[0].GetVersion() != "test" {
		t.Fatalf("registrations = %v", regs)
	}
	info, err := os.Stat(filepath.Join(b.dir, identity.FileName))
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o600 {
		t.Errorf("identity file mode = %#o, want 0600", perm)
	}
	if info, err := os.Stat(b.dir); err != nil || info.Mode().Perm() != 0o700 {
		t.Errorf("state directory mode = %v (%v), want 0700", info.Mode().Perm(), err)
	}
	stored, err := identity.NewStore(b.dir).Load()
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := c.Identity(); stored != id || stored.Type != "global" || stored.APIKey == "" {
		t.Errorf("stored identity %v differs from the one in use %v", stored, id)
	}

	// A second start reuses the identity: the token is spent, so registering again would fail.
	heartbeats := len(b.srv.Heartbeats())
	c2, _ := start(t, b.cfg)
	b.srv.Wait(t.Context(), "the second start's identity and a heartbeat from it", waitLimit, func() bool {
		_, known := c2.Identity()
		return known && len(b.srv.Heartbeats()) > heartbeats
	})
	if n := len(b.srv.Registrations()); n != 1 {
		t.Errorf("second start registered again: %d registrations", n)
	}
	if id, _ := c2.Identity(); id != stored {
		t.Errorf("second start uses %v, want the stored %v", id, stored)
	}
}

func TestHeartbeats(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.srv.SetNextHeartbeat(10 * time.Millisecond)
	b.srv.SetConfiguration("v1", instance("a", teamA, "1"), instance("b", teamA, "1"), instance("c", teamB, "1"))
	b.cfg.Isolation = satellitev1.Isolation_ISOLATION_BWRAP
	start(t, b.cfg)
	b.srv.Wait(t.Context(), "heartbeats", waitLimit, func() bool {
		hbs := b.srv.Heartbeats()
		return len(hbs) >= 3 && len(hbs[len(hbs)-1].GetProcessCounts()) > 0
	})

	hbs := b.srv.Heartbeats()
	if hbs[0].GetUrl() != publicURL {
		t.Errorf("first heartbeat url = %q, want %q", hbs[0].GetUrl(), publicURL)
	}
	for i, hb := range hbs[1:] {
		if hb.GetUrl() != "" {
			t.Errorf("heartbeat %d carries url %q; only the first may", i+1, hb.GetUrl())
		}
	}
	last := hbs[len(hbs)-1]
	if sys := last.GetSystem(); sys.GetMemoryTotalBytes() == 0 || sys.GetDiskTotalBytes() == 0 || sys.GetUptime().AsDuration() <= 0 {
		t.Errorf("heartbeat lacks real system metrics: %v", sys)
	}
	if got := last.GetSystem().GetIsolation(); got != satellitev1.Isolation_ISOLATION_BWRAP {
		t.Errorf("heartbeat reports isolation %v, want bwrap", got)
	}
	counts := map[string][2]uint32{}
	for _, pc := range last.GetProcessCounts() {
		counts[pc.GetTeamId()] = [2]uint32{pc.GetRunning(), pc.GetTotal()}
	}
	if counts[teamA] != [2]uint32{0, 2} || counts[teamB] != [2]uint32{0, 1} {
		t.Errorf("process counts = %v, want nothing running and 2+1 instances", counts)
	}
}

func TestCheckIdentityStopsRun(t *testing.T) {
	t.Parallel()
	b := setup(t)
	refused := errors.New("unfit for a global satellite")
	var seen identity.Identity
	b.cfg.CheckIdentity = func(id identity.Identity) error {
		seen = id
		return refused
	}
	c, err := backend.New(testLogger(t), b.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Run(t.Context()); !errors.Is(err, refused) {
		t.Fatalf("Run = %v, want the check's error", err)
	}
	if seen.Type != "global" || seen.SatelliteID == "" {
		t.Errorf("the check saw %v", seen)
	}
	if n := len(b.srv.Heartbeats()); n != 0 {
		t.Errorf("%d heartbeats sent by a satellite that refused to run", n)
	}
	// The registration is kept: the token is spent, and a start with a fitting configuration uses it.
	if _, err := identity.NewStore(b.dir).Load(); err != nil {
		t.Errorf("identity after a refused start: %v", err)
	}
}

func TestConfigureCommand(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.srv.SetConfiguration("v1", instance("a", teamA, "1"), instance("b", teamA, "1"))
	c, _ := start(t, b.cfg)
	b.waitReady(t, c)

	b.srv.SetConfiguration("v2", instance("b", teamA, "2"), instance("c", teamB, "1"))
	b.srv.Enqueue(command(configureAction))
	b.srv.Wait(t.Context(), "the configure result", waitLimit, func() bool { return len(b.srv.Reports()) == 1 })

	reqs := b.srv.ConfigRequests()
	if got := reqs[len(reqs)-1].GetIfNoneMatch(); got != "v1" {
		t.Errorf("configure fetched with if_none_match %q, want the applied etag v1", got)
	}
	report := b.srv.Reports()[0]
	if report.GetResult() != satellitev1.CommandResult_COMMAND_RESULT_COMPLETED {
		t.Fatalf("configure reported %v: %s", report.GetResult(), report.GetError())
	}
	want := map[string]any{"instances": 2.0, "added": 1.0, "changed": 1.0, "removed": 1.0, "etag": "v2"}
	if got := report.GetOutput().AsMap(); !mapsEqual(got, want) {
		t.Errorf("configure output = %v, want %v", got, want)
	}
	var ids []string
	for _, in := range b.view.Snapshot().Instances {
		ids = append(ids, in.GetId())
	}
	if !slices.Equal(ids, []string{"b", "c"}) {
		t.Errorf("desired view = %v", ids)
	}

	// Unchanged configuration: the control plane answers not_modified and nothing changes.
	b.srv.Enqueue(command(configureAction))
	b.srv.Wait(t.Context(), "the second configure result", waitLimit, func() bool { return len(b.srv.Reports()) == 2 })
	reqs = b.srv.ConfigRequests()
	if got := reqs[len(reqs)-1].GetIfNoneMatch(); got != "v2" {
		t.Errorf("second configure sent if_none_match %q, want v2", got)
	}
	want = map[string]any{"instances": 2.0, "added": 0.0, "changed": 0.0, "removed": 0.0, "etag": "v2"}
	if got := b.srv.Reports()[1].GetOutput().AsMap(); !mapsEqual(got, want) {
		t.Errorf("unchanged configure output = %v, want %v", got, want)
	}
}

func TestConfigurationLargerThanTheLimitIsRefused(t *testing.T) {
	t.Parallel()
	b := setup(t)
	big := instance("a", teamA, "1")
	big.Args = []string{strings.Repeat("x", 8<<10)}
	b.srv.SetConfiguration("v1", big)
	cfg := b.cfg
	cfg.MaxConfigurationBytes = 4 << 10
	c, _ := start(t, cfg)
	b.srv.Wait(t.Context(), "configuration fetched twice", waitLimit, func() bool { return len(b.srv.ConfigRequests()) >= 2 })
	if n := b.view.Len(); n != 0 || c.Ready() == nil {
		t.Fatalf("a configuration over the limit: %d instances applied, ready: %v", n, c.Ready())
	}
	b.srv.SetConfiguration("v2", instance("a", teamA, "2"))
	b.srv.Wait(t.Context(), "the configuration that fits applied", waitLimit, func() bool { return b.view.Len() == 1 })
	if err := c.Ready(); err != nil {
		t.Errorf("not ready once the configuration fits: %v", err)
	}
}

func mapsEqual(a, b map[string]any) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestUnsupportedCommandsFail: without handlers every action but configure fails, saying why; update is
// off without an updater, and a command without an action, or with one that breaks its rules, is refused.
func TestUnsupportedCommandsFail(t *testing.T) {
	t.Parallel()
	b := setup(t)
	start(t, b.cfg)
	unselected := &satellitev1.Command{Action: &satellitev1.Command_Kill{Kill: &satellitev1.KillAction{}}}
	want := map[*satellitev1.Command]string{
		spawnAction:       "no MCP runtime yet",
		killAction:        "no MCP runtime yet",
		restartAction:     "no MCP runtime yet",
		healthCheckAction: "no MCP runtime yet",
		recoveryAction:    "no MCP runtime yet",
		revokeAction:      "no MCP runtime yet",
		redeployAction:    "no MCP runtime yet",
		updateAction:      "self-update is off",
		{}:                "invalid command",
		unselected:        "invalid command",
	}
	byID := map[string]*satellitev1.Command{}
	for action := range want {
		cmd := command(action)
		byID[cmd.GetId()] = action
		b.srv.Enqueue(cmd)
	}
	b.srv.Wait(t.Context(), "all results", waitLimit, func() bool { return len(b.srv.Reports()) == len(want) })
	for _, r := range b.srv.Reports() {
		action := byID[r.GetCommandId()]
		if r.GetResult() != satellitev1.CommandResult_COMMAND_RESULT_FAILED || !strings.Contains(r.GetError(), want[action]) {
			t.Errorf("%v reported %v with error %q, want FAILED mentioning %q", action, r.GetResult(), r.GetError(), want[action])
		}
	}
}

func TestRedeliveredCommandRunsOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c, _ := start(t, b.cfg)
	b.waitReady(t, c)

	cmd := command(configureAction)
	b.srv.Enqueue(cmd)
	b.srv.Wait(t.Context(), "the first result", waitLimit, func() bool { return len(b.srv.Reports()) == 1 })
	fetches := len(b.srv.ConfigRequests())

	redelivered := proto.CloneOf(cmd)
	redelivered.Attempt = 2
	b.srv.Enqueue(redelivered)
	b.srv.Wait(t.Context(), "the second result", waitLimit, func() bool { return len(b.srv.Reports()) == 2 })

	if n := len(b.srv.ConfigRequests()); n != fetches {
		t.Errorf("redelivered configure fetched the configuration again: %d fetches, want %d", n, fetches)
	}
	r := b.srv.Reports()
	if r[1].GetCommandId() != cmd.GetId() || r[1].GetResult() != r[0].GetResult() || !mapsEqual(r[1].GetOutput().AsMap(), r[0].GetOutput().AsMap()) {
		t.Errorf("redelivery reported %v, want the stored result %v", r[1], r[0])
	}
}

func TestUnauthenticatedStopsRun(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.srv.SetNextHeartbeat(10 * time.Millisecond)
	c, err := backend.New(testLogger(t), b.cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- c.Run(ctx) }()
	b.waitReady(t, c)

	b.srv.Revoke()
	err = <-errc
	if !errors.Is(err, backend.ErrKeyRefused) {
		t.Fatalf("Run = %v, want ErrKeyRefused", err)
	}
	for _, want := range []string{"revoked or deleted", "remove the state directory " + b.dir, "ORRERY_REGISTRATION_TOKEN"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if n := len(b.srv.Registrations()); n != 1 {
		t.Errorf("a refused key led to %d registrations; the satellite must not register again by itself", n)
	}
}

func TestNoIdentityAndNoToken(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.cfg.RegistrationToken = ""
	c, err := backend.New(testLogger(t), b.cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = c.Run(t.Context())
	if err == nil || !strings.Contains(err.Error(), "ORRERY_REGISTRATION_TOKEN") || !strings.Contains(err.Error(), "CreateRegistrationToken") {
		t.Fatalf("Run = %v, want an error saying to set ORRERY_REGISTRATION_TOKEN", err)
	}
}

func TestRefusedRegistrationToken(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.cfg.RegistrationToken = "orreg_not-a-valid-token"
	c, err := backend.New(testLogger(t), b.cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = c.Run(t.Context())
	if !errors.Is(err, backend.ErrRegistrationRefused) || !strings.Contains(err.Error(), "CreateRegistrationToken") {
		t.Fatalf("Run = %v, want ErrRegistrationRefused", err)
	}
	if _, err := os.Stat(filepath.Join(b.dir, identity.FileName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("identity stored after a refused registration: %v", err)
	}
}

func TestSurvivesOutage(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.srv.SetNextHeartbeat(10 * time.Millisecond)
	b.srv.SetDown(true)
	c, _ := start(t, b.cfg)
	b.srv.Wait(t.Context(), "registration attempts during the outage", waitLimit, func() bool { return b.srv.Refused() >= 3 })
	b.srv.SetDown(false)
	b.waitReady(t, c)

	b.srv.SetDown(true)
	refused := b.srv.Refused()
	b.srv.Wait(t.Context(), "retries during the second outage", waitLimit, func() bool { return b.srv.Refused() >= refused+5 })
	heartbeats, fetches := len(b.srv.Heartbeats()), len(b.srv.ConfigRequests())
	b.srv.SetDown(false)
	b.srv.Wait(t.Context(), "heartbeats and a configuration resync after the outage", waitLimit, func() bool {
		return len(b.srv.Heartbeats()) > heartbeats+1 && len(b.srv.ConfigRequests()) > fetches
	})

	if n := len(b.srv.Registrations()); n != 1 {
		t.Errorf("%d registrations; an outage must not lead to registering again", n)
	}
	for i, hb := range b.srv.Heartbeats()[1:] {
		if hb.GetUrl() != "" {
			t.Errorf("heartbeat %d after the first carries the url", i+1)
		}
	}
	if err := c.Ready(); err != nil {
		t.Errorf("Ready after the outage: %v", err)
	}
}

func TestPollDoesNotSpinWithoutLongPolling(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.srv.SetHold(false)
	b.cfg.PollInterval = 50 * time.Millisecond
	c, _ := start(t, b.cfg)
	b.waitReady(t, c)
	polls := b.srv.Polls()
	begin := time.Now()
	// A poll that brings a command is followed by the next at once, so six polls may hold fewer than five
	// pauses; three of 50 ms each are certain. A spinning loop takes a few milliseconds for all six.
	b.srv.Wait(t.Context(), "six more polls", waitLimit, func() bool { return b.srv.Polls() >= polls+6 })
	if elapsed := time.Since(begin); elapsed < 150*time.Millisecond {
		t.Errorf("six polls in %v; empty polls must be spaced by the poll interval", elapsed)
	}
}

// TestPollMovesOnFromADrainingReplica: a poll answered by a replica that is shutting down is followed by
// the next within the short jittered switch wait, not the 2 s next_poll the answer carries for older
// satellites, and not at once either.
func TestPollMovesOnFromADrainingReplica(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c, _ := start(t, b.cfg)
	b.waitReady(t, c)
	b.srv.SetDraining(true)
	polls := b.srv.Polls()
	begin := time.Now()
	b.srv.Wait(t.Context(), "five more polls", waitLimit, func() bool { return b.srv.Polls() >= polls+5 })
	// Four full switch waits lie between five polls; each is at least half of DefaultReplicaSwitchWait.
	elapsed := time.Since(begin)
	if elapsed < 4*backend.DefaultReplicaSwitchWait/2 || elapsed > 2*time.Second {
		t.Errorf("five polls to a draining replica took %v, want between %v and 2s",
			elapsed, 4*backend.DefaultReplicaSwitchWait/2)
	}
}

// TestHeartbeatsRideOnPolls checks that after the first heartbeat, which carries the URL, an idle
// satellite's heartbeats travel on its held polls and it sends no Heartbeat calls; and that against a
// control plane that does not record heartbeats on polls it keeps sending Heartbeat calls every interval.
func TestHeartbeatsRideOnPolls(t *testing.T) {
	t.Parallel()
	for _, record := range []bool{true, false} {
		t.Run(fmt.Sprintf("recorded=%t", record), func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			b.srv.SetPollHeartbeats(record)
			b.srv.SetNextHeartbeat(time.Second)
			// Idle polls held for most of an interval, as 25 s against 30 s: the control plane answers a
			// heartbeat riding on a poll only when the poll ends, after the next heartbeat would be due. The
			// interval minus the wait is how late the next poll may go out before a Heartbeat call is due: 400
			// ms, which a loaded machine running the race detector needs (200 ms was not always enough).
			b.cfg.PollWait = 600 * time.Millisecond
			start(t, b.cfg)
			b.srv.Wait(t.Context(), "four heartbeats", waitLimit, func() bool { return len(b.srv.Heartbeats()) >= 4 })
			hbs, calls := b.srv.Heartbeats(), b.srv.HeartbeatCalls()
			if hbs[0].GetUrl() != publicURL {
				t.Errorf("first heartbeat url = %q, want %q", hbs[0].GetUrl(), publicURL)
			}
			switch {
			case record && calls != 1:
				t.Errorf("%d Heartbeat calls beside heartbeats on polls, want only the first", calls)
			case !record && calls != len(hbs):
				t.Errorf("%d Heartbeat calls for %d heartbeats to a control plane that ignores them on polls", calls, len(hbs))
			}
			for i, hb := range hbs[1:] {
				if hb.GetSystem().GetMemoryTotalBytes() == 0 || hb.GetUrl() != "" {
					t.Errorf("heartbeat %d: system %v, url %q", i+1, hb.GetSystem(), hb.GetUrl())
				}
			}
		})
	}
}

// TestRefusedPollHeartbeatDoesNotHoldUpCommands checks that when the control plane refuses a poll for the
// heartbeat it carries, the satellite polls without one, so commands still arrive, and heartbeats go as
// Heartbeat calls.
func TestRefusedPollHeartbeatDoesNotHoldUpCommands(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.srv.SetNextHeartbeat(200 * time.Millisecond)
	b.srv.SetRefusePollHeartbeats(true)
	b.cfg.PollWait = 100 * time.Millisecond
	start(t, b.cfg)
	b.srv.Wait(t.Context(), "three Heartbeat calls", waitLimit, func() bool { return b.srv.HeartbeatCalls() >= 3 })
	// Each Heartbeat call that gets through says polls may carry heartbeats again, which costs one refusal;
	// retrying the refused heartbeat on every poll would cost one per backoff step.
	if refusals, calls := b.srv.PollHeartbeatRefusals(), b.srv.HeartbeatCalls(); refusals > calls+1 {
		t.Errorf("%d polls refused for their heartbeat beside %d Heartbeat calls: the refused heartbeat kept riding", refusals, calls)
	}
	b.srv.Enqueue(command(configureAction))
	b.srv.Wait(t.Context(), "the configure result", waitLimit, func() bool { return len(b.srv.Reports()) == 1 })
}
