package adminapi

import (
	"context"
	"errors"
	"fmt"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "github.com/orrery/orrery/gen/orrery/admin/v1"
	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/internal/release"
	"github.com/orrery/orrery/services/controlplane/internal/access"
	"github.com/orrery/orrery/services/controlplane/internal/page"
	"github.com/orrery/orrery/services/controlplane/internal/rpcerr"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// CreateSatelliteRelease starts publishing a release. The control plane holds no release key and does not
// check the signature: satellites do, against the keys they are configured with.
func (h *Handler) CreateSatelliteRelease(ctx context.Context, req *connect.Request[adminv1.CreateSatelliteReleaseRequest]) (*connect.Response[adminv1.CreateSatelliteReleaseResponse], error) {
	r := store.SatelliteRelease{
		Version: req.Msg.Version, Platform: req.Msg.Platform, SHA256: req.Msg.Sha256, Signature: req.Msg.Signature,
		Size: req.Msg.Size,
	}
	if p := access.FromContext(ctx); p != nil {
		r.CreatedBy = &p.User.ID
	}
	rel, err := h.store.CreateSatelliteRelease(ctx, r)
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "satellite release "+req.Msg.Version+" for "+req.Msg.Platform, err)
	}
	h.audit(ctx, nil, "satellite_release.created", rel.ID.String(), map[string]string{
		"version": rel.Version, "platform": rel.Platform, "sha256": rel.SHA256,
	})
	return connect.NewResponse(&adminv1.CreateSatelliteReleaseResponse{Release: releaseToProto(rel)}), nil
}

// UploadSatelliteReleaseChunk stores one piece of a release's binary.
func (h *Handler) UploadSatelliteReleaseChunk(ctx context.Context, req *connect.Request[adminv1.UploadSatelliteReleaseChunkRequest]) (*connect.Response[adminv1.UploadSatelliteReleaseChunkResponse], error) {
	rel, err := h.store.UploadSatelliteReleaseChunk(ctx, requestID(req.Msg.ReleaseId), req.Msg.Offset, req.Msg.Data)
	if errors.Is(err, store.ErrConflict) {
		return nil, connect.NewError(connect.CodeFailedPrecondition, errors.New(trimStoreSuffix(err)))
	}
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "upload satellite release", err)
	}
	return connect.NewResponse(&adminv1.UploadSatelliteReleaseChunkResponse{UploadedBytes: rel.UploadedBytes}), nil
}

// CompleteSatelliteRelease makes a release downloadable once its binary matches its checksum.
func (h *Handler) CompleteSatelliteRelease(ctx context.Context, req *connect.Request[adminv1.CompleteSatelliteReleaseRequest]) (*connect.Response[adminv1.CompleteSatelliteReleaseResponse], error) {
	rel, err := h.store.CompleteSatelliteRelease(ctx, requestID(req.Msg.ReleaseId))
	if errors.Is(err, store.ErrReleaseMismatch) {
		return nil, connect.NewError(connect.CodeFailedPrecondition, err)
	}
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "complete satellite release", err)
	}
	h.audit(ctx, nil, "satellite_release.completed", rel.ID.String(), map[string]string{
		"version": rel.Version, "platform": rel.Platform,
	})
	return connect.NewResponse(&adminv1.CompleteSatelliteReleaseResponse{Release: releaseToProto(rel)}), nil
}

// ListSatelliteReleases lists releases, newest first.
func (h *Handler) ListSatelliteReleases(ctx context.Context, req *connect.Request[adminv1.ListSatelliteReleasesRequest]) (*connect.Response[adminv1.ListSatelliteReleasesResponse], error) {
	cursor, err := page.DecodeToken(req.Msg.PageToken)
	if err != nil {
		return nil, err
	}
	size := page.Size(req.Msg.PageSize)
	rels, err := h.store.ListSatelliteReleases(ctx, cursor, size)
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "list satellite releases", err)
	}
	resp := &adminv1.ListSatelliteReleasesResponse{
		NextPageToken: page.NextToken(rels, size, func(r store.SatelliteRelease) (time.Time, uuid.UUID) { return r.CreatedAt, r.ID }),
	}
	for _, r := range rels {
		resp.Releases = append(resp.Releases, releaseToProto(r))
	}
	return connect.NewResponse(resp), nil
}

// DeleteSatelliteRelease deletes a release.
func (h *Handler) DeleteSatelliteRelease(ctx context.Context, req *connect.Request[adminv1.DeleteSatelliteReleaseRequest]) (*connect.Response[adminv1.DeleteSatelliteReleaseResponse], error) {
	if err := h.store.DeleteSatelliteRelease(ctx, requestID(req.Msg.ReleaseId)); err != nil {
		return nil, rpcerr.From(ctx, h.logger, "delete satellite release", err)
	}
	h.audit(ctx, nil, "satellite_release.deleted", req.Msg.ReleaseId, nil)
	return connect.NewResponse(&adminv1.DeleteSatelliteReleaseResponse{}), nil
}

