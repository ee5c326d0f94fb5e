package adminapi

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "github.com/orrery/orrery/gen/orrery/admin/v1"
	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/services/controlplane/internal/page"
	"github.com/orrery/orrery/services/controlplane/internal/rpcerr"
	"github.com/orrery/orrery/services/controlplane/internal/satelliteapi"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// What satellites report about themselves: heartbeat history, process lists and dropped events. A team admin
// reads these of their team's own satellites (team_id set); everything else, global satellites included,
// whose reports span teams, is for global admins.

// ListSatelliteHeartbeats lists a satellite's heartbeat history, newest first.
func (h *Handler) ListSatelliteHeartbeats(ctx context.Context, req *connect.Request[adminv1.ListSatelliteHeartbeatsRequest]) (*connect.Response[adminv1.ListSatelliteHeartbeatsResponse], error) {
	before, err := decodeIDToken(req.Msg.PageToken)
	if err != nil {
		return nil, err
	}
	size := page.Size(req.Msg.PageSize)
	beats, err := h.store.SatelliteHeartbeats(ctx, requestID(req.Msg.SatelliteId), optionalID(req.Msg.TeamId), before, size)
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "satellite "+req.Msg.SatelliteId, err)
	}
	resp := &adminv1.ListSatelliteHeartbeatsResponse{
		NextPageToken: page.NextKeyToken(beats, size, func(b store.StoredHeartbeat) string { return strconv.FormatInt(b.ID, 10) }),
	}
	for _, b := range beats {
		resp.Heartbeats = append(resp.Heartbeats, &adminv1.SatelliteHeartbeat{
			ReceivedAt:    timestamppb.New(b.ReceivedAt),
			System:        satelliteapi.MessageFromJSON(b.SystemMetrics, &satellitev1.SystemMetrics{}),
			ProcessCounts: processCountsFromJSON(b.ProcessCounts),
		})
	}
	return connect.NewResponse(resp), nil
}

// ListSatelliteProcesses lists the processes of a satellite's latest heartbeat.
func (h *Handler) ListSatelliteProcesses(ctx context.Context, req *connect.Request[adminv1.ListSatelliteProcessesRequest]) (*connect.Response[adminv1.ListSatelliteProcessesResponse], error) {
	after, err := page.DecodeKeyToken(req.Msg.PageToken)
	if err != nil {
		return nil, err
	}
	size := page.Size(req.Msg.PageSize)
	procs, err := h.store.SatelliteProcesses(ctx, requestID(req.Msg.SatelliteId), optionalID(req.Msg.TeamId), after, size)
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "satellite "+req.Msg.SatelliteId, err)
	}
	resp := &adminv1.ListSatelliteProcessesResponse{
		NextPageToken: page.NextKeyToken(procs, size, func(p store.ReportedProcess) string { return p.InstanceID }),
	}
	for _, p := range procs {
		resp.Processes = append(resp.Processes, &adminv1.SatelliteProcess{
			ReportedAt: timestamppb.New(p.ReportedAt),
			Process: &satellitev1.ProcessReport{
				InstanceId: p.InstanceID, TeamId: p.TeamID.String(), InstallationId: p.InstallationID.String(),
				Status: satelliteapi.InstanceStatusFromName(p.Status), Health: satelliteapi.ProcessHealthFromName(p.Health),
				Pid: p.PID, MemoryBytes: uint64(max(p.MemoryBytes, 0)), RequestCount: uint64(max(p.RequestCount, 0)),
				Uptime: durationpb.New(time.Duration(p.UptimeSeconds * float64(time.Second))),
			},
		})
	}
	return connect.NewResponse(resp), nil
}

// ListDroppedEventReports lists a satellite's dropped-event reports, newest first, with their total.
func (h *Handler) ListDroppedEventReports(ctx context.Context, req *connect.Request[adminv1.ListDroppedEventReportsRequest]) (*connect.Response[adminv1.ListDroppedEventReportsResponse], error) {
	before, err := page.DecodeToken(req.Msg.PageToken)
	if err != nil {
		return nil, err
	}
	size := page.Size(req.Msg.PageSize)
	reports, total, err := h.store.DroppedEventReports(ctx, requestID(req.Msg.SatelliteId), optionalID(req.Msg.TeamId), before, size)
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "satellite "+req.Msg.SatelliteId, err)
	}
	resp := &adminv1.ListDroppedEventReportsResponse{
		TotalDropped: uint64(max(total, 0)),
		NextPageToken: page.NextToken(reports, size, func(r store.DroppedEventReport) (time.Time, uuid.UUID) {
			return r.OccurredAt, r.ID
		}),
	}
	for _, r := range reports {
		resp.Reports = append(resp.Reports, &adminv1.DroppedEventReport{
			Id: r.ID.String(), Count: uint64(max(r.Count, 0)), Reason: r.Reason, OccurredAt: timestamppb.New(r.OccurredAt),
		})
	}
	return connect.NewResponse(resp), nil
}

// decodeIDToken reads a page token that holds the last id of the previous page; empty means the first page.
func decodeIDToken(token string) (*int64, error) {
	if token == "" {
		return nil, nil
	}
	raw, err := page.DecodeKeyToken(token)
	if err != nil {
		return nil, err
	}
	id, err := strconv.ParseInt(raw, 10, 64)
	if err != nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("page_token: not a token from a previous response"))
	}
	return &id, nil
}

// processCountsFromJSON reads the per-team counts a heartbeat stored; what cannot be read is left out.
func processCountsFromJSON(raw []byte) []*satellitev1.TeamProcessCount {
	var counts []struct {
		TeamID  string `json:"team_id"`
		Running uint32 `json:"running"`
		Total   uint32 `json:"total"`
	}
	if json.Unmarshal(raw, &counts) != nil {
		return nil
	}
	out := make([]*satellitev1.TeamProcessCount, len(counts))
	for i, c := range counts {
		out[i] = &satellitev1.TeamProcessCount{TeamId: c.TeamID, Running: c.Running, Total: c.Total}
	}
	return out
}
