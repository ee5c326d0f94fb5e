// Package adminapi serves orrery.admin.v1.AdminService: registration tokens, satellites and their commands.
// Until accounts exist it is guarded by one admin token from configuration.
package adminapi

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "github.com/orrery/orrery/gen/orrery/admin/v1"
	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/internal/action"
	"github.com/orrery/orrery/services/controlplane/internal/access"
	"github.com/orrery/orrery/services/controlplane/internal/command"
	"github.com/orrery/orrery/services/controlplane/internal/page"
	"github.com/orrery/orrery/services/controlplane/internal/regtoken"
	"github.com/orrery/orrery/services/controlplane/internal/rpcerr"
	"github.com/orrery/orrery/services/controlplane/internal/satelliteapi"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// defaultTokenTTL is a registration token's lifetime when the request sets none.
const defaultTokenTTL = 24 * time.Hour

// Handler implements adminv1connect.AdminServiceHandler.
type Handler struct {
	logger       *slog.Logger
	store        *store.Store
	signer       *regtoken.Signer
	offlineAfter time.Duration
	now          func() time.Time
	placer       Placer
}

// New returns a Handler; offlineAfter is how long a silent satellite still counts as active, and placer
// (nil: none) places teams again after a drain, a change of R or a revocation. Callers are authenticated and
// authorized by the access policy before a method runs.
func New(logger *slog.Logger, st *store.Store, signer *regtoken.Signer, offlineAfter time.Duration, placer Placer) *Handler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Handler{logger: logger, store: st, signer: signer, offlineAfter: offlineAfter, now: time.Now, placer: placer}
}

// CreateRegistrationToken creates a single-use registration token.
func (h *Handler) CreateRegistrationToken(ctx context.Context, req *connect.Request[adminv1.CreateRegistrationTokenRequest]) (*connect.Response[adminv1.CreateRegistrationTokenResponse], error) {
	ttl := defaultTokenTTL
	if req.Msg.Ttl != nil {
		ttl = req.Msg.Ttl.AsDuration()
	}
	rec := store.RegistrationToken{
		ID: uuid.New(), Name: req.Msg.Name, Scope: store.ScopeGlobal,
		ExpiresAt: h.now().Add(ttl).Truncate(time.Microsecond),
	}
	if req.Msg.Scope == adminv1.TokenScope_TOKEN_SCOPE_TEAM {
		teamID := requestID(req.Msg.TeamId)
		rec.Scope, rec.TeamID = store.ScopeTeam, &teamID
	}
	rec, err := h.store.CreateRegistrationToken(ctx, rec)
	if errors.Is(err, store.ErrConflict) {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("team_id: no such team"))
	}
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "create registration token", err)
	}
	claims := regtoken.Claims{ID: rec.ID, Scope: regtoken.Scope(rec.Scope), TeamID: rec.TeamID, ExpiresAt: rec.ExpiresAt}
	token, err := h.signer.Sign(claims)
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "create registration token", err)
	}
	h.logger.InfoContext(ctx, "registration token created", "token_id", rec.ID, "scope", rec.Scope, "team_id", rec.TeamID,
		"expires_at", rec.ExpiresAt)
	h.audit(ctx, rec.TeamID, "registration_token.created", rec.ID.String(), map[string]string{"name": rec.Name, "scope": string(rec.Scope)})
	return connect.NewResponse(&adminv1.CreateRegistrationTokenResponse{Token: token, RegistrationToken: tokenToProto(rec)}), nil
}