// resolveUpdate names the release an update command installs: the newest complete release when the
// request names none, so every satellite of one request, and of a rolling update, gets the same version.
func (h *Handler) resolveUpdate(ctx context.Context, cmd *satellitev1.Command) error {
	u := cmd.GetUpdate()
	if u == nil {
		return nil
	}
	versions, err := h.store.SatelliteReleaseVersions(ctx)
	if err != nil {
		return rpcerr.From(ctx, h.logger, "satellite releases", err)
	}
	if u.Version == "" {
		if u.Version = release.Newest(versions); u.Version == "" {
			return connect.NewError(connect.CodeFailedPrecondition, errors.New("no satellite release is published: publish one first"))
		}
		return nil
	}
	for _, v := range versions {
		if v == u.Version {
			return nil
		}
	}
	return connect.NewError(connect.CodeFailedPrecondition, fmt.Errorf("no complete satellite release has version %q", u.Version))
}

func releaseToProto(r store.SatelliteRelease) *adminv1.SatelliteRelease {
	return &adminv1.SatelliteRelease{
		Id: r.ID.String(),
		Release: &satellitev1.ReleaseInfo{
			Version: r.Version, Platform: r.Platform, Sha256: r.SHA256, Signature: r.Signature, Size: r.Size,
		},
		UploadedBytes: r.UploadedBytes,
		Complete:      r.Complete,
		CreatedAt:     timestamppb.New(r.CreatedAt),
	}
}

// trimStoreSuffix is a conflict's explanation without the store's generic suffix.
func trimStoreSuffix(err error) string {
	msg := err.Error()
	suffix := ": " + store.ErrConflict.Error()
	if len(msg) > len(suffix) && msg[len(msg)-len(suffix):] == suffix {
		return msg[:len(msg)-len(suffix)]
	}
	return msg
}

// startRollout starts a rolling update: the first batch's commands now, the next ones from the periodic
// job (maintenance.RolloutWorker) as each batch heartbeats on the new version.
func (h *Handler) startRollout(ctx context.Context, req *adminv1.EnqueueCommandRequest, nc store.NewCommand) (*connect.Response[adminv1.EnqueueCommandResponse], error) {
	u := nc.Action.GetUpdate()
	if u == nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("rolling_batch_size applies to update commands only"))
	}
	var target store.RolloutTarget
	var teamID *uuid.UUID
	switch t := req.Target.(type) {
	case *adminv1.EnqueueCommandRequest_SatelliteId:
		id := requestID(t.SatelliteId)
		target.SatelliteID = &id
	case *adminv1.EnqueueCommandRequest_TeamId:
		id := requestID(t.TeamId)
		target.TeamID, teamID = &id, &id
	default:
		target.Global = true
	}
	ro, cmds, err := h.store.StartRollout(ctx, target, u.Version, u.AllowDowngrade, int(req.RollingBatchSize))
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "start rollout", err)
	}
	resp := &adminv1.EnqueueCommandResponse{Rollout: RolloutToProto(ro)}
	for _, c := range cmds {
		resp.Commands = append(resp.Commands, commandToProto(c))
	}
	h.audit(ctx, teamID, "rollout.started", ro.ID.String(), map[string]string{
		"version": ro.Version, "batch_size": fmt.Sprint(ro.BatchSize), "satellites": fmt.Sprint(len(ro.Members)),
	})
	return connect.NewResponse(resp), nil
}

// ListRollouts lists rolling updates, newest first.
func (h *Handler) ListRollouts(ctx context.Context, req *connect.Request[adminv1.ListRolloutsRequest]) (*connect.Response[adminv1.ListRolloutsResponse], error) {
	cursor, err := page.DecodeToken(req.Msg.PageToken)
	if err != nil {
		return nil, err
	}
	size := page.Size(req.Msg.PageSize)
	ros, err := h.store.ListRollouts(ctx, cursor, size)
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "list rollouts", err)
	}
	resp := &adminv1.ListRolloutsResponse{
		NextPageToken: page.NextToken(ros, size, func(r store.Rollout) (time.Time, uuid.UUID) { return r.CreatedAt, r.ID }),
	}
	for _, r := range ros {
		resp.Rollouts = append(resp.Rollouts, RolloutToProto(r))
	}
	return connect.NewResponse(resp), nil
}

// RolloutToProto is a rollout as administrators see it.
func RolloutToProto(r store.Rollout) *adminv1.Rollout {
	out := &adminv1.Rollout{
		Id: r.ID.String(), Version: r.Version, BatchSize: uint32(r.BatchSize), State: r.State, Error: r.Error,
		CreatedAt: timestamppb.New(r.CreatedAt), UpdatedAt: timestamppb.New(r.UpdatedAt),
	}
	for _, m := range r.Members {
		rs := &adminv1.RolloutSatellite{SatelliteId: m.SatelliteID.String(), Batch: uint32(m.Batch), State: m.State}
		if m.CommandID != nil {
			rs.CommandId = m.CommandID.String()
		}
		out.Satellites = append(out.Satellites, rs)
	}
	return out
}
