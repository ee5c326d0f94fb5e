package e2e_test

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	"github.com/orrery/orrery/e2e"
	adminv1 "github.com/orrery/orrery/gen/orrery/admin/v1"
	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/internal/action"
	"github.com/orrery/orrery/internal/pgtest"
)

const (
	// activeTimeout covers registration, Argon2 on both sides and the first heartbeat.
	activeTimeout = 15 * time.Second
	// commandTimeout is how soon an immediate command must finish on a connected satellite: the design
	// promises delivery in milliseconds, and a configure command costs one configuration fetch.
	commandTimeout = 5 * time.Second
	// afterOutageTimeout adds the satellite's backoff while the control plane was away.
	afterOutageTimeout = 10 * time.Second
	// promptExit is how soon a satellite must exit after SIGTERM.
	promptExit = 5 * time.Second
	// revokeTimeout allows for a long poll held open (25 s) before the satellite's next call is refused.
	revokeTimeout = 35 * time.Second

	// registering is how a satellite's log shows an attempt to register.
	registering = `"msg":"registering with the control plane"`

	completed = satellitev1.CommandState_COMMAND_STATE_COMPLETED
	failed    = satellitev1.CommandState_COMMAND_STATE_FAILED
)

// Commands the tests send, as a global admin asks for them; runCommand fills in the target.
var (
	configure = &adminv1.EnqueueCommandRequest{Action: &adminv1.EnqueueCommandRequest_Configure{Configure: &satellitev1.ConfigureAction{
		Event: satellitev1.ConfigureEvent_CONFIGURE_EVENT_INSTALLATION_UPDATED,
	}}}
	// spawnNothing names an instance no satellite runs.
	spawnNothing = &adminv1.EnqueueCommandRequest{Action: &adminv1.EnqueueCommandRequest_Spawn{Spawn: &satellitev1.SpawnAction{
		Instances: &satellitev1.InstanceSelector{Target: &satellitev1.InstanceSelector_InstanceId{InstanceId: "no-such-instance"}},
	}}}
)

func startControlPlane(t testing.TB) *e2e.ControlPlane {
	t.Helper()
	return e2e.StartControlPlane(t, pgtest.NewDatabase(t))
}

