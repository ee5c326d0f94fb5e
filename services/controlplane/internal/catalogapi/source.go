package catalogapi

import (
	"context"
	"errors"
	"fmt"

	"connectrpc.com/connect"

	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	"github.com/orrery/orrery/services/controlplane/internal/access"
	"github.com/orrery/orrery/services/controlplane/internal/rpcerr"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// UploadSourceArchive stores an archive for the team's templates built from source.
func (h *Handler) UploadSourceArchive(ctx context.Context, req *connect.Request[apiv1.UploadSourceArchiveRequest]) (*connect.Response[apiv1.UploadSourceArchiveResponse], error) {
	p, err := access.Require(ctx)
	if err != nil {
		return nil, err
	}
	digest, err := h.store.PutSourceArchive(ctx, p.TeamID, req.Msg.Content)
	if errors.Is(err, store.ErrLimit) {
		return nil, connect.NewError(connect.CodeResourceExhausted, fmt.Errorf(
			"a team's uploaded archives take at most %d MiB; an archive no template names is deleted an hour after its upload",
			store.MaxTeamSourceArchiveBytes>>20))
	}
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "upload source archive", err)
	}
	h.audit(ctx, p, &p.TeamID, "source_archive.uploaded", digest, map[string]string{"sha256": digest})
	return connect.NewResponse(&apiv1.UploadSourceArchiveResponse{Sha256: digest, Size: int64(len(req.Msg.Content))}), nil
}

// errNoUpload is the error of a template naming an uploaded archive its team does not have. It says
// nothing of other teams' archives.
var errNoUpload = errors.New("source: the team has uploaded no archive with this sha256 (CatalogService.UploadSourceArchive)")

// checkSource refuses a template whose source is an uploaded archive unless it is a team's template and
// the team uploaded that archive: global templates have no team to take uploads from.
func (h *Handler) checkSource(ctx context.Context, e store.CatalogEntry) error {
	src := sourceToProto(e.Source)
	if !src.GetUploaded() {
		return nil
	}
	if e.TeamID == nil {
		return connect.NewError(connect.CodeInvalidArgument, errors.New("source: global templates name archives by https url; uploads belong to a team"))
	}
	ok, err := h.store.SourceArchiveExists(ctx, *e.TeamID, src.GetSha256())
	if err != nil {
		return rpcerr.From(ctx, h.logger, "check source archive", err)
	}
	if !ok {
		return connect.NewError(connect.CodeInvalidArgument, errNoUpload)
	}
	return nil
}
