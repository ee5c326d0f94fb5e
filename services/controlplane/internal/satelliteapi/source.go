package satelliteapi

import (
	"context"
	"errors"
	"slices"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/services/controlplane/internal/rpcerr"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// GetSourceArchive returns an archive a team uploaded, to a satellite that serves the team: a team
// satellite only its own team's, a global satellite only those of teams placed on it or leaving it.
// Anything else is NotFound, as if the archive did not exist.
func (h *Handler) GetSourceArchive(ctx context.Context, req *connect.Request[satellitev1.GetSourceArchiveRequest]) (*connect.Response[satellitev1.GetSourceArchiveResponse], error) {
	sat := satelliteFrom(ctx)
	team := uuid.MustParse(req.Msg.TeamId)
	notFound := connect.NewError(connect.CodeNotFound, errors.New("no such source archive"))
	if sat.Type == store.ScopeTeam && (sat.TeamID == nil || *sat.TeamID != team) {
		return nil, notFound
	}
	if sat.Type == store.ScopeGlobal {
		holds, err := h.holdsTeam(ctx, sat, team)
		if err != nil {
			return nil, rpcerr.From(ctx, h.logger, "get source archive", err)
		}
		if !holds {
			return nil, notFound
		}
	}
	content, err := h.store.SourceArchive(ctx, team, req.Msg.Sha256)
	if errors.Is(err, store.ErrNotFound) {
		return nil, notFound
	}
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "get source archive", err)
	}
	return connect.NewResponse(&satellitev1.GetSourceArchiveResponse{Content: content}), nil
}

// holdsTeam tells whether a global satellite runs a team's instances: the team is placed on it, or it is
// draining and still holds the team.
func (h *Handler) holdsTeam(ctx context.Context, sat store.Satellite, team uuid.UUID) (bool, error) {
	placed, err := h.store.TeamPlacement(ctx, team, h.OfflineAfter())
	if err != nil {
		return false, err
	}
	if slices.ContainsFunc(placed, func(p store.PlacedSatellite) bool { return p.ID == sat.ID }) {
		return true, nil
	}
	return h.store.IsLeaving(ctx, team, sat.ID)
}
