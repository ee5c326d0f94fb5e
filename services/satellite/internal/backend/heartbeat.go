package backend

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/services/satellite/internal/backoff"
)

// heartbeatLoop sends heartbeats until ctx ends or the API key is refused. The first heartbeat that gets
// through after start carries the public URL, so the control plane learns where the satellite is now.
func (c *Communicator) heartbeatLoop(ctx context.Context) error {
	bo := backoff.New(c.cfg.Backoff)
	sentURL := false
	loggedMetricsErr := false
	status := satellitev1.SatelliteStatus_SATELLITE_STATUS_UNSPECIFIED
	for {
		req, metricsErr := c.heartbeatRequest(!sentURL)
		if metricsErr != nil && !loggedMetricsErr {
			// Logged once: the machine does not change between heartbeats.
			c.logger.WarnContext(ctx, "some system metrics are unavailable; heartbeats report them as zero",
				slog.Any("error", metricsErr))
			loggedMetricsErr = true
		}
		resp, err := c.client.Heartbeat(ctx, connect.NewRequest(req))
		if ctx.Err() == nil {
			c.metrics.observe("heartbeat", err)
		}
		var wait time.Duration
		switch {
		case ctx.Err() != nil:
			return nil
		case connect.CodeOf(err) == connect.CodeUnauthenticated:
			return c.keyRefused(err)
		case err != nil:
			wait = bo.Next()
			c.logger.WarnContext(ctx, "heartbeat failed; retrying", slog.Any("error", err),
				slog.Int("attempt", bo.Failures()), slog.Duration("retry_in", wait))
		default:
			if bo.Failures() > 0 {
				// Configure commands may have expired undelivered while the control plane was out of reach.
				c.requestResync()
			}
			bo.Reset()
			sentURL = true
			if s := resp.Msg.GetStatus(); s != status {
				c.logger.InfoContext(ctx, "satellite status", slog.String("status", s.String()))
				status = s
			}
			wait = c.cfg.HeartbeatInterval
			if next := resp.Msg.GetNextHeartbeat().AsDuration(); next > 0 {
				wait = next
			}
		}
		if backoff.Sleep(ctx, wait) != nil {
			return nil
		}
	}
}

// heartbeatRequest builds a heartbeat. Metrics that cannot be read are sent as zero and their error
// returned, so a heartbeat is never withheld for want of a number.
func (c *Communicator) heartbeatRequest(withURL bool) (*satellitev1.HeartbeatRequest, error) {
	m, err := c.cfg.Metrics.Sample()
	req := &satellitev1.HeartbeatRequest{
		System: &satellitev1.SystemMetrics{
			CpuPercent:       m.CPUPercent,
			MemoryUsedBytes:  m.MemoryUsedBytes,
			MemoryTotalBytes: m.MemoryTotalBytes,
			DiskUsedBytes:    m.DiskUsedBytes,
			DiskTotalBytes:   m.DiskTotalBytes,
			LoadAverage_1M:   m.LoadAverage1m,
			Uptime:           durationpb.New(m.Uptime),
			Isolation:        c.cfg.Isolation,
		},
		Version: c.cfg.Version,
	}
	if c.cfg.Processes != nil {
		req.Processes = c.cfg.Processes.Processes()
	}
	req.ProcessCounts = c.processCounts(req.Processes)
	if pm := c.cfg.Pool; pm != nil {
		req.Capacity = pm.Capacity()
		req.InternalUrl = pm.InternalURL()
		req.OpenSessions = uint32(max(0, pm.OpenSessions()))
	}
	if withURL {
		req.Url = c.cfg.PublicURL
	}
	return req, err
}

// processCounts counts the desired instances per team, and of them those running: a stdio server with a
// live process or a remote server that is online.
func (c *Communicator) processCounts(reports []*satellitev1.ProcessReport) []*satellitev1.TeamProcessCount {
	totals := make(map[string]uint32)
	for _, in := range c.cfg.Desired.Snapshot().Instances {
		if in.GetTeamId() != "" {
			totals[in.GetTeamId()]++
		}
	}
	running := make(map[string]uint32)
	for _, p := range reports {
		if p.GetPid() > 0 || p.GetStatus() == satellitev1.InstanceStatus_INSTANCE_STATUS_ONLINE {
			running[p.GetTeamId()]++
		}
	}
	counts := make([]*satellitev1.TeamProcessCount, 0, len(totals))
	for _, team := range slices.Sorted(maps.Keys(totals)) {
		counts = append(counts, &satellitev1.TeamProcessCount{TeamId: team, Running: running[team], Total: totals[team]})
	}
	return counts
}
