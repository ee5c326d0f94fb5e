package accountapi

import (
	"context"
	"math"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	"github.com/orrery/orrery/services/controlplane/internal/access"
	"github.com/orrery/orrery/services/controlplane/internal/page"
	"github.com/orrery/orrery/services/controlplane/internal/rpcerr"
)

// ListAuditEvents lists the audit log of the request's team, or all of it for a global admin.
func (h *Handler) ListAuditEvents(ctx context.Context, req *connect.Request[apiv1.ListAuditEventsRequest]) (*connect.Response[apiv1.ListAuditEventsResponse], error) {
	p, err := access.Require(ctx)
	if err != nil {
		return nil, err
	}
	var teamID *uuid.UUID
	if req.Msg.TeamId != "" {
		teamID = &p.TeamID
	}
	before := req.Msg.BeforeId
	if before == 0 {
		before = math.MaxInt64
	}
	size := page.Size(req.Msg.PageSize)
	events, err := h.store.ListAuditEvents(ctx, teamID, before, size)
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "list audit events", err)
	}
	resp := &apiv1.ListAuditEventsResponse{}
	for _, e := range events {
		out := &apiv1.AuditEvent{Id: e.ID, OccurredAt: timestamppb.New(e.OccurredAt), Actor: e.Actor, Action: e.Action,
			Target: e.Target, Details: e.Details}
		if e.ActorID != nil {
			out.ActorId = e.ActorID.String()
		}
		if e.TeamID != nil {
			out.TeamId = e.TeamID.String()
		}
		resp.Events = append(resp.Events, out)
	}
	if len(events) == size {
		resp.NextBeforeId = events[len(events)-1].ID
	}
	return connect.NewResponse(resp), nil
}