// ListRegistrationTokens lists tokens, newest first.
func (h *Handler) ListRegistrationTokens(ctx context.Context, req *connect.Request[adminv1.ListRegistrationTokensRequest]) (*connect.Response[adminv1.ListRegistrationTokensResponse], error) {
	cursor, err := page.DecodeToken(req.Msg.PageToken)
	if err != nil {
		return nil, err
	}
	size := page.Size(req.Msg.PageSize)
	toks, err := h.store.ListRegistrationTokens(ctx, optionalID(req.Msg.TeamId), cursor, size)
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "list registration tokens", err)
	}
	resp := &adminv1.ListRegistrationTokensResponse{
		NextPageToken: page.NextToken(toks, size, func(t store.RegistrationToken) (time.Time, uuid.UUID) { return t.CreatedAt, t.ID }),
	}
	for _, t := range toks {
		resp.RegistrationTokens = append(resp.RegistrationTokens, tokenToProto(t))
	}
	return connect.NewResponse(resp), nil
}

// RevokeRegistrationToken makes a token unusable.
func (h *Handler) RevokeRegistrationToken(ctx context.Context, req *connect.Request[adminv1.RevokeRegistrationTokenRequest]) (*connect.Response[adminv1.RevokeRegistrationTokenResponse], error) {
	tok, err := h.store.RevokeRegistrationToken(ctx, requestID(req.Msg.Id), optionalID(req.Msg.TeamId))
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "registration token "+req.Msg.Id, err)
	}
	h.logger.InfoContext(ctx, "registration token revoked", "token_id", tok.ID)
	h.audit(ctx, tok.TeamID, "registration_token.revoked", tok.ID.String(), nil)
	return connect.NewResponse(&adminv1.RevokeRegistrationTokenResponse{RegistrationToken: tokenToProto(tok)}), nil
}

// ListSatellites lists satellites, oldest first.
func (h *Handler) ListSatellites(ctx context.Context, req *connect.Request[adminv1.ListSatellitesRequest]) (*connect.Response[adminv1.ListSatellitesResponse], error) {
	cursor, err := page.DecodeToken(req.Msg.PageToken)
	if err != nil {
		return nil, err
	}
	size := page.Size(req.Msg.PageSize)
	sats, err := h.store.ListSatellites(ctx, optionalID(req.Msg.TeamId), cursor, size)
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "list satellites", err)
	}
	resp := &adminv1.ListSatellitesResponse{
		NextPageToken: page.NextToken(sats, size, func(s store.Satellite) (time.Time, uuid.UUID) { return s.CreatedAt, s.ID }),
	}
	for _, s := range sats {
		resp.Satellites = append(resp.Satellites, h.satelliteToProto(s))
	}
	return connect.NewResponse(resp), nil
}

// RevokeSatellite revokes a satellite's API key.
func (h *Handler) RevokeSatellite(ctx context.Context, req *connect.Request[adminv1.RevokeSatelliteRequest]) (*connect.Response[adminv1.RevokeSatelliteResponse], error) {
	sat, err := h.store.RevokeSatellite(ctx, requestID(req.Msg.Id), optionalID(req.Msg.TeamId))
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "satellite "+req.Msg.Id, err)
	}
	h.logger.InfoContext(ctx, "satellite revoked", "satellite_id", sat.ID, "satellite_name", sat.Name)
	h.audit(ctx, sat.TeamID, "satellite.revoked", sat.ID.String(), map[string]string{"name": sat.Name})
	// A revoked satellite serves nobody: its teams move now, not at the next periodic run.
	if err := h.recompute(ctx); err != nil {
		h.logger.ErrorContext(ctx, "recompute placement after revocation", "error", err)
	}
	return connect.NewResponse(&adminv1.RevokeSatelliteResponse{Satellite: h.satelliteToProto(sat)}), nil
}

