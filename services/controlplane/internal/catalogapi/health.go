package catalogapi

import (
	"context"
	"errors"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	"github.com/orrery/orrery/services/controlplane/internal/rpcerr"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

var errGlobalHealth = errors.New("a global template's health counts the instances of every team: " +
	"only global admins read it, without team_id")

// GetCatalogEntryHealth returns a template's health as the periodic job last aggregated it. A team admin
// reads it only of their team's own templates: the figures of a global template would tell them how many
// instances other teams run.
func (h *Handler) GetCatalogEntryHealth(ctx context.Context, req *connect.Request[apiv1.GetCatalogEntryHealthRequest]) (*connect.Response[apiv1.GetCatalogEntryHealthResponse], error) {
	p, teamID, err := scope(ctx, req.Msg.TeamId)
	if err != nil {
		return nil, err
	}
	e, err := h.store.GetCatalogEntry(ctx, teamID, uuid.MustParse(req.Msg.Id))
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "get catalog entry", err)
	}
	if e.TeamID == nil && !p.IsGlobalAdmin() {
		return nil, connect.NewError(connect.CodePermissionDenied, errGlobalHealth)
	}
	health, err := h.store.GetTemplateHealth(ctx, e.ID)
	if errors.Is(err, store.ErrNotFound) {
		// Not aggregated yet: the template is newer than the job's last run.
		return connect.NewResponse(&apiv1.GetCatalogEntryHealthResponse{Health: &apiv1.TemplateHealth{}}), nil
	}
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "get catalog entry health", err)
	}
	return connect.NewResponse(&apiv1.GetCatalogEntryHealthResponse{Health: &apiv1.TemplateHealth{
		Status:    healthStatusToProto(health.Status),
		Instances: uint32(max(health.Instances, 0)), Online: uint32(max(health.Online, 0)),
		Failing: uint32(max(health.Failing, 0)), AggregatedAt: timestamppb.New(health.AggregatedAt),
	}}), nil
}

func healthStatusToProto(status string) apiv1.TemplateHealthStatus {
	switch status {
	case "unused":
		return apiv1.TemplateHealthStatus_TEMPLATE_HEALTH_STATUS_UNUSED
	case "healthy":
		return apiv1.TemplateHealthStatus_TEMPLATE_HEALTH_STATUS_HEALTHY
	case "degraded":
		return apiv1.TemplateHealthStatus_TEMPLATE_HEALTH_STATUS_DEGRADED
	case "failing":
		return apiv1.TemplateHealthStatus_TEMPLATE_HEALTH_STATUS_FAILING
	default:
		return apiv1.TemplateHealthStatus_TEMPLATE_HEALTH_STATUS_UNSPECIFIED
	}
}