// TestSatelliteRegistersAndServesCommands follows a satellite's life: it registers with a token, turns
// active with its URL, becomes ready, carries out commands, stops cleanly on SIGTERM, and on its next start
// reuses its identity instead of registering again.
func TestSatelliteRegistersAndServesCommands(t *testing.T) {
	t.Parallel()
	cp := startControlPlane(t)
	token := cp.RegistrationToken(t)
	sat := e2e.StartSatellite(t, cp, e2e.SatelliteConfig{RegistrationToken: token})

	registered := waitActive(t, cp, sat.URL)
	e2e.WaitFor(t, 10*time.Second, "satellite /readyz", func() error { return e2e.HTTPOK(sat.URL + "/readyz") })

	configured := runCommand(t, cp, registered.GetId(), configure, completed, commandTimeout)
	out := configured.GetOutput().GetFields()
	if out["etag"].GetStringValue() == "" || out["instances"] == nil {
		t.Errorf("configure output = %v, want the configuration's etag and instance count", configured.GetOutput())
	}
	if n := out["instances"].GetNumberValue(); n != 0 {
		t.Errorf("configure output counts %v instances in an empty database", n)
	}

	// A spawn of an instance the satellite does not run must fail with a reason, not claim to have spawned
	// anything.
	spawned := runCommand(t, cp, registered.GetId(), spawnNothing, failed, commandTimeout)
	if spawned.GetError() == "" {
		t.Error("failed spawn command carries no error message")
	}
	t.Logf("spawn failed as expected: %s", spawned.GetError())

	start := time.Now()
	sat.Signal(t, syscall.SIGTERM)
	if code := sat.Wait(t, promptExit); code != 0 {
		t.Fatalf("satellite exited with status %d after SIGTERM, want 0", code)
	}
	t.Logf("satellite stopped %v after SIGTERM", time.Since(start).Round(time.Millisecond))

	// The same state directory, and the spent token still configured, as an operator's unit file would have.
	again := e2e.StartSatellite(t, cp, e2e.SatelliteConfig{StateDir: sat.StateDir, RegistrationToken: token})
	again.WaitLog(t, 10*time.Second, "that it ignores the registration token", func(e e2e.LogEntry) bool {
		return strings.Contains(e.String("msg"), "already registered")
	})
	// The first heartbeat after a start carries the new URL (the port is new), so seeing it proves the
	// restarted satellite got through with its stored key.
	restarted := waitActive(t, cp, again.URL)
	if restarted.GetId() != registered.GetId() {
		t.Fatalf("restarted satellite is %s, want the original %s", restarted.GetId(), registered.GetId())
	}
	if strings.Contains(again.Output(), registering) {
		t.Error("restarted satellite tried to register again")
	}
	e2e.WaitFor(t, 10*time.Second, "restarted satellite /readyz", func() error { return e2e.HTTPOK(again.URL + "/readyz") })
	runCommand(t, cp, registered.GetId(), configure, completed, commandTimeout)

	tokens, err := cp.Admin().ListRegistrationTokens(t.Context(), connect.NewRequest(&adminv1.ListRegistrationTokensRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	ts := tokens.Msg.GetRegistrationTokens()
	if len(ts) != 1 || ts[0].GetConsumedAt() == nil || ts[0].GetSatelliteId() != registered.GetId() {
		t.Errorf("registration tokens = %v, want the one token, consumed by %s", ts, registered.GetId())
	}
}

// TestSatelliteSurvivesControlPlaneRestart replaces the control plane under a running satellite: the
// satellite rides out the outage on its stored identity and takes commands from the new process.
func TestSatelliteSurvivesControlPlaneRestart(t *testing.T) {
	t.Parallel()
	cp := startControlPlane(t)
	sat := e2e.StartSatellite(t, cp, e2e.SatelliteConfig{RegistrationToken: cp.RegistrationToken(t)})
	registered := waitActive(t, cp, sat.URL)
	runCommand(t, cp, registered.GetId(), configure, completed, commandTimeout)

	cp.Stop(t)
	cp.Start(t)
	if sat.Exited() {
		t.Fatal("satellite exited while the control plane restarted")
	}

	runCommand(t, cp, registered.GetId(), configure, completed, afterOutageTimeout)
	if sat.Exited() {
		t.Fatal("satellite exited after the control plane restarted")
	}
	sats := listSatellites(t, cp)
	if len(sats) != 1 || sats[0].GetId() != registered.GetId() {
		t.Fatalf("satellites after the restart = %v, want only %s", sats, registered.GetId())
	}
	if n := strings.Count(sat.Output(), registering); n != 1 {
		t.Errorf("satellite registered %d times, want once", n)
	}
	if err := e2e.HTTPOK(sat.URL + "/readyz"); err != nil {
		t.Errorf("satellite not ready after the restart: %v", err)
	}
}

// TestRevokedSatelliteStops revokes a running satellite: its next call is refused, and it exits with an
// error that tells the operator why, instead of retrying forever.
func TestRevokedSatelliteStops(t *testing.T) {
	t.Parallel()
	cp := startControlPlane(t)
	sat := e2e.StartSatellite(t, cp, e2e.SatelliteConfig{RegistrationToken: cp.RegistrationToken(t)})
	registered := waitActive(t, cp, sat.URL)
	// Once it has run a command the satellite is idle in a held poll, the usual state to be revoked in.
	runCommand(t, cp, registered.GetId(), configure, completed, commandTimeout)

	start := time.Now()
	if _, err := cp.Admin().RevokeSatellite(t.Context(), connect.NewRequest(&adminv1.RevokeSatelliteRequest{
		Id: registered.GetId(),
	})); err != nil {
		t.Fatal(err)
	}
	code := sat.Wait(t, revokeTimeout)
	t.Logf("revoked satellite exited with status %d after %v", code, time.Since(start).Round(time.Millisecond))
	if code == 0 {
		t.Error("revoked satellite exited with status 0, want a failure")
	}
	if out := sat.Output(); !strings.Contains(out, "refused the satellite's API key") {
		t.Errorf("revoked satellite's output does not say its API key was refused:\n%s", out)
	}
	if sats := listSatellites(t, cp); len(sats) != 1 || sats[0].GetStatus() != satellitev1.SatelliteStatus_SATELLITE_STATUS_REVOKED {
		t.Errorf("satellites after revocation = %v, want one REVOKED", sats)
	}
}

func listSatellites(t testing.TB, cp *e2e.ControlPlane) []*adminv1.Satellite {
	t.Helper()
	resp, err := cp.Admin().ListSatellites(t.Context(), connect.NewRequest(&adminv1.ListSatellitesRequest{}))
	if err != nil {
		t.Fatalf("list satellites: %v", err)
	}
	return resp.Msg.GetSatellites()
}

// waitActive waits until the control plane lists exactly one satellite, active and at url.
func waitActive(t testing.TB, cp *e2e.ControlPlane, url string) *adminv1.Satellite {
	t.Helper()
	var found *adminv1.Satellite
	e2e.WaitFor(t, activeTimeout, "the satellite to be listed active at "+url, func() error {
		sats := listSatellites(t, cp)
		if len(sats) != 1 {
			return fmt.Errorf("%d satellites listed, want 1", len(sats))
		}
		s := sats[0]
		if s.GetStatus() != satellitev1.SatelliteStatus_SATELLITE_STATUS_ACTIVE || s.GetUrl() != url {
			return fmt.Errorf("satellite %s is %s at %q", s.GetId(), s.GetStatus(), s.GetUrl())
		}
		found = s
		return nil
	})
	return found
}

// waitCommand waits up to timeout for a command of the satellite that match selects to finish, and returns
// it.
func waitCommand(t *testing.T, cp *e2e.ControlPlane, satelliteID string, timeout time.Duration,
	match func(*adminv1.AdminCommand) bool) *adminv1.AdminCommand {
	t.Helper()
	var done *adminv1.AdminCommand
	e2e.WaitFor(t, timeout, "a command of satellite "+satelliteID+" to finish", func() error {
		list, err := cp.Admin().ListCommands(t.Context(), connect.NewRequest(&adminv1.ListCommandsRequest{SatelliteId: satelliteID}))
		if err != nil {
			return err
		}
		for _, c := range list.Msg.GetCommands() {
			if !match(c) {
				continue
			}
			switch c.GetState() {
			case completed, failed, satellitev1.CommandState_COMMAND_STATE_EXPIRED:
				done = c
				return nil
			}
			return fmt.Errorf("command %s is %s after %d attempts", c.GetCommand().GetId(), c.GetState(), c.GetAttempts())
		}
		return errors.New("no such command listed yet")
	})
	return done
}

// runCommand enqueues an immediate command, waits up to timeout for it to finish, and fails the test
// unless it ended in state want.
func runCommand(t *testing.T, cp *e2e.ControlPlane, satelliteID string, command *adminv1.EnqueueCommandRequest,
	want satellitev1.CommandState, timeout time.Duration) *adminv1.AdminCommand {
	t.Helper()
	req := proto.CloneOf(command)
	req.Target = &adminv1.EnqueueCommandRequest_SatelliteId{SatelliteId: satelliteID}
	req.Priority = satellitev1.CommandPriority_COMMAND_PRIORITY_IMMEDIATE
	typ := action.Name(req)
	resp, err := cp.Admin().EnqueueCommand(t.Context(), connect.NewRequest(req))
	if err != nil {
		t.Fatalf("enqueue %s: %v", typ, err)
	}
	id := resp.Msg.GetCommands()[0].GetCommand().GetId()
	start := time.Now()
	done := waitCommand(t, cp, satelliteID, timeout, func(c *adminv1.AdminCommand) bool { return c.GetCommand().GetId() == id })
	t.Logf("%s command ended %s in %v", typ, done.GetState(), time.Since(start).Round(time.Millisecond))
	if done.GetState() != want {
		t.Fatalf("%s command ended %s (error %q), want %s", typ, done.GetState(), done.GetError(), want)
	}
	return done
}
