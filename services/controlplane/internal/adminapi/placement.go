package adminapi

import (
	"context"
	"errors"
	"fmt"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "github.com/orrery/orrery/gen/orrery/admin/v1"
	"github.com/orrery/orrery/services/controlplane/internal/access"
	"github.com/orrery/orrery/services/controlplane/internal/page"
	"github.com/orrery/orrery/services/controlplane/internal/placement"
	"github.com/orrery/orrery/services/controlplane/internal/rpcerr"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// Placer recomputes where teams are placed on global satellites.
type Placer interface {
	Recompute(ctx context.Context) (store.PlacementResult, error)
}

// ListPlacements lists one team's satellites or one satellite's teams.
func (h *Handler) ListPlacements(ctx context.Context, req *connect.Request[adminv1.ListPlacementsRequest]) (*connect.Response[adminv1.ListPlacementsResponse], error) {
	if req.Msg.GetTeamId() != "" {
		teamID := requestID(req.Msg.GetTeamId())
		settings, err := h.store.TeamPlacementSettings(ctx, teamID)
		if err != nil {
			return nil, rpcerr.From(ctx, h.logger, "team "+req.Msg.GetTeamId(), err)
		}
		placements, err := h.teamPlacements(ctx, teamID)
		if err != nil {
			return nil, err
		}
		return connect.NewResponse(&adminv1.ListPlacementsResponse{
			Placements: placements, Replicas: uint32(cmpOr(settings.Replicas, placement.DefaultReplicas)),
		}), nil
	}
	after, err := page.DecodeKeyToken(req.Msg.PageToken)
	if err != nil {
		return nil, err
	}
	afterID := uuid.Nil
	if after != "" {
		if afterID, err = uuid.Parse(after); err != nil {
			return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("page_token: not a token from a previous response"))
		}
	}
	size := page.Size(req.Msg.PageSize)
	satelliteID := requestID(req.Msg.GetSatelliteId())
	teams, err := h.store.SatellitePlacements(ctx, satelliteID, afterID, size)
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "list placements", err)
	}
	resp := &adminv1.ListPlacementsResponse{
		NextPageToken: page.NextKeyToken(teams, size, func(t store.PlacedTeam) string { return t.TeamID.String() }),
	}
	for _, t := range teams {
		resp.Placements = append(resp.Placements, &adminv1.Placement{
			TeamId: t.TeamID.String(), TeamSlug: t.TeamSlug, SatelliteId: satelliteID.String(), Rank: uint32(t.Rank),
			PlacedAt: timestamppb.New(t.PlacedAt),
		})
	}
	return connect.NewResponse(resp), nil
}

func (h *Handler) teamPlacements(ctx context.Context, teamID uuid.UUID) ([]*adminv1.Placement, error) {
	sats, err := h.store.TeamPlacement(ctx, teamID, h.offlineAfter)
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "list placements", err)
	}
	out := make([]*adminv1.Placement, len(sats))
	for i, s := range sats {
		out[i] = &adminv1.Placement{
			TeamId: teamID.String(), SatelliteId: s.ID.String(), SatelliteName: s.Name, Rank: uint32(s.Rank),
			PlacedAt: timestamppb.New(s.PlacedAt), Live: s.Live, Draining: s.Draining,
		}
	}
	return out, nil
}

// SetTeamReplicas sets a team's R and places it again.
func (h *Handler) SetTeamReplicas(ctx context.Context, req *connect.Request[adminv1.SetTeamReplicasRequest]) (*connect.Response[adminv1.SetTeamReplicasResponse], error) {
	teamID := requestID(req.Msg.TeamId)
	if err := h.store.SetTeamReplicas(ctx, teamID, int(req.Msg.Replicas), h.actor(ctx)); err != nil {
		return nil, rpcerr.From(ctx, h.logger, "team "+req.Msg.TeamId, err)
	}
	if err := h.recompute(ctx); err != nil {
		return nil, err
	}
	placements, err := h.teamPlacements(ctx, teamID)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&adminv1.SetTeamReplicasResponse{Placements: placements}), nil
}

// DrainSatellite drains a global satellite and moves its teams away.
func (h *Handler) DrainSatellite(ctx context.Context, req *connect.Request[adminv1.DrainSatelliteRequest]) (*connect.Response[adminv1.DrainSatelliteResponse], error) {
	sat, err := h.setDraining(ctx, req.Msg.Id, true)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&adminv1.DrainSatelliteResponse{Satellite: h.satelliteToProto(sat)}), nil
}

// UndrainSatellite ends a global satellite's drain.
func (h *Handler) UndrainSatellite(ctx context.Context, req *connect.Request[adminv1.UndrainSatelliteRequest]) (*connect.Response[adminv1.UndrainSatelliteResponse], error) {
	sat, err := h.setDraining(ctx, req.Msg.Id, false)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&adminv1.UndrainSatelliteResponse{Satellite: h.satelliteToProto(sat)}), nil
}

func (h *Handler) setDraining(ctx context.Context, id string, draining bool) (store.Satellite, error) {
	sat, err := h.store.SetSatelliteDraining(ctx, requestID(id), draining, h.actor(ctx))
	if errors.Is(err, store.ErrNotFound) {
		return store.Satellite{}, connect.NewError(connect.CodeNotFound, fmt.Errorf("no live global satellite %s", id))
	}
	if err != nil {
		return store.Satellite{}, rpcerr.From(ctx, h.logger, "satellite "+id, err)
	}
	h.logger.InfoContext(ctx, "satellite drain changed", "satellite_id", sat.ID, "draining", draining)
	if err := h.recompute(ctx); err != nil {
		return store.Satellite{}, err
	}
	// Read again: the recomputation may have marked it drained already.
	if sat, err = h.store.Satellite(ctx, sat.ID); err != nil {
		return store.Satellite{}, rpcerr.From(ctx, h.logger, "satellite "+id, err)
	}
	return sat, nil
}

// recompute places teams again after a change an operator made, so the answer shows its effect.
func (h *Handler) recompute(ctx context.Context) error {
	if h.placer == nil {
		return nil
	}
	if _, err := h.placer.Recompute(ctx); err != nil {
		return rpcerr.From(ctx, h.logger, "recompute placement", err)
	}
	return nil
}

func (h *Handler) actor(ctx context.Context) store.AuditEvent {
	e := store.AuditEvent{Actor: "anonymous"}
	if p := access.FromContext(ctx); p != nil {
		e.ActorID, e.Actor = &p.User.ID, p.User.Email
	}
	return e
}

func cmpOr(a, b int) int {
	if a != 0 {
		return a
	}
	return b
}
