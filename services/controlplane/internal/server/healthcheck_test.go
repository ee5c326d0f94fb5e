package server_test

import (
	"testing"
	"time"

	"connectrpc.com/connect"

	adminv1 "github.com/orrery/orrery/gen/orrery/admin/v1"
	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
)

// TestCredentialCheckResultsStampInstances reports a health_check result that names the instance it checked,
// one it skipped, and another team's instance: only the first gets last_health_check_at, at the time the
// command completed, and a repeated report changes nothing.
func TestCredentialCheckResultsStampInstances(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	red := seedViewers(t, b, "checked")
	blue := seedViewers(t, b, "unchecked")
	sat := b.activeSatellite(t, red.team.ID.String())
	blueSat := b.activeSatellite(t, blue.team.ID.String())
	online := satellitev1.InstanceStatus_INSTANCE_STATUS_ONLINE
	emit(t, sat, statusEvent(red.teamFixture, red.teamFixture.alice, online), statusEvent(red.teamFixture, red.teamFixture.bob, online))
	emit(t, blueSat, statusEvent(blue.teamFixture, blue.teamFixture.alice, online))
	sat.poll(t, 0)
	aliceID, bobID, blueID := red.instanceID(red.teamFixture.alice), red.instanceID(red.teamFixture.bob),
		blue.instanceID(blue.teamFixture.alice)

	cmds := enqueueHealthCheck(t, b, red, sat)
	outcomes := []*satellitev1.InstanceOutcome{
		{InstanceId: aliceID, Status: online},
		{InstanceId: bobID, Status: online, Skipped: "stdio servers have no credentials to validate"},
		{InstanceId: blueID, Status: online},
	}
	report := func() {
		t.Helper()
		if _, err := sat.client.ReportCommandResult(t.Context(), connect.NewRequest(&satellitev1.ReportCommandResultRequest{
			CommandId: cmds[0].Id, Result: satellitev1.CommandResult_COMMAND_RESULT_COMPLETED, Outcomes: outcomes,
		})); err != nil {
			t.Fatal(err)
		}
	}
	checkedAt := func(f viewers, id string) *time.Time {
		t.Helper()
		resp, err := f.admin.GetInstanceStatus(t.Context(), connect.NewRequest(&apiv1.GetInstanceStatusRequest{
			TeamId: f.team.ID.String(), InstanceId: id,
		}))
		if err != nil {
			t.Fatal(err)
		}
		if resp.Msg.Instance.LastHealthCheckAt == nil {
			return nil
		}
		at := resp.Msg.Instance.LastHealthCheckAt.AsTime()
		return &at
	}

	report()
	first := checkedAt(red, aliceID)
	if first == nil {
		t.Fatal("alice's checked instance has no last_health_check_at")
	}
	if at := checkedAt(red, bobID); at != nil {
		t.Errorf("bob's skipped instance was stamped checked at %v", at)
	}
	if at := checkedAt(blue, blueID); at != nil {
		t.Errorf("another team's instance, named by red's satellite, was stamped checked at %v", at)
	}
	report()
	if again := checkedAt(red, aliceID); again == nil || !again.Equal(*first) {
		t.Errorf("a repeated report moved alice's check from %v to %v", first, again)
	}
}

// enqueueHealthCheck sends a credential check of f's installation to its team's satellites, as a global admin
// can, and returns what sat receives: the check alone.
func enqueueHealthCheck(t *testing.T, b *testBundle, f viewers, sat *satellite) []*satellitev1.Command {
	t.Helper()
	if _, err := b.admin(0).EnqueueCommand(t.Context(), connect.NewRequest(&adminv1.EnqueueCommandRequest{
		Target: &adminv1.EnqueueCommandRequest_TeamId{TeamId: f.team.ID.String()},
		Action: &adminv1.EnqueueCommandRequest_HealthCheck{HealthCheck: &satellitev1.HealthCheckAction{
			InstallationId: f.installation.ID.String(),
			Check:          satellitev1.HealthCheckType_HEALTH_CHECK_TYPE_CREDENTIAL_VALIDATION,
		}},
	})); err != nil {
		t.Fatal(err)
	}
	cmds := sat.poll(t, 0)
	if len(cmds) != 1 || cmds[0].GetHealthCheck().GetInstallationId() != f.installation.ID.String() ||
		cmds[0].Priority != low {
		t.Fatalf("the team's satellite received %v, want the low-priority health check", cmds)
	}
	return cmds
}

