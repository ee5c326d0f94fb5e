package instanceapi

import (
	"context"

	"connectrpc.com/connect"

	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	"github.com/orrery/orrery/services/controlplane/internal/access"
	"github.com/orrery/orrery/services/controlplane/internal/rpcerr"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// RestartInstance queues a manual restart of one instance the caller may see: the way back for a
// permanently failed instance that does not need a global admin. The caller's view decides what it may
// restart, as for reads, so another member's instance is as unknown to a team user as another team's.
func (h *Handler) RestartInstance(ctx context.Context, req *connect.Request[apiv1.RestartInstanceRequest]) (*connect.Response[apiv1.RestartInstanceResponse], error) {
	v, err := viewer(ctx)
	if err != nil {
		return nil, err
	}
	p := access.FromContext(ctx)
	// Each restart is a command to every satellite serving the team, global ones included: without a
	// bound, one member could fill the queues other teams' commands wait in.
	if err := rpcerr.AllowUser(ctx, h.logger, h.restarts, p.User.ID, "restart instance", "too many restarts; try again later"); err != nil {
		return nil, err
	}
	actor := store.AuditEvent{ActorID: &p.User.ID, Actor: p.User.Email}
	inst, cmds, err := h.store.RestartInstance(ctx, v, req.Msg.InstanceId, actor)
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "instance "+req.Msg.InstanceId, err)
	}
	resp := &apiv1.RestartInstanceResponse{CommandIds: make([]string, len(cmds))}
	for i, c := range cmds {
		resp.CommandIds[i] = c.ID.String()
	}
	h.logger.InfoContext(ctx, "instance restart queued", "instance_id", inst.ID, "team_id", inst.TeamID,
		"status", inst.Status, "commands", len(cmds))
	return connect.NewResponse(resp), nil
}