// EnqueueCommand queues a command for one satellite, for every satellite serving a team, or for every global
// satellite, and audits it. Priority and lifetime come from the command policy unless the request overrides
// them.
func (h *Handler) EnqueueCommand(ctx context.Context, req *connect.Request[adminv1.EnqueueCommandRequest]) (*connect.Response[adminv1.EnqueueCommandResponse], error) {
	nc := store.NewCommand{Action: requestAction(req.Msg), Priority: req.Msg.Priority, TTL: req.Msg.Ttl.AsDuration()}
	if err := h.resolveUpdate(ctx, nc.Action); err != nil {
		return nil, err
	}
	if req.Msg.RollingBatchSize > 0 {
		return h.startRollout(ctx, req.Msg, nc)
	}
	var (
		cmds   []store.Command
		teamID *uuid.UUID
		target string
	)
	switch t := req.Msg.Target.(type) {
	case *adminv1.EnqueueCommandRequest_SatelliteId:
		sat, err := h.store.Satellite(ctx, requestID(t.SatelliteId))
		if err != nil {
			return nil, rpcerr.From(ctx, h.logger, "satellite "+t.SatelliteId, err)
		}
		if sat.RevokedAt != nil {
			return nil, connect.NewError(connect.CodeFailedPrecondition, errors.New("satellite "+t.SatelliteId+" was revoked"))
		}
		nc.TeamID, teamID, target = sat.TeamID, sat.TeamID, "satellite:"+sat.ID.String()
		cmd, err := h.store.EnqueueCommand(ctx, sat.ID, nc)
		if err != nil {
			return nil, rpcerr.From(ctx, h.logger, "enqueue command", err)
		}
		cmds = append(cmds, cmd)
	case *adminv1.EnqueueCommandRequest_TeamId:
		id := requestID(t.TeamId)
		nc.TeamID, teamID, target = &id, &id, "team:"+t.TeamId
		var err error
		if cmds, err = h.store.EnqueueTeamCommand(ctx, id, nc); err != nil {
			return nil, rpcerr.From(ctx, h.logger, "enqueue command", err)
		}
	case *adminv1.EnqueueCommandRequest_AllGlobalSatellites:
		target = "global satellites"
		var err error
		if cmds, err = h.store.EnqueueGlobalCommand(ctx, nc); err != nil {
			return nil, rpcerr.From(ctx, h.logger, "enqueue command", err)
		}
	}
	ids := make([]string, len(cmds))
	resp := &adminv1.EnqueueCommandResponse{}
	for i, c := range cmds {
		ids[i] = c.ID.String()
		resp.Commands = append(resp.Commands, commandToProto(c))
	}
	h.audit(ctx, teamID, "command.enqueued", target, map[string]string{
		"action": string(command.KindOf(nc.Action)), "command_ids": strings.Join(ids, ","),
	})
	return connect.NewResponse(resp), nil
}

// requestAction copies the request's action into a Command: the two oneofs share their field names.
func requestAction(req *adminv1.EnqueueCommandRequest) *satellitev1.Command {
	cmd := &satellitev1.Command{}
	action.Copy(cmd, req)
	return cmd
}

// ListCommands lists commands, newest first.
func (h *Handler) ListCommands(ctx context.Context, req *connect.Request[adminv1.ListCommandsRequest]) (*connect.Response[adminv1.ListCommandsResponse], error) {
	cursor, err := page.DecodeToken(req.Msg.PageToken)
	if err != nil {
		return nil, err
	}
	var f store.CommandFilter
	if req.Msg.SatelliteId != "" {
		id := requestID(req.Msg.SatelliteId)
		f.SatelliteID = &id
	}
	if req.Msg.State != satellitev1.CommandState_COMMAND_STATE_UNSPECIFIED {
		state := satelliteapi.CommandStateName(req.Msg.State)
		f.State = &state
	}
	size := page.Size(req.Msg.PageSize)
	cmds, err := h.store.ListCommands(ctx, f, cursor, size)
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "list commands", err)
	}
	resp := &adminv1.ListCommandsResponse{
		NextPageToken: page.NextToken(cmds, size, func(c store.Command) (time.Time, uuid.UUID) { return c.CreatedAt, c.ID }),
	}
	for _, c := range cmds {
		resp.Commands = append(resp.Commands, commandToProto(c))
	}
	return connect.NewResponse(resp), nil
}

