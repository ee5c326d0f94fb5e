// Package instanceapi serves orrery.api.v1.InstanceService: the status, server logs and request logs of a
// team's instances, as paginated reads and as streams that resume from a cursor.
//
// Streams follow the database, not the replica that stored an entry: satellites emit events to any replica,
// which stores them and notifies store.EventChannel in the same transaction; every replica's notify.Hub wakes
// its open streams of that installation, and each reads what was stored after its cursor.
package instanceapi

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	"github.com/orrery/orrery/services/controlplane/internal/access"
	"github.com/orrery/orrery/services/controlplane/internal/notify"
	"github.com/orrery/orrery/services/controlplane/internal/ratelimit"
	"github.com/orrery/orrery/services/controlplane/internal/rpcerr"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// Page sizes.
const (
	defaultInstancePage = 100
	maxInstancePage     = 1000
	defaultLogPage      = 100
	maxLogPage          = 500
	// recentEvents is how many events GetInstanceStatus returns.
	recentEvents = 20
)

// Config configures a Handler. Zero fields take the defaults named on each.
type Config struct {
	// KeepAlive is how long a stream stays silent before it sends an empty message, so that proxies and load
	// balancers do not close it as idle. It also bounds how stale a stream can be if a notification is lost.
	// Default 15 s.
	KeepAlive time.Duration
	// BatchSize caps the entries of one stream message. Default 100.
	BatchSize int
}

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.KeepAlive == 0 {
		c.KeepAlive = 15 * time.Second
	}
	if c.BatchSize == 0 {
		c.BatchSize = 100
	}
	return c
}

// Handler implements apiv1connect.InstanceServiceHandler.
type Handler struct {
	logger *slog.Logger
	store  *store.Store
	hub    *notify.Hub
	cfg    Config
	// restarts bounds each user's RestartInstance calls, across replicas.
	restarts *ratelimit.Limiter

	drainOnce sync.Once
	draining  chan struct{}
}

// New returns a Handler whose streams wake on hub, which must listen on store.EventChannel. Callers are
// authenticated and authorized by the access policy before a method runs.
func New(logger *slog.Logger, st *store.Store, hub *notify.Hub, cfg Config) *Handler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Handler{logger: logger, store: st, hub: hub, cfg: cfg.WithDefaults(), draining: make(chan struct{}),
		restarts: ratelimit.New(st, "instance_restart", restartsPerMinute, restartBurst)}
}

// A user may restart instances this often, after a burst of restartBurst.
const (
	restartsPerMinute = 10
	restartBurst      = 20
)

// Drain ends open streams, so a replica that shuts down need not wait for them; clients resume elsewhere
// from their cursor.
func (h *Handler) Drain() { h.drainOnce.Do(func() { close(h.draining) }) }

// viewer is what the caller may see of the request's team: a team user only their own instances.
func viewer(ctx context.Context) (store.Viewer, error) {
	p, err := access.Require(ctx)
	if err != nil {
		return store.Viewer{}, err
	}
	v := store.Viewer{TeamID: p.TeamID}
	if !p.IsTeamAdmin() {
		v.UserID = &p.User.ID
	}
	return v, nil
}

// installation returns the caller's view of the team and the installation's id, or NotFound when the
// installation is not the team's.
func (h *Handler) installation(ctx context.Context, installationID string) (store.Viewer, uuid.UUID, error) {
	v, id, err := viewerOf(ctx, installationID)
	if err != nil {
		return v, id, err
	}
	return v, id, h.known(ctx, v, id)
}

// viewerOf returns the caller's view of the team and the installation's id, without checking that the
// installation is the team's: a read filtered by the team finds nothing of another's.
func viewerOf(ctx context.Context, installationID string) (store.Viewer, uuid.UUID, error) {
	v, err := viewer(ctx)
	// protovalidate has checked the id.
	id, _ := uuid.Parse(installationID)
	return v, id, err
}

// known returns NotFound unless the installation is the team's. Reads call it only when they find nothing,
// to tell an empty installation from another team's.
func (h *Handler) known(ctx context.Context, v store.Viewer, installationID uuid.UUID) error {
	if err := h.store.CheckInstallation(ctx, v.TeamID, installationID); err != nil {
		return rpcerr.From(ctx, h.logger, "installation "+installationID.String(), err)
	}
	return nil
}

func pageSize(requested uint32, def, maximum int) int {
	if requested == 0 {
		return def
	}
	return min(int(requested), maximum)
}

