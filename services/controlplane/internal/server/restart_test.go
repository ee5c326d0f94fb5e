package server_test

import (
	"encoding/json"
	"math"
	"net/http"
	"slices"
	"testing"

	"connectrpc.com/connect"

	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	"github.com/orrery/orrery/gen/orrery/api/v1/apiv1connect"
	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
)

// restartsOf returns the restart commands among cmds.
func restartsOf(cmds []*satellitev1.Command) []*satellitev1.Command {
	var out []*satellitev1.Command
	for _, c := range cmds {
		if c.GetRestart() != nil {
			out = append(out, c)
		}
	}
	return out
}

// TestTeamRestartsItsInstances restarts instances as a team admin, as the instance's own member, as another
// member, and as another team's admin; only the first two get a command to a satellite, and only the team's
// satellite receives it.
func TestTeamRestartsItsInstances(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	red := seedViewers(t, b, "red")
	blue := seedViewers(t, b, "blue")
	redSat := b.activeSatellite(t, red.team.ID.String())
	blueSat := b.activeSatellite(t, blue.team.ID.String())
	aliceID, bobID := red.instanceID(red.teamFixture.alice), red.instanceID(red.teamFixture.bob)
	emit(t, redSat,
		statusEvent(red.teamFixture, red.teamFixture.alice, satellitev1.InstanceStatus_INSTANCE_STATUS_PERMANENTLY_FAILED),
		statusEvent(red.teamFixture, red.teamFixture.bob, satellitev1.InstanceStatus_INSTANCE_STATUS_PERMANENTLY_FAILED))
	emit(t, blueSat,
		statusEvent(blue.teamFixture, blue.teamFixture.alice, satellitev1.InstanceStatus_INSTANCE_STATUS_PERMANENTLY_FAILED))
	// Whatever setting the teams up queued is not what this test is about.
	redSat.poll(t, 0)
	blueSat.poll(t, 0)
	team := red.team.ID.String()
	restart := func(c apiv1connect.InstanceServiceClient, team, instance string) ([]string, error) {
		t.Helper()
		resp, err := c.RestartInstance(t.Context(), connect.NewRequest(&apiv1.RestartInstanceRequest{TeamId: team, InstanceId: instance}))
		if err != nil {
			return nil, err
		}
		return resp.Msg.CommandIds, nil
	}
	// delivered checks that redSat receives exactly the restarts ids, of instance.
	delivered := func(who string, ids []string, instance string) {
		t.Helper()
		if len(ids) != 1 {
			t.Fatalf("%s: command ids %v, want one for the team's one satellite", who, ids)
		}
		got := restartsOf(redSat.poll(t, 0))
		if len(got) != 1 || got[0].Id != ids[0] {
			t.Fatalf("%s: the team's satellite received restarts %v, want command %s", who, got, ids[0])
		}
		c := got[0]
		if c.Priority != satellitev1.CommandPriority_COMMAND_PRIORITY_HIGH || c.TeamId != team ||
			c.GetRestart().GetReason() != satellitev1.RestartReason_RESTART_REASON_MANUAL_RESTART ||
			c.GetRestart().GetInstances().GetInstanceId() != instance {
			t.Errorf("%s: command %v, want a high-priority manual restart of %s", who, c, instance)
		}
		if d := c.ExpiresAt.AsTime().Sub(c.CreatedAt.AsTime()); d.Minutes() != 5 {
			t.Errorf("%s: command lives %v, want 5m", who, d)
		}
	}

	ids, err := restart(red.admin, team, bobID)
	if err != nil {
		t.Fatalf("the team admin restarting bob's instance: %v", err)
	}
	delivered("the team admin", ids, bobID)

	ids, err = restart(red.alice, team, aliceID)
	if err != nil {
		t.Fatalf("alice restarting her own permanently failed instance: %v", err)
	}
	delivered("alice", ids, aliceID)

	_, err = restart(red.alice, team, bobID)
	wantCode(t, "alice restarting bob's instance", err, connect.CodeNotFound, "")
	_, err = restart(red.alice, team, red.team.Slug+"-files-"+red.team.Slug+"-nobody-"+red.installation.ID.String())
	wantCode(t, "alice restarting an instance that does not exist", err, connect.CodeNotFound, "")
	_, err = restart(red.admin, team, blue.instanceID(blue.teamFixture.alice))
	wantCode(t, "red's admin restarting blue's instance under red", err, connect.CodeNotFound, "")
	_, err = restart(red.admin, blue.team.ID.String(), blue.instanceID(blue.teamFixture.alice))
	wantCode(t, "red's admin restarting blue's instance under blue", err, connect.CodePermissionDenied, "")
	if got := restartsOf(redSat.poll(t, 0)); len(got) != 0 {
		t.Errorf("refused restarts reached red's satellite: %v", got)
	}
	if got := restartsOf(blueSat.poll(t, 0)); len(got) != 0 {
		t.Errorf("blue's satellite received red's restarts: %v", got)
	}

	// Each restart is in the team's audit log, with who asked for it.
	events, err := b.store().ListAuditEvents(t.Context(), &red.team.ID, math.MaxInt64, 100)
	if err != nil {
		t.Fatal(err)
	}
	var restarted []string
	for _, e := range events {
		if e.Action == "instance.restarted" {
			restarted = append(restarted, e.Actor+" "+e.Target+" "+e.Details["status"])
		}
	}
	want := []string{
		"alice@red.test " + aliceID + " permanently_failed",
		"carol@red.test " + bobID + " permanently_failed",
	}
	if !slices.Equal(restarted, want) {
		t.Errorf("audit log of restarts, newest first: %q, want %q", restarted, want)
	}
}

