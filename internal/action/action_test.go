package action_test

import (
	"testing"

	adminv1 "github.com/orrery/orrery/gen/orrery/admin/v1"
	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/internal/action"
)

func TestNameAndCopy(t *testing.T) {
	t.Parallel()
	restart := &satellitev1.RestartAction{Reason: satellitev1.RestartReason_RESTART_REASON_MANUAL_RESTART}
	req := &adminv1.EnqueueCommandRequest{Action: &adminv1.EnqueueCommandRequest_Restart{Restart: restart}}
	if got := action.Name(req); got != "restart" {
		t.Errorf("Name(request) = %q", got)
	}
	cmd := &satellitev1.Command{}
	if action.Name(cmd) != "" {
		t.Errorf("a command without an action is named %q", action.Name(cmd))
	}
	if !action.Copy(cmd, req) || cmd.GetRestart() != restart || action.Name(cmd) != "restart" {
		t.Errorf("Copy gave %v", cmd)
	}
	back := &adminv1.EnqueueCommandRequest{}
	if !action.Copy(back, cmd) || back.GetRestart() != restart {
		t.Errorf("Copy back gave %v", back)
	}
	if action.Copy(cmd, &adminv1.EnqueueCommandRequest{}) {
		t.Error("Copy of a request without an action reported success")
	}
	// A message without an action oneof has no action and takes none.
	if action.Name(restart) != "" || action.Copy(restart, req) {
		t.Error("a message without an action oneof was treated as a command")
	}
}