// reportHealthCheck sends a credential check of f's installation to sat and reports it completed with
// outcomes.
func reportHealthCheck(t *testing.T, b *testBundle, f viewers, sat *satellite, outcomes ...*satellitev1.InstanceOutcome) {
	t.Helper()
	cmds := enqueueHealthCheck(t, b, f, sat)
	if _, err := sat.client.ReportCommandResult(t.Context(), connect.NewRequest(&satellitev1.ReportCommandResultRequest{
		CommandId: cmds[0].Id, Result: satellitev1.CommandResult_COMMAND_RESULT_COMPLETED, Outcomes: outcomes,
	})); err != nil {
		t.Fatal(err)
	}
}

// TestHealthyAgainSendsRecovery: a credential check that finds an unreachable instance healthy again makes
// the control plane send the checking satellite one recovery command for the installation. Healthy
// instances, failed checks, skipped instances and another team's instance named in the report send none.
func TestHealthyAgainSendsRecovery(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	red := seedViewers(t, b, "recovering")
	blue := seedViewers(t, b, "elsewhere")
	sat := b.activeSatellite(t, red.team.ID.String())
	blueSat := b.activeSatellite(t, blue.team.ID.String())
	online, unreachable := satellitev1.InstanceStatus_INSTANCE_STATUS_ONLINE, satellitev1.InstanceStatus_INSTANCE_STATUS_ERROR
	aliceID, bobID, blueID := red.instanceID(red.teamFixture.alice), red.instanceID(red.teamFixture.bob),
		blue.instanceID(blue.teamFixture.alice)
	sat.poll(t, 0)

	check := func(outcomes ...*satellitev1.InstanceOutcome) []*satellitev1.Command {
		t.Helper()
		reportHealthCheck(t, b, red, sat, outcomes...)
		return sat.poll(t, 0)
	}
	if got := check(&satellitev1.InstanceOutcome{InstanceId: aliceID, Status: online, PreviousStatus: online},
		&satellitev1.InstanceOutcome{InstanceId: bobID, Status: unreachable, PreviousStatus: unreachable, Message: "cannot reach the server"},
		&satellitev1.InstanceOutcome{InstanceId: blueID, Status: online, PreviousStatus: unreachable}); len(got) != 0 {
		t.Errorf("no instance of the team recovered, yet the satellite received %v", got)
	}
	if got := check(&satellitev1.InstanceOutcome{InstanceId: bobID, Status: online, PreviousStatus: unreachable,
		Skipped: "stdio servers have no credentials to validate"}); len(got) != 0 {
		t.Errorf("a skipped instance sent %v", got)
	}

	got := check(&satellitev1.InstanceOutcome{InstanceId: aliceID, Status: online, PreviousStatus: online},
		&satellitev1.InstanceOutcome{InstanceId: bobID, Status: online, PreviousStatus: unreachable})
	if len(got) != 1 || got[0].GetRecovery().GetInstallationId() != red.installation.ID.String() ||
		got[0].TeamId != red.team.ID.String() || got[0].Priority != high {
		t.Fatalf("bob's instance is healthy again: the satellite received %v, want one high-priority recovery of the installation", got)
	}
	if got := blueSat.poll(t, 0); len(got) != 0 {
		t.Errorf("the other team's satellite received %v", got)
	}
}
