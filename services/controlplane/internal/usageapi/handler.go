// Package usageapi serves orrery.api.v1.UsageService: a team's tool usage over time, its top tools and its
// top users, read from the usage rollups the store keeps.
//
// A team user sees only their own calls, as they see only their own instances and request logs: what
// each colleague calls, and how often, is the team admins' to know. Team admins and global admins see the
// whole team.
package usageapi

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	"github.com/orrery/orrery/services/controlplane/internal/access"
	"github.com/orrery/orrery/services/controlplane/internal/rpcerr"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// defaultTop is how many entries a top list has when the request does not say.
const defaultTop = 10

// Config configures a Handler. Zero fields take the defaults named on each.
type Config struct {
	// Now tells the time, which decides how far back per-minute steps reach. Default time.Now.
	Now func() time.Time
}

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Handler implements apiv1connect.UsageServiceHandler.
type Handler struct {
	logger *slog.Logger
	store  *store.Store
	cfg    Config
}

// New returns a Handler. Callers are authenticated and authorized by the access policy before a method
// runs; requests are validated by their protovalidate rules.
func New(logger *slog.Logger, st *store.Store, cfg Config) *Handler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Handler{logger: logger, store: st, cfg: cfg.WithDefaults()}
}

var errOthersUsage = errors.New("team users see only their own usage: leave user_id empty or name yourself")

// filter is the caller's view of the request's team: a team user's calls only.
func filter(ctx context.Context, installationID, toolName, userID string, start, end *timestamppb.Timestamp) (store.UsageFilter, error) {
	p, err := access.Require(ctx)
	if err != nil {
		return store.UsageFilter{}, err
	}
	// protovalidate has checked the ids; empty ones stay uuid.Nil, which matches everything.
	f := store.UsageFilter{TeamID: p.TeamID, ToolName: toolName, Start: start.AsTime(), End: end.AsTime()}
	f.InstallationID, _ = uuid.Parse(installationID)
	f.UserID, _ = uuid.Parse(userID)
	if !p.IsTeamAdmin() {
		if f.UserID != uuid.Nil && f.UserID != p.User.ID {
			return f, connect.NewError(connect.CodePermissionDenied, errOthersUsage)
		}
		f.UserID = p.User.ID
	}
	return f, nil
}

// GetUsageSeries returns the caller's view of the team's usage in steps.
func (h *Handler) GetUsageSeries(ctx context.Context, req *connect.Request[apiv1.GetUsageSeriesRequest]) (*connect.Response[apiv1.GetUsageSeriesResponse], error) {
	m := req.Msg
	f, err := filter(ctx, m.InstallationId, m.ToolName, m.UserId, m.StartTime, m.EndTime)
	if err != nil {
		return nil, err
	}
	step := m.Step.AsDuration()
	if oldest := h.cfg.Now().Add(-store.UsageMinuteRetention); step%time.Hour != 0 && f.Start.Before(oldest) {
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf(
			"steps shorter than whole hours are counted per minute, which is kept 30 days: start after %s, or use a step of whole hours",
			oldest.UTC().Format(time.RFC3339)))
	}
	origin, points, err := h.store.UsageSeries(ctx, f, step)
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "usage series", err)
	}
	resp := &apiv1.GetUsageSeriesResponse{Points: make([]*apiv1.UsagePoint, len(points))}
	var total store.Usage
	for i := range points {
		resp.Points[i] = &apiv1.UsagePoint{
			StartTime: timestamppb.New(origin.Add(time.Duration(i) * step)), Stats: statsToProto(&points[i]),
		}
		total.Merge(&points[i])
	}
	resp.Total = statsToProto(&total)
	return connect.NewResponse(resp), nil
}