// ListInstances lists the instances the caller may see.
func (h *Handler) ListInstances(ctx context.Context, req *connect.Request[apiv1.ListInstancesRequest]) (*connect.Response[apiv1.ListInstancesResponse], error) {
	v, err := viewer(ctx)
	if err != nil {
		return nil, err
	}
	var installationID *uuid.UUID
	if id, err := uuid.Parse(req.Msg.InstallationId); err == nil {
		installationID = &id
	}
	size := pageSize(req.Msg.PageSize, defaultInstancePage, maxInstancePage)
	instances, err := h.store.ListInstances(ctx, v, installationID, req.Msg.PageToken, size)
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "list instances", err)
	}
	if len(instances) == 0 && installationID != nil {
		if err := h.known(ctx, v, *installationID); err != nil {
			return nil, err
		}
	}
	resp := &apiv1.ListInstancesResponse{Instances: instancesToProto(instances)}
	if len(instances) == size {
		resp.NextPageToken = instances[len(instances)-1].ID
	}
	return connect.NewResponse(resp), nil
}

// GetInstanceStatus describes one instance the caller may see.
func (h *Handler) GetInstanceStatus(ctx context.Context, req *connect.Request[apiv1.GetInstanceStatusRequest]) (*connect.Response[apiv1.GetInstanceStatusResponse], error) {
	v, err := viewer(ctx)
	if err != nil {
		return nil, err
	}
	what := "instance " + req.Msg.InstanceId
	inst, err := h.store.VisibleInstance(ctx, v, req.Msg.InstanceId)
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, what, err)
	}
	events, err := h.store.RecentInstanceEvents(ctx, v.TeamID, inst.ID, recentEvents)
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, what, err)
	}
	return connect.NewResponse(&apiv1.GetInstanceStatusResponse{
		Instance: instanceToProto(inst.Instance), RecentEvents: eventsToProto(events), ToolCount: uint32(inst.ToolCount),
	}), nil
}

// listLogs reads a newest-first page of an installation's log entries, and the before_id of the next page
// (0 after the last). An empty page of another team's installation is NotFound.
func listLogs[T any](ctx context.Context, h *Handler, installationID string, size uint32, beforeID int64,
	read func(store.Viewer, uuid.UUID, store.LogWindow) ([]T, error), id func(T) int64) ([]T, int64, error) {
	v, installation, err := viewerOf(ctx, installationID)
	if err != nil {
		return nil, 0, err
	}
	w := store.LogWindow{BeforeID: beforeID, NewestFirst: true, Limit: pageSize(size, defaultLogPage, maxLogPage)}
	entries, err := read(v, installation, w)
	switch {
	case err != nil:
		return nil, 0, rpcerr.From(ctx, h.logger, "list logs", err)
	case len(entries) == 0:
		return nil, 0, h.known(ctx, v, installation)
	case len(entries) < w.Limit:
		return entries, 0, nil
	}
	return entries, id(entries[len(entries)-1]), nil
}

// ListServerLogs pages through an installation's server logs, newest first.
func (h *Handler) ListServerLogs(ctx context.Context, req *connect.Request[apiv1.ListServerLogsRequest]) (*connect.Response[apiv1.ListServerLogsResponse], error) {
	lines, next, err := listLogs(ctx, h, req.Msg.InstallationId, req.Msg.PageSize, req.Msg.BeforeId,
		func(v store.Viewer, id uuid.UUID, w store.LogWindow) ([]store.LogLine, error) {
			return h.store.ServerLogs(ctx, v, id, w)
		},
		func(l store.LogLine) int64 { return l.ID })
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&apiv1.ListServerLogsResponse{Lines: linesToProto(lines), NextBeforeId: next}), nil
}

// ListRequestLogs pages through an installation's request logs, newest first.
func (h *Handler) ListRequestLogs(ctx context.Context, req *connect.Request[apiv1.ListRequestLogsRequest]) (*connect.Response[apiv1.ListRequestLogsResponse], error) {
	logs, next, err := listLogs(ctx, h, req.Msg.InstallationId, req.Msg.PageSize, req.Msg.BeforeId,
		func(v store.Viewer, id uuid.UUID, w store.LogWindow) ([]store.StoredRequestLog, error) {
			return h.store.RequestLogs(ctx, v, id, w)
		},
		func(rl store.StoredRequestLog) int64 { return rl.ID })
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&apiv1.ListRequestLogsResponse{RequestLogs: requestLogsToProto(logs), NextBeforeId: next}), nil
}

// GetRequestLog returns one request log with its bodies.
func (h *Handler) GetRequestLog(ctx context.Context, req *connect.Request[apiv1.GetRequestLogRequest]) (*connect.Response[apiv1.GetRequestLogResponse], error) {
	v, err := viewer(ctx)
	if err != nil {
		return nil, err
	}
	installationID, _ := uuid.Parse(req.Msg.InstallationId)
	rl, err := h.store.RequestLog(ctx, v, installationID, req.Msg.RequestId)
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "request log "+strconv.FormatInt(req.Msg.RequestId, 10), err)
	}
	return connect.NewResponse(&apiv1.GetRequestLogResponse{RequestLog: requestLogToProto(rl)}), nil
}
