package server_test

import (
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/structpb"

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

	payload, err := structpb.NewStruct(map[string]any{
		"check_type": "credential_validation", "installation_id": red.installation.ID.String(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.admin(0).EnqueueCommand(t.Context(), connect.NewRequest(&adminv1.EnqueueCommandRequest{
		Target: &adminv1.EnqueueCommandRequest_TeamId{TeamId: red.team.ID.String()},
		Type:   satellitev1.CommandType_COMMAND_TYPE_HEALTH_CHECK, Priority: satellitev1.CommandPriority_COMMAND_PRIORITY_LOW,
		Payload: payload,
	})); err != nil {
		t.Fatal(err)
	}
	cmds := sat.poll(t, 0)
	if len(cmds) != 1 || cmds[0].Type != satellitev1.CommandType_COMMAND_TYPE_HEALTH_CHECK {
		t.Fatalf("the team's satellite received %v, want the health check", cmds)
	}
	output, err := structpb.NewStruct(map[string]any{"outcomes": []any{
		map[string]any{"instance_id": aliceID, "status": "online"},
		map[string]any{"instance_id": bobID, "status": "online", "skipped": "stdio servers have no credentials to validate"},
		map[string]any{"instance_id": blueID, "status": "online"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	report := func() {
		t.Helper()
		if _, err := sat.client.ReportCommandResult(t.Context(), connect.NewRequest(&satellitev1.ReportCommandResultRequest{
			CommandId: cmds[0].Id, Result: satellitev1.CommandResult_COMMAND_RESULT_COMPLETED, Output: output,
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
