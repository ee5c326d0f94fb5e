package catalogapi

import (
	"context"
	"errors"
	"strconv"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	"github.com/orrery/orrery/services/controlplane/internal/access"
	"github.com/orrery/orrery/services/controlplane/internal/page"
	"github.com/orrery/orrery/services/controlplane/internal/rpcerr"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

func installationFromSpec(s *apiv1.InstallationSpec) store.Installation {
	return store.Installation{
		Name: s.Name, Args: s.Args, ArgValues: settingsFromProto(s.ArgValues), Env: settingsFromProto(s.Env),
		Headers: settingsFromProto(s.Headers), QueryParams: settingsFromProto(s.QueryParams),
		RequestLoggingEnabled: s.RequestLoggingEnabled == nil || *s.RequestLoggingEnabled, ToolPrefix: s.ToolPrefix,
	}
}

// CreateInstallation installs a template for the team.
func (h *Handler) CreateInstallation(ctx context.Context, req *connect.Request[apiv1.CreateInstallationRequest]) (*connect.Response[apiv1.CreateInstallationResponse], error) {
	p, err := access.Require(ctx)
	if err != nil {
		return nil, err
	}
	in := installationFromSpec(req.Msg.Spec)
	in.TeamID, in.CatalogEntryID = p.TeamID, uuid.MustParse(req.Msg.CatalogEntryId)
	out, err := h.store.CreateInstallation(ctx, in, author(p))
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "create installation", err)
	}
	h.audit(ctx, p, &p.TeamID, "installation.created", out.ID.String(), map[string]string{
		"name": out.Name, "catalog_entry_id": out.CatalogEntryID.String(),
		"secrets_set": setSecrets(in.Values()),
	})
	return connect.NewResponse(&apiv1.CreateInstallationResponse{Installation: installationToProto(out)}), nil
}

// UpdateInstallation replaces an installation's spec.
func (h *Handler) UpdateInstallation(ctx context.Context, req *connect.Request[apiv1.UpdateInstallationRequest]) (*connect.Response[apiv1.UpdateInstallationResponse], error) {
	p, err := access.Require(ctx)
	if err != nil {
		return nil, err
	}
	in := installationFromSpec(req.Msg.Spec)
	in.TeamID, in.ID = p.TeamID, uuid.MustParse(req.Msg.Id)
	prior, err := h.store.GetInstallation(ctx, in.TeamID, in.ID)
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "update installation", err)
	}
	out, err := h.store.UpdateInstallation(ctx, in, author(p))
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "update installation", err)
	}
	h.audit(ctx, p, &p.TeamID, "installation.updated", out.ID.String(), map[string]string{
		"name": out.Name, "secrets_set": setSecrets(in.Values()),
		"secrets_removed": removedSecrets(prior.Values(), out.Values()),
	})
	return connect.NewResponse(&apiv1.UpdateInstallationResponse{Installation: installationToProto(out)}), nil
}

// UpdateInstallationSettings changes the settings the request gives.
func (h *Handler) UpdateInstallationSettings(ctx context.Context, req *connect.Request[apiv1.UpdateInstallationSettingsRequest]) (*connect.Response[apiv1.UpdateInstallationSettingsResponse], error) {
	p, err := access.Require(ctx)
	if err != nil {
		return nil, err
	}
	id := uuid.MustParse(req.Msg.InstallationId) // validated as a UUID
	out, err := h.store.UpdateInstallationSettings(ctx, p.TeamID, id, store.InstallationSettings{
		RequestLoggingEnabled: req.Msg.RequestLoggingEnabled,
	}, author(p))
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "update installation settings", err)
	}
	details := map[string]string{}
	if v := req.Msg.RequestLoggingEnabled; v != nil {
		details["request_logging_enabled"] = strconv.FormatBool(*v)
	}
	h.audit(ctx, p, &p.TeamID, "installation.settings_changed", id.String(), details)
	return connect.NewResponse(&apiv1.UpdateInstallationSettingsResponse{Installation: installationToProto(out)}), nil
}

// DeleteInstallation removes an installation and its instances.
func (h *Handler) DeleteInstallation(ctx context.Context, req *connect.Request[apiv1.DeleteInstallationRequest]) (*connect.Response[apiv1.DeleteInstallationResponse], error) {
	p, err := access.Require(ctx)
	if err != nil {
		return nil, err
	}
	if err := h.store.DeleteInstallation(ctx, p.TeamID, uuid.MustParse(req.Msg.Id)); err != nil {
		return nil, rpcerr.From(ctx, h.logger, "delete installation", err)
	}
	h.audit(ctx, p, &p.TeamID, "installation.deleted", req.Msg.Id, nil)
	return connect.NewResponse(&apiv1.DeleteInstallationResponse{}), nil
}

