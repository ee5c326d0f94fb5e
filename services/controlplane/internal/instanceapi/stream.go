package instanceapi

import (
	"context"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	"github.com/orrery/orrery/services/controlplane/internal/rpcerr"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// maxSnapshot caps the instances in the first message of a status watch: one per team member.
const maxSnapshot = 10000

// WatchInstanceStatus streams an installation's status changes and lifecycle events.
func (h *Handler) WatchInstanceStatus(ctx context.Context, req *connect.Request[apiv1.WatchInstanceStatusRequest], stream *connect.ServerStream[apiv1.WatchInstanceStatusResponse]) error {
	v, installationID, err := h.installation(ctx, req.Msg.InstallationId)
	if err != nil {
		return err
	}
	cursor := req.Msg.AfterId
	if req.Msg.Snapshot {
		instances, seq, err := h.store.StatusSnapshot(ctx, v, installationID, maxSnapshot)
		if err != nil {
			return rpcerr.From(ctx, h.logger, "watch instance status", err)
		}
		cursor = seq
		if err := stream.Send(&apiv1.WatchInstanceStatusResponse{Instances: instancesToProto(instances), Cursor: cursor}); err != nil {
			return err
		}
	}
	return follow(ctx, h, installationID, store.StreamStatus, cursor, req.Msg.Snapshot,
		func(after int64) ([]store.InstanceEvent, error) {
			return h.store.InstanceEventsAfter(ctx, v, installationID, after, h.cfg.BatchSize)
		},
		func(e store.InstanceEvent) int64 { return e.Seq },
		func(events []store.InstanceEvent, cursor int64) error {
			return stream.Send(&apiv1.WatchInstanceStatusResponse{Events: eventsToProto(events), Cursor: cursor})
		})
}

// StreamServerLogs streams an installation's server logs.
func (h *Handler) StreamServerLogs(ctx context.Context, req *connect.Request[apiv1.StreamServerLogsRequest], stream *connect.ServerStream[apiv1.StreamServerLogsResponse]) error {
	v, installationID, err := h.installation(ctx, req.Msg.InstallationId)
	if err != nil {
		return err
	}
	return follow(ctx, h, installationID, store.StreamServerLogs, req.Msg.AfterId, false,
		func(after int64) ([]store.LogLine, error) {
			return h.store.ServerLogs(ctx, v, installationID, store.LogWindow{AfterID: after, Limit: h.cfg.BatchSize})
		},
		func(l store.LogLine) int64 { return l.ID },
		func(lines []store.LogLine, cursor int64) error {
			return stream.Send(&apiv1.StreamServerLogsResponse{Lines: linesToProto(lines), Cursor: cursor})
		})
}

// StreamRequestLogs streams an installation's request logs.
func (h *Handler) StreamRequestLogs(ctx context.Context, req *connect.Request[apiv1.StreamRequestLogsRequest], stream *connect.ServerStream[apiv1.StreamRequestLogsResponse]) error {
	v, installationID, err := h.installation(ctx, req.Msg.InstallationId)
	if err != nil {
		return err
	}
	return follow(ctx, h, installationID, store.StreamRequestLogs, req.Msg.AfterId, false,
		func(after int64) ([]store.StoredRequestLog, error) {
			return h.store.RequestLogs(ctx, v, installationID, store.LogWindow{AfterID: after, Limit: h.cfg.BatchSize})
		},
		func(rl store.StoredRequestLog) int64 { return rl.ID },
		func(logs []store.StoredRequestLog, cursor int64) error {
			return stream.Send(&apiv1.StreamRequestLogsResponse{RequestLogs: requestLogsToProto(logs), Cursor: cursor})
		})
}

// follow sends the entries of one installation's stream that come after cursor, then waits for
// notifications of new ones and sends those, until the client leaves or the replica drains. read returns up
// to a batch of entries after an id, oldest first; send sends a batch, or an empty keep-alive, with the new
// cursor. opened says a message was sent already.
//
// It subscribes before its first read, so an entry committed between a read and the wait still wakes it;
// a wake-up is only a hint to read again, so a spurious one costs one query and a lost one is made good by
// the keep-alive's read. The first read is answered at once, with a keep-alive when it finds nothing, so the
// response headers reach the client now rather than at the first entry or keep-alive: a client, or a proxy
// in between, then knows the stream is open.
func follow[T any](ctx context.Context, h *Handler, installationID uuid.UUID, stream store.Stream, cursor int64, opened bool,
	read func(after int64) ([]T, error), id func(T) int64, send func(entries []T, cursor int64) error) error {
	wake, unsubscribe := h.hub.Subscribe(store.StreamKey(installationID, stream))
	defer unsubscribe()
	idle := time.NewTimer(h.cfg.KeepAlive)
	defer idle.Stop()
	quiet := !opened
	for {
		entries, err := read(cursor)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return rpcerr.From(ctx, h.logger, "read "+string(stream), err)
		}
		switch {
		case len(entries) > 0:
			cursor = id(entries[len(entries)-1])
			if err := send(entries, cursor); err != nil {
				return err
			}
			idle.Reset(h.cfg.KeepAlive)
			if len(entries) == h.cfg.BatchSize {
				continue // more are waiting
			}
		case quiet:
			if err := send(nil, cursor); err != nil {
				return err
			}
			idle.Reset(h.cfg.KeepAlive)
		}
		quiet = false
		select {
		case <-ctx.Done():
			return nil
		case <-h.draining:
			return nil
		case <-wake:
		case <-idle.C:
			quiet = true
		}
	}
}
