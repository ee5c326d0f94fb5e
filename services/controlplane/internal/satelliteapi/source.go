package satelliteapi

import (
	"context"
	"errors"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/services/controlplane/internal/rpcerr"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// GetSourceArchive returns an archive a team uploaded, to a satellite that serves the team: a team
// satellite only its own team's. Anything else is NotFound, as if the archive did not exist.
func (h *Handler) GetSourceArchive(ctx context.Context, req *connect.Request[satellitev1.GetSourceArchiveRequest]) (*connect.Response[satellitev1.GetSourceArchiveResponse], error) {
	sat := satelliteFrom(ctx)
	team := uuid.MustParse(req.Msg.TeamId)
	notFound := connect.NewError(connect.CodeNotFound, errors.New("no such source archive"))
	if sat.Type == store.ScopeTeam && (sat.TeamID == nil || *sat.TeamID != team) {
		return nil, notFound
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