// GetInstallation describes one of the team's installations.
func (h *Handler) GetInstallation(ctx context.Context, req *connect.Request[apiv1.GetInstallationRequest]) (*connect.Response[apiv1.GetInstallationResponse], error) {
	p, err := access.Require(ctx)
	if err != nil {
		return nil, err
	}
	in, err := h.store.GetInstallation(ctx, p.TeamID, uuid.MustParse(req.Msg.Id))
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "get installation", err)
	}
	return connect.NewResponse(&apiv1.GetInstallationResponse{Installation: installationToProto(in)}), nil
}

// ListInstallations lists the team's installations, oldest first.
func (h *Handler) ListInstallations(ctx context.Context, req *connect.Request[apiv1.ListInstallationsRequest]) (*connect.Response[apiv1.ListInstallationsResponse], error) {
	p, err := access.Require(ctx)
	if err != nil {
		return nil, err
	}
	cursor, err := page.DecodeToken(req.Msg.PageToken)
	if err != nil {
		return nil, err
	}
	size := page.Size(req.Msg.PageSize)
	list, err := h.store.ListInstallations(ctx, p.TeamID, cursor, size)
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "list installations", err)
	}
	resp := &apiv1.ListInstallationsResponse{
		NextPageToken: page.NextToken(list, size, func(in store.Installation) (time.Time, uuid.UUID) { return in.CreatedAt, in.ID }),
	}
	for _, in := range list {
		resp.Installations = append(resp.Installations, installationToProto(in))
	}
	return connect.NewResponse(resp), nil
}

// member returns the caller when they are a member of the request's team: user configurations belong to
// members, and a global admin outside the team has no instance to configure.
func member(ctx context.Context) (*access.Principal, error) {
	p, err := access.Require(ctx)
	if err != nil {
		return nil, err
	}
	if p.TeamRole == "" {
		return nil, connect.NewError(connect.CodeFailedPrecondition, errors.New("only the team's members have a configuration of its installations"))
	}
	return p, nil
}

// GetUserConfiguration returns the caller's own configuration of an installation.
func (h *Handler) GetUserConfiguration(ctx context.Context, req *connect.Request[apiv1.GetUserConfigurationRequest]) (*connect.Response[apiv1.GetUserConfigurationResponse], error) {
	p, err := member(ctx)
	if err != nil {
		return nil, err
	}
	uc, err := h.store.GetUserConfiguration(ctx, p.TeamID, uuid.MustParse(req.Msg.InstallationId), p.User.ID)
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "get user configuration", err)
	}
	return connect.NewResponse(&apiv1.GetUserConfigurationResponse{Configuration: userConfigurationToProto(uc)}), nil
}

// SetUserConfiguration replaces the caller's own configuration of an installation.
func (h *Handler) SetUserConfiguration(ctx context.Context, req *connect.Request[apiv1.SetUserConfigurationRequest]) (*connect.Response[apiv1.SetUserConfigurationResponse], error) {
	p, err := member(ctx)
	if err != nil {
		return nil, err
	}
	uc := store.UserConfiguration{
		InstallationID: uuid.MustParse(req.Msg.InstallationId), TeamID: p.TeamID, UserID: p.User.ID,
		ArgValues: settingsFromProto(req.Msg.ArgValues), Env: settingsFromProto(req.Msg.Env),
		Headers: settingsFromProto(req.Msg.Headers), QueryParams: settingsFromProto(req.Msg.QueryParams),
	}
	prior, err := h.store.GetUserConfiguration(ctx, p.TeamID, uc.InstallationID, p.User.ID)
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "set user configuration", err)
	}
	out, err := h.store.SetUserConfiguration(ctx, uc, author(p))
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "set user configuration", err)
	}
	set := setSecrets(uc.Values())
	removed := removedSecrets(prior.Values(), out.Values())
	if set != "" || removed != "" {
		h.audit(ctx, p, &p.TeamID, "installation.user_secrets_changed", req.Msg.InstallationId,
			map[string]string{"secrets_set": set, "secrets_removed": removed})
	}
	return connect.NewResponse(&apiv1.SetUserConfigurationResponse{Configuration: userConfigurationToProto(out)}), nil
}

// RotateSecrets seals every stored secret again with the keyring's current key.
func (h *Handler) RotateSecrets(ctx context.Context, _ *connect.Request[apiv1.RotateSecretsRequest]) (*connect.Response[apiv1.RotateSecretsResponse], error) {
	p, err := access.Require(ctx)
	if err != nil {
		return nil, err
	}
	r, err := h.store.RotateSecrets(ctx)
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "rotate secrets", err)
	}
	h.logger.InfoContext(ctx, "secrets rotated", "key_id", r.KeyID, "rows", r.Rows, "values", r.Values)
	h.audit(ctx, p, nil, "secrets.rotated", r.KeyID, map[string]string{"rows": strconv.Itoa(r.Rows), "values": strconv.Itoa(r.Values)})
	return connect.NewResponse(&apiv1.RotateSecretsResponse{KeyId: r.KeyID, Rows: uint32(r.Rows), Values: uint32(r.Values)}), nil
}
