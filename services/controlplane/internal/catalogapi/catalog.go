// Package catalogapi serves the catalog of MCP server templates (orrery.api.v1.CatalogService), teams'
// installations of them with each member's own configuration (InstallationService), and the rotation of
// the keys their secrets are sealed with (SecretService).
//
// The access policy decides who may call each procedure before a handler runs; handlers then confine every
// query to the request's team, so an id of another team's installation or template is simply not found.
// Secret values go into the store and never come back out through this package: responses carry them
// masked, with a set flag.
package catalogapi

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	"github.com/orrery/orrery/services/controlplane/internal/access"
	"github.com/orrery/orrery/services/controlplane/internal/page"
	"github.com/orrery/orrery/services/controlplane/internal/rpcerr"
	"github.com/orrery/orrery/services/controlplane/internal/serverjson"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// Handler implements apiv1connect.CatalogServiceHandler, InstallationServiceHandler and SecretServiceHandler.
type Handler struct {
	logger   *slog.Logger
	store    *store.Store
	commands CommandPolicy
}

// New returns a Handler whose team-private stdio templates may run only what commands allows. Callers are
// authenticated and authorized by the access policy before a method runs.
func New(logger *slog.Logger, st *store.Store, commands CommandPolicy) *Handler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Handler{logger: logger, store: st, commands: commands}
}

// checkCommand refuses a team-private stdio template whose command the operator has not allowed. Naming
// the allowed commands is fine: they are the operator's configuration, not another tenant's data.
//
// A template built from source may also run a program of its own tree, named by a relative path with a
// slash ("bin/server", ".venv/bin/python"): its build already ran the team's code in the sandbox, which,
// as for "node -e", is the boundary; the policy keeps out programs of the host that reach past it.
func (h *Handler) checkCommand(e store.CatalogEntry) error {
	if e.TeamID == nil || e.Transport != "stdio" || h.commands.Allows(e.Command) {
		return nil
	}
	if len(e.Source) > 0 && inTree(e.Command) {
		return nil
	}
	return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf(
		"command %q is not allowed in team templates; this control plane allows: %s", e.Command, h.commands))
}

// inTree reports whether command names a program inside a built tree: relative, with a slash, never
// climbing out with "..".
func inTree(command string) bool {
	if command == "" || strings.HasPrefix(command, "/") || !strings.Contains(command, "/") ||
		command != strings.TrimSpace(command) {
		return false
	}
	return !slices.Contains(strings.Split(command, "/"), "..")
}

// scope returns the team a catalog request names, or nil for the global catalog.
func scope(ctx context.Context, teamID string) (*access.Principal, *uuid.UUID, error) {
	p, err := access.Require(ctx)
	if err != nil || teamID == "" {
		return p, nil, err
	}
	return p, &p.TeamID, nil
}

// author is who a change made by p is recorded as in the configuration history.
func author(p *access.Principal) store.Author {
	return store.Author{ID: &p.User.ID, Name: p.User.Email}
}

// audit appends to the audit log; a failure is logged, since the change itself has been made.
func (h *Handler) audit(ctx context.Context, p *access.Principal, teamID *uuid.UUID, action, target string, details map[string]string) {
	err := h.store.Audit(ctx, store.AuditEvent{
		ActorID: &p.User.ID, Actor: p.User.Email, TeamID: teamID, Action: action, Target: target, Details: details,
	})
	if err != nil {
		h.logger.ErrorContext(ctx, "append audit event", "action", action, "error", err)
	}
}

// CreateCatalogEntry creates a global or team-private template.
func (h *Handler) CreateCatalogEntry(ctx context.Context, req *connect.Request[apiv1.CreateCatalogEntryRequest]) (*connect.Response[apiv1.CreateCatalogEntryResponse], error) {
	p, teamID, err := scope(ctx, req.Msg.TeamId)
	if err != nil {
		return nil, err
	}
	e := specFromProto(req.Msg.Spec)
	e.TeamID, e.Slug = teamID, req.Msg.Slug
	out, err := h.createEntry(ctx, p, e, "create catalog entry")
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&apiv1.CreateCatalogEntryResponse{Entry: entryToProto(out)}), nil
}

func (h *Handler) createEntry(ctx context.Context, p *access.Principal, e store.CatalogEntry, what string) (store.CatalogEntry, error) {
	if err := h.checkCommand(e); err != nil {
		return store.CatalogEntry{}, err
	}
	if err := h.checkSource(ctx, e); err != nil {
		return store.CatalogEntry{}, err
	}
	out, err := h.store.CreateCatalogEntry(ctx, e, author(p))
	if err != nil {
		return out, rpcerr.From(ctx, h.logger, what, err)
	}
	h.audit(ctx, p, e.TeamID, "catalog.created", out.ID.String(), map[string]string{
		"slug": out.Slug, "secrets_set": setSecrets(e.Values()),
	})
	return out, nil
}

