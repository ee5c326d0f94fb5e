package catalogapi

import (
	"context"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	"github.com/orrery/orrery/services/controlplane/internal/access"
	"github.com/orrery/orrery/services/controlplane/internal/rpcerr"
)

// StopInstallation takes one of the team's installations out of service.
func (h *Handler) StopInstallation(ctx context.Context, req *connect.Request[apiv1.StopInstallationRequest]) (*connect.Response[apiv1.StopInstallationResponse], error) {
	p, err := access.Require(ctx)
	if err != nil {
		return nil, err
	}
	in, err := h.store.StopInstallation(ctx, p.TeamID, uuid.MustParse(req.Msg.InstallationId), req.Msg.Reason, p.IsGlobalAdmin(), author(p))
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "stop installation", err)
	}
	h.logger.WarnContext(ctx, "installation stopped", "security_event", "emergency_stop", "team_id", p.TeamID,
		"installation_id", in.ID, "actor", p.User.Email)
	return connect.NewResponse(&apiv1.StopInstallationResponse{Installation: installationToProto(in)}), nil
}

// ResumeInstallation puts a stopped installation back in service.
func (h *Handler) ResumeInstallation(ctx context.Context, req *connect.Request[apiv1.ResumeInstallationRequest]) (*connect.Response[apiv1.ResumeInstallationResponse], error) {
	p, err := access.Require(ctx)
	if err != nil {
		return nil, err
	}
	in, err := h.store.ResumeInstallation(ctx, p.TeamID, uuid.MustParse(req.Msg.InstallationId), p.IsGlobalAdmin(), author(p))
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "resume installation", err)
	}
	return connect.NewResponse(&apiv1.ResumeInstallationResponse{Installation: installationToProto(in)}), nil
}

// StopTemplate takes every installation of a template out of service, in every team.
func (h *Handler) StopTemplate(ctx context.Context, req *connect.Request[apiv1.StopTemplateRequest]) (*connect.Response[apiv1.StopTemplateResponse], error) {
	p, err := access.Require(ctx)
	if err != nil {
		return nil, err
	}
	e, err := h.store.StopTemplate(ctx, uuid.MustParse(req.Msg.Id), req.Msg.Reason, author(p))
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "stop template", err)
	}
	h.logger.WarnContext(ctx, "template stopped", "security_event", "emergency_stop", "catalog_entry_id", e.ID,
		"slug", e.Slug, "actor", p.User.Email)
	return connect.NewResponse(&apiv1.StopTemplateResponse{Entry: entryToProto(e)}), nil
}

// ResumeTemplate puts a stopped template back in service.
func (h *Handler) ResumeTemplate(ctx context.Context, req *connect.Request[apiv1.ResumeTemplateRequest]) (*connect.Response[apiv1.ResumeTemplateResponse], error) {
	p, err := access.Require(ctx)
	if err != nil {
		return nil, err
	}
	e, err := h.store.ResumeTemplate(ctx, uuid.MustParse(req.Msg.Id), author(p))
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "resume template", err)
	}
	return connect.NewResponse(&apiv1.ResumeTemplateResponse{Entry: entryToProto(e)}), nil
}
