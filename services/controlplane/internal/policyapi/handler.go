// Package policyapi serves orrery.api.v1.PolicyService: the policies satellites apply to every tool call,
// global (global admins) or a team's (its admins). A policy is compiled with internal/policy before it is
// stored, so satellites never receive an expression the control plane could not compile.
package policyapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/types/known/timestamppb"

	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	"github.com/orrery/orrery/internal/policy"
	"github.com/orrery/orrery/services/controlplane/internal/access"
	"github.com/orrery/orrery/services/controlplane/internal/ratelimit"
	"github.com/orrery/orrery/services/controlplane/internal/rpcerr"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// Handler implements apiv1connect.PolicyServiceHandler.
type Handler struct {
	logger *slog.Logger
	store  *store.Store
	// changes bounds each user's policy writes: each is a configure command to every satellite serving
	// the team, global ones included.
	changes *ratelimit.Limiter
}

// New returns a Handler. Callers are authenticated and authorized by the access policy (a team's admins
// for a team's policies, global admins without a team) and requests validated by their protovalidate rules
// before a method runs.
func New(logger *slog.Logger, st *store.Store) *Handler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Handler{logger: logger, store: st, changes: ratelimit.New(st, "policy_change", 30, 60)}
}

// ListPolicies lists the global policies and the team's.
func (h *Handler) ListPolicies(ctx context.Context, req *connect.Request[apiv1.ListPoliciesRequest]) (*connect.Response[apiv1.ListPoliciesResponse], error) {
	var team *uuid.UUID
	if id, err := uuid.Parse(req.Msg.TeamId); err == nil {
		team = &id
	}
	ps, err := h.store.ListPolicies(ctx, team)
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "list policies", err)
	}
	resp := &apiv1.ListPoliciesResponse{Policies: make([]*apiv1.Policy, len(ps))}
	for i, p := range ps {
		resp.Policies[i] = ToProto(p)
	}
	return connect.NewResponse(resp), nil
}

func (h *Handler) allowChange(ctx context.Context, p *access.Principal) error {
	return rpcerr.AllowUser(ctx, h.logger, h.changes, p.User.ID, "change policy", "too many policy changes; try again later")
}

// SetPolicy compiles and saves a policy.
func (h *Handler) SetPolicy(ctx context.Context, req *connect.Request[apiv1.SetPolicyRequest]) (*connect.Response[apiv1.SetPolicyResponse], error) {
	p, err := access.Require(ctx)
	if err != nil {
		return nil, err
	}
	m := req.Msg
	d := policy.Definition{
		TeamID: m.TeamId, Name: m.Name, Kind: policy.KindFromProto(m.Kind), Expression: m.Expression,
		RedactPaths: m.RedactPaths, RedactPatterns: m.RedactPatterns, CallsPerMinute: int(m.CallsPerMinute),
		RateKey: policy.RateKeyFromProto(m.RateLimitKey),
	}
	if err := policy.Validate(d); err != nil {
		return nil, invalid(err)
	}
	if err := h.allowChange(ctx, p); err != nil {
		return nil, err
	}
	saved, created, err := h.store.SetPolicy(ctx, d, store.AuditEvent{ActorID: &p.User.ID, Actor: p.User.Email})
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, fmt.Sprintf("save policy (at most %d per team, and %d global)",
			policy.MaxPerScope, policy.MaxPerScope), err)
	}
	return connect.NewResponse(&apiv1.SetPolicyResponse{Policy: ToProto(saved), Created: created}), nil
}

// DeletePolicy deletes a policy.
func (h *Handler) DeletePolicy(ctx context.Context, req *connect.Request[apiv1.DeletePolicyRequest]) (*connect.Response[apiv1.DeletePolicyResponse], error) {
	p, err := access.Require(ctx)
	if err != nil {
		return nil, err
	}
	if err := h.allowChange(ctx, p); err != nil {
		return nil, err
	}
	err = h.store.DeletePolicy(ctx, req.Msg.TeamId, req.Msg.Name, store.AuditEvent{ActorID: &p.User.ID, Actor: p.User.Email})
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "policy "+req.Msg.Name, err)
	}
	return connect.NewResponse(&apiv1.DeletePolicyResponse{}), nil
}

// invalid is InvalidArgument for a policy that does not compile. An expression's error carries its line
// and column in the message and, in full, as a field violation of "expression".
func invalid(err error) error {
	ce := connect.NewError(connect.CodeInvalidArgument, err)
	var ee *policy.ExpressionError
	if errors.As(err, &ee) {
		if detail, derr := connect.NewErrorDetail(&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{
			Field: "expression", Description: ee.Error() + "\n" + ee.Detail,
		}}}); derr == nil {
			ce.AddDetail(detail)
		}
	}
	return ce
}

// ToProto converts a stored policy for the API.
func ToProto(p store.Policy) *apiv1.Policy {
	return &apiv1.Policy{
		Id: p.ID, TeamId: p.TeamID, Name: p.Name, Kind: policy.KindToProto(p.Kind), Expression: p.Expression,
		RedactPaths: p.RedactPaths, RedactPatterns: p.RedactPatterns, CallsPerMinute: uint32(p.CallsPerMinute),
		RateLimitKey: policy.RateKeyToProto(p.RateKey), CreatedAt: timestamppb.New(p.CreatedAt),
		UpdatedAt: timestamppb.New(p.UpdatedAt),
	}
}