// ListTopTools ranks the tools of the caller's view of the team.
func (h *Handler) ListTopTools(ctx context.Context, req *connect.Request[apiv1.ListTopToolsRequest]) (*connect.Response[apiv1.ListTopToolsResponse], error) {
	m := req.Msg
	f, err := filter(ctx, m.InstallationId, "", m.UserId, m.StartTime, m.EndTime)
	if err != nil {
		return nil, err
	}
	tools, err := h.store.UsageByTool(ctx, f)
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "usage by tool", err)
	}
	ranked := rank(tools, m.OrderBy, m.Limit, func(a, b store.ToolUsage) int {
		return cmp.Or(cmp.Compare(a.ToolName, b.ToolName), slices.Compare(a.InstallationID[:], b.InstallationID[:]))
	}, func(t store.ToolUsage) *store.Usage { return &t.Usage })
	resp := &apiv1.ListTopToolsResponse{}
	for _, t := range ranked {
		resp.Tools = append(resp.Tools, &apiv1.ToolUsage{
			InstallationId: t.InstallationID.String(), ToolName: t.ToolName, Stats: statsToProto(&t.Usage),
		})
	}
	return connect.NewResponse(resp), nil
}

// ListTopUsers ranks the users of the caller's view of the team: a team user sees only themselves.
func (h *Handler) ListTopUsers(ctx context.Context, req *connect.Request[apiv1.ListTopUsersRequest]) (*connect.Response[apiv1.ListTopUsersResponse], error) {
	m := req.Msg
	f, err := filter(ctx, m.InstallationId, m.ToolName, "", m.StartTime, m.EndTime)
	if err != nil {
		return nil, err
	}
	users, err := h.store.UsageByUser(ctx, f)
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "usage by user", err)
	}
	ranked := rank(users, m.OrderBy, m.Limit, func(a, b store.UserUsage) int {
		return slices.Compare(a.UserID[:], b.UserID[:])
	}, func(u store.UserUsage) *store.Usage { return &u.Usage })
	resp := &apiv1.ListTopUsersResponse{}
	for _, u := range ranked {
		pu := &apiv1.UserUsage{Stats: statsToProto(&u.Usage)}
		if u.UserID != uuid.Nil {
			pu.UserId = u.UserID.String()
		}
		resp.Users = append(resp.Users, pu)
	}
	return connect.NewResponse(resp), nil
}

// rank sorts entries largest first by order, ties by calls and then by name so the answer is stable, and
// keeps the first limit (defaultTop when 0).
func rank[T any](entries []T, by apiv1.UsageOrder, limit uint32, byName func(a, b T) int, usage func(T) *store.Usage) []T {
	measure := func(u *store.Usage) float64 {
		switch by {
		case apiv1.UsageOrder_USAGE_ORDER_ERRORS:
			return float64(u.Errors)
		case apiv1.UsageOrder_USAGE_ORDER_P95_LATENCY:
			return u.LatencyQuantile(0.95)
		}
		return float64(u.Calls)
	}
	keys := make([]float64, len(entries))
	order := make([]int, len(entries))
	for i, e := range entries {
		keys[i], order[i] = measure(usage(e)), i
	}
	slices.SortFunc(order, func(a, b int) int {
		return cmp.Or(cmp.Compare(keys[b], keys[a]), cmp.Compare(usage(entries[b]).Calls, usage(entries[a]).Calls),
			byName(entries[a], entries[b]))
	})
	n := int(limit)
	if n == 0 {
		n = defaultTop
	}
	out := make([]T, 0, min(n, len(order)))
	for _, i := range order[:min(n, len(order))] {
		out = append(out, entries[i])
	}
	return out
}

func statsToProto(u *store.Usage) *apiv1.UsageStats {
	return &apiv1.UsageStats{
		Calls: uint64(u.Calls), Errors: uint64(u.Errors), BytesIn: uint64(u.BytesIn), BytesOut: uint64(u.BytesOut),
		P50LatencyMs: u.LatencyQuantile(0.5), P95LatencyMs: u.LatencyQuantile(0.95),
	}
}
