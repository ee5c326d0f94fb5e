package catalogapi

import (
	"context"
	"errors"
	"strconv"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	"github.com/orrery/orrery/services/controlplane/internal/access"
	"github.com/orrery/orrery/services/controlplane/internal/page"
	"github.com/orrery/orrery/services/controlplane/internal/rpcerr"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

var configKinds = map[apiv1.ConfigKind]string{
	apiv1.ConfigKind_CONFIG_KIND_TEMPLATE:           store.KindTemplate,
	apiv1.ConfigKind_CONFIG_KIND_INSTALLATION:       store.KindInstallation,
	apiv1.ConfigKind_CONFIG_KIND_USER_CONFIGURATION: store.KindUserConfiguration,
}

// subject returns the configuration a history request names, narrowed to what the caller may read: the
// request's team's own configurations, global templates for global admins only, and a member's own
// configuration unless the caller administers the team.
func subject(ctx context.Context, teamID string, s *apiv1.ConfigSubject) (store.Subject, error) {
	p, err := access.Require(ctx)
	if err != nil {
		return store.Subject{}, err
	}
	out := store.Subject{Kind: configKinds[s.Kind], ID: uuid.MustParse(s.Id)} // validated as a UUID
	if teamID != "" {
		out.TeamID = &p.TeamID
	} else if !p.IsGlobalAdmin() {
		return store.Subject{}, connect.NewError(connect.CodePermissionDenied, errors.New("the history of global templates is for global admins"))
	}
	if out.Kind != store.KindUserConfiguration {
		return out, nil
	}
	out.UserID = p.User.ID
	if s.UserId != "" {
		out.UserID = uuid.MustParse(s.UserId)
	}
	if out.UserID != p.User.ID && !p.IsTeamAdmin() {
		return store.Subject{}, connect.NewError(connect.CodePermissionDenied, errors.New("only the team's admins read other members' configuration history"))
	}
	return out, nil
}

// ListConfigVersions lists a configuration's versions, newest first.
func (h *Handler) ListConfigVersions(ctx context.Context, req *connect.Request[apiv1.ListConfigVersionsRequest]) (*connect.Response[apiv1.ListConfigVersionsResponse], error) {
	subj, err := subject(ctx, req.Msg.TeamId, req.Msg.Subject)
	if err != nil {
		return nil, err
	}
	before := 0
	if t := req.Msg.PageToken; t != "" {
		if before, err = strconv.Atoi(t); err != nil || before <= 0 {
			return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("invalid page_token"))
		}
	}
	size := page.Size(req.Msg.PageSize)
	versions, err := h.store.ListConfigVersions(ctx, subj, before, size)
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "list configuration versions", err)
	}
	resp := &apiv1.ListConfigVersionsResponse{}
	for _, v := range versions {
		resp.Versions = append(resp.Versions, &apiv1.ConfigVersion{
			Version: uint32(v.Version), Action: v.Action, RolledBackTo: uint32(v.RolledBackTo), Actor: v.Actor,
			CreatedAt: timestamppb.New(v.CreatedAt), Changes: changesToProto(v.Changes),
		})
	}
	if len(versions) == size && versions[len(versions)-1].Version > 1 {
		resp.NextPageToken = strconv.Itoa(versions[len(versions)-1].Version)
	}
	return connect.NewResponse(resp), nil
}

// CompareConfigVersions lists what differs between two versions of a configuration.
func (h *Handler) CompareConfigVersions(ctx context.Context, req *connect.Request[apiv1.CompareConfigVersionsRequest]) (*connect.Response[apiv1.CompareConfigVersionsResponse], error) {
	subj, err := subject(ctx, req.Msg.TeamId, req.Msg.Subject)
	if err != nil {
		return nil, err
	}
	changes, err := h.store.CompareConfigVersions(ctx, subj, int(req.Msg.FromVersion), int(req.Msg.ToVersion))
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "compare configuration versions", err)
	}
	return connect.NewResponse(&apiv1.CompareConfigVersionsResponse{Changes: changesToProto(changes)}), nil
}

// RollbackInstallation restores an installation's earlier version.
func (h *Handler) RollbackInstallation(ctx context.Context, req *connect.Request[apiv1.RollbackInstallationRequest]) (*connect.Response[apiv1.RollbackInstallationResponse], error) {
	p, err := access.Require(ctx)
	if err != nil {
		return nil, err
	}
	r, err := h.store.RollbackInstallation(ctx, p.TeamID, uuid.MustParse(req.Msg.InstallationId), int(req.Msg.Version), author(p))
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "roll back installation", err)
	}
	return connect.NewResponse(&apiv1.RollbackInstallationResponse{
		Installation: installationToProto(r.Installation), Version: uint32(r.Version),
	}), nil
}

func changesToProto(changes []store.Change) []*apiv1.ConfigChange {
	out := make([]*apiv1.ConfigChange, len(changes))
	for i, c := range changes {
		out[i] = &apiv1.ConfigChange{Field: c.Field, OldValue: string(c.Old), NewValue: string(c.New), Secret: c.Secret}
	}
	return out
}