// UpdateCatalogEntry replaces a template's spec.
func (h *Handler) UpdateCatalogEntry(ctx context.Context, req *connect.Request[apiv1.UpdateCatalogEntryRequest]) (*connect.Response[apiv1.UpdateCatalogEntryResponse], error) {
	p, teamID, err := scope(ctx, req.Msg.TeamId)
	if err != nil {
		return nil, err
	}
	e := specFromProto(req.Msg.Spec)
	e.ID, e.TeamID = uuid.MustParse(req.Msg.Id), teamID
	if err := h.checkCommand(e); err != nil {
		return nil, err
	}
	if err := h.checkSource(ctx, e); err != nil {
		return nil, err
	}
	prior, err := h.store.GetCatalogEntry(ctx, teamID, e.ID)
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "update catalog entry", err)
	}
	out, err := h.store.UpdateCatalogEntry(ctx, e, author(p))
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "update catalog entry", err)
	}
	h.audit(ctx, p, teamID, "catalog.updated", out.ID.String(), map[string]string{
		"slug": out.Slug, "secrets_set": setSecrets(e.Values()),
		"secrets_removed": removedSecrets(prior.Values(), out.Values()),
	})
	return connect.NewResponse(&apiv1.UpdateCatalogEntryResponse{Entry: entryToProto(out)}), nil
}

// DeleteCatalogEntry deletes a template nobody has installed.
func (h *Handler) DeleteCatalogEntry(ctx context.Context, req *connect.Request[apiv1.DeleteCatalogEntryRequest]) (*connect.Response[apiv1.DeleteCatalogEntryResponse], error) {
	p, teamID, err := scope(ctx, req.Msg.TeamId)
	if err != nil {
		return nil, err
	}
	if err := h.store.DeleteCatalogEntry(ctx, teamID, uuid.MustParse(req.Msg.Id)); err != nil {
		return nil, rpcerr.From(ctx, h.logger, "delete catalog entry", err)
	}
	h.audit(ctx, p, teamID, "catalog.deleted", req.Msg.Id, nil)
	return connect.NewResponse(&apiv1.DeleteCatalogEntryResponse{}), nil
}

// GetCatalogEntry describes a template the caller may see.
func (h *Handler) GetCatalogEntry(ctx context.Context, req *connect.Request[apiv1.GetCatalogEntryRequest]) (*connect.Response[apiv1.GetCatalogEntryResponse], error) {
	_, teamID, err := scope(ctx, req.Msg.TeamId)
	if err != nil {
		return nil, err
	}
	e, err := h.store.GetCatalogEntry(ctx, teamID, uuid.MustParse(req.Msg.Id))
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "get catalog entry", err)
	}
	return connect.NewResponse(&apiv1.GetCatalogEntryResponse{Entry: entryToProto(e)}), nil
}

// ListCatalogEntries lists global templates and the team's own, by slug.
func (h *Handler) ListCatalogEntries(ctx context.Context, req *connect.Request[apiv1.ListCatalogEntriesRequest]) (*connect.Response[apiv1.ListCatalogEntriesResponse], error) {
	_, teamID, err := scope(ctx, req.Msg.TeamId)
	if err != nil {
		return nil, err
	}
	after, err := page.DecodeKeyToken(req.Msg.PageToken)
	if err != nil {
		return nil, err
	}
	size := page.Size(req.Msg.PageSize)
	entries, err := h.store.ListCatalogEntries(ctx, store.CatalogFilter{
		TeamID: teamID, Search: req.Msg.Search, Tags: req.Msg.Tags, AfterSlug: after, Limit: size,
	})
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "list catalog entries", err)
	}
	resp := &apiv1.ListCatalogEntriesResponse{
		NextPageToken: page.NextKeyToken(entries, size, func(e store.CatalogEntry) string { return e.Slug }),
	}
	for _, e := range entries {
		resp.Entries = append(resp.Entries, entryToProto(e))
	}
	return connect.NewResponse(resp), nil
}

// ImportServerJson creates a template from an MCP registry server.json document.
func (h *Handler) ImportServerJson(ctx context.Context, req *connect.Request[apiv1.ImportServerJsonRequest]) (*connect.Response[apiv1.ImportServerJsonResponse], error) {
	p, teamID, err := scope(ctx, req.Msg.TeamId)
	if err != nil {
		return nil, err
	}
	e, err := serverjson.Parse([]byte(req.Msg.ServerJson), serverjson.Options{
		Slug: req.Msg.Slug, UserFields: req.Msg.UserFields, PreferRemote: req.Msg.PreferRemote,
	})
	if err != nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, err)
	}
	e.TeamID = teamID
	out, err := h.createEntry(ctx, p, e, "import server.json")
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&apiv1.ImportServerJsonResponse{Entry: entryToProto(out)}), nil
}