// TestRESTRestart restarts through POST …/instances/{id}:restart: a member their own instance, not another's.
func TestRESTRestart(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	v := seedViewers(t, b, "rest-restart")
	sat := b.activeSatellite(t, v.team.ID.String())
	emit(t, sat,
		statusEvent(v.teamFixture, v.teamFixture.alice, satellitev1.InstanceStatus_INSTANCE_STATUS_PERMANENTLY_FAILED),
		statusEvent(v.teamFixture, v.teamFixture.bob, satellitev1.InstanceStatus_INSTANCE_STATUS_ONLINE))
	sat.poll(t, 0)
	post := func(instance, token string) (int, string) {
		t.Helper()
		url := b.replicas[0].url + "/api/teams/" + v.team.ID.String() + "/mcp/instances/" + instance + ":restart"
		a := rest(t, http.MethodPost, url, token, "{}")
		return a.status, string(a.body)
	}

	code, body := post(v.instanceID(v.teamFixture.alice), v.aliceToken)
	var out struct{ CommandIDs []string }
	if err := json.Unmarshal([]byte(body), &out); code != http.StatusOK || err != nil || len(out.CommandIDs) != 1 {
		t.Fatalf("POST restart of alice's instance as alice: %d %s", code, body)
	}
	if got := restartsOf(sat.poll(t, 0)); len(got) != 1 || got[0].Id != out.CommandIDs[0] {
		t.Errorf("the satellite received restarts %v, want %s", got, out.CommandIDs[0])
	}
	if code, body := post(v.instanceID(v.teamFixture.bob), v.aliceToken); code != http.StatusNotFound {
		t.Errorf("POST restart of bob's instance as alice: %d %s, want 404", code, body)
	}
	if code, _ := post(v.instanceID(v.teamFixture.alice), ""); code != http.StatusUnauthorized {
		t.Errorf("POST restart without a token: %d, want 401", code)
	}
	if got := restartsOf(sat.poll(t, 0)); len(got) != 0 {
		t.Errorf("refused restarts reached the satellite: %v", got)
	}
}

// TestRestartsAreBounded has a member restart their own instance in a loop: past the burst the control
// plane refuses with a retry hint instead of queueing another command for the satellites the team shares,
// and another member's restarts are not held up by it.
func TestRestartsAreBounded(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	red := seedViewers(t, b, "red")
	sat := b.activeSatellite(t, red.team.ID.String())
	sat.poll(t, 0)
	team := red.team.ID.String()
	restart := func(c apiv1connect.InstanceServiceClient, instance string) error {
		_, err := c.RestartInstance(t.Context(), connect.NewRequest(&apiv1.RestartInstanceRequest{TeamId: team, InstanceId: instance}))
		return err
	}
	aliceID := red.instanceID(red.teamFixture.alice)
	accepted := 0
	var refused error
	for range 100 {
		if refused = restart(red.alice, aliceID); refused != nil {
			break
		}
		accepted++
	}
	wantCode(t, "alice's restart past the burst", refused, connect.CodeResourceExhausted, "too many restarts")
	if accepted == 0 || accepted > 25 {
		t.Errorf("alice had %d restarts accepted in a row, want a burst of about 20", accepted)
	}
	if got := restartsOf(sat.poll(t, 0)); len(got) != accepted {
		t.Errorf("the satellite received %d restarts, want the %d accepted", len(got), accepted)
	}
	if err := restart(red.bob, red.instanceID(red.teamFixture.bob)); err != nil {
		t.Errorf("bob restarting his own instance while alice is refused: %v", err)
	}
}