func tokenToProto(t store.RegistrationToken) *adminv1.RegistrationToken {
	pt := &adminv1.RegistrationToken{
		Id: t.ID.String(), Name: t.Name, Scope: adminv1.TokenScope_TOKEN_SCOPE_GLOBAL,
		CreatedAt: timestamppb.New(t.CreatedAt), ExpiresAt: timestamppb.New(t.ExpiresAt),
		ConsumedAt: optionalTime(t.ConsumedAt), RevokedAt: optionalTime(t.RevokedAt),
	}
	if t.Scope == store.ScopeTeam {
		pt.Scope = adminv1.TokenScope_TOKEN_SCOPE_TEAM
	}
	if t.TeamID != nil {
		pt.TeamId = t.TeamID.String()
	}
	if t.SatelliteID != nil {
		pt.SatelliteId = t.SatelliteID.String()
	}
	return pt
}

func (h *Handler) satelliteToProto(s store.Satellite) *adminv1.Satellite {
	ps := &adminv1.Satellite{
		Id: s.ID.String(), Name: s.Name, Status: satelliteapi.StatusToProto(s.Status(h.now(), h.offlineAfter)),
		Type: satellitev1.SatelliteType_SATELLITE_TYPE_GLOBAL, Url: s.URL, Version: s.Version,
		CreatedAt: timestamppb.New(s.CreatedAt), LastHeartbeatAt: optionalTime(s.LastHeartbeatAt),
		ProcessCount: uint32(s.ProcessCount), Capacity: uint32(s.Capacity), InternalUrl: s.InternalURL,
		OpenSessions: uint32(s.OpenSessions), DrainingAt: optionalTime(s.DrainingAt), DrainedAt: optionalTime(s.DrainedAt),
	}
	if s.Type == store.ScopeTeam {
		ps.Type = satellitev1.SatelliteType_SATELLITE_TYPE_TEAM
	}
	if s.TeamID != nil {
		ps.TeamId = s.TeamID.String()
	}
	if len(s.SystemMetrics) > 2 { // "{}" until the first heartbeat
		ps.System = &satellitev1.SystemMetrics{}
		if err := protojson.Unmarshal(s.SystemMetrics, ps.System); err != nil {
			ps.System = nil
		}
	}
	return ps
}

func commandToProto(c store.Command) *adminv1.AdminCommand {
	return &adminv1.AdminCommand{
		Command:     satelliteapi.CommandToProto(c),
		SatelliteId: c.SatelliteID.String(),
		State:       satelliteapi.CommandStateFromName(c.State),
		Attempts:    c.Attempts,
		Output:      satelliteapi.StructFromJSON(c.Output),
		Outcomes:    c.Outcomes,
		Error:       c.Error,
		CompletedAt: optionalTime(c.CompletedAt),
	}
}

func optionalTime(t *time.Time) *timestamppb.Timestamp {
	if t == nil {
		return nil
	}
	return timestamppb.New(*t)
}

// requestID reads an id field that protovalidate has checked to be a UUID. Were the check ever skipped, the
// nil UUID matches no row and the request fails with NotFound rather than a panic.
func requestID(s string) uuid.UUID {
	id, _ := uuid.Parse(s)
	return id
}

// optionalID parses an optional, validated UUID field: nil when empty.
func optionalID(s string) *uuid.UUID {
	if s == "" {
		return nil
	}
	id := requestID(s)
	return &id
}

// audit appends to the audit log; a failure is logged, since the action it records has already happened.
func (h *Handler) audit(ctx context.Context, teamID *uuid.UUID, action, target string, details map[string]string) {
	e := store.AuditEvent{Actor: "anonymous", TeamID: teamID, Action: action, Target: target, Details: details}
	if p := access.FromContext(ctx); p != nil {
		e.ActorID, e.Actor = &p.User.ID, p.User.Email
	}
	if err := h.store.Audit(ctx, e); err != nil {
		h.logger.ErrorContext(ctx, "write audit log", "action", action, "error", err)
	}
}
