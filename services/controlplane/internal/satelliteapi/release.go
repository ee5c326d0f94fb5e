package satelliteapi

import (
	"context"

	"connectrpc.com/connect"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/services/controlplane/internal/rpcerr"
)

// DownloadRelease returns a piece of a complete release's binary. Releases are fleet-wide, not tenant
// data, so any authenticated satellite may fetch any of them; the signature, not this channel, is what a
// satellite trusts.
func (h *Handler) DownloadRelease(ctx context.Context, req *connect.Request[satellitev1.DownloadReleaseRequest]) (*connect.Response[satellitev1.DownloadReleaseResponse], error) {
	rel, data, err := h.store.SatelliteReleasePiece(ctx, req.Msg.Version, req.Msg.Platform, req.Msg.Offset)
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "satellite release", err)
	}
	return connect.NewResponse(&satellitev1.DownloadReleaseResponse{
		Release: &satellitev1.ReleaseInfo{
			Version: rel.Version, Platform: rel.Platform, Sha256: rel.SHA256, Signature: rel.Signature, Size: rel.Size,
		},
		Data: data,
	}), nil
}
