package backend

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/services/satellite/internal/backoff"
)

// beats is what the satellite knows of its heartbeats, sent on their own or carried by polls.
type beats struct {
	mu sync.Mutex
	// last is when the most recent heartbeat the control plane recorded was sent; zero before the first.
	last time.Time
	// interval is the time between heartbeats the control plane asked for.
	interval time.Duration
	// onPolls is set once the control plane said it records heartbeats carried by polls.
	onPolls bool
	// riding is when the poll now in flight with a heartbeat was sent; zero when none is. The control plane
	// records that heartbeat before it holds the poll, while its answer comes only when the poll ends.
	riding time.Time
	status satellitev1.SatelliteStatus
	// loggedMetricsErr is set once a heartbeat went out without some metrics: the machine does not change
	// between heartbeats, so that is said once.
	loggedMetricsErr bool
}

// heartbeatLoop sees that the control plane hears from the satellite at least once an interval, until ctx
// ends or the API key is refused. The first heartbeat after start is a Heartbeat call carrying the public
// URL, so the control plane learns where the satellite is now. Later ones ride on command polls once the
// control plane says it records them there (see pollHeartbeat); this loop sends a Heartbeat call only when
// no poll carried one for a whole interval: a control plane that predates heartbeats on polls, a poll that
// failed, or polls held longer than the interval.
func (c *Communicator) heartbeatLoop(ctx context.Context) error {
	bo := backoff.New(c.cfg.Backoff)
	sentURL := false
	for {
		if sentURL {
			if wait := time.Until(c.heartbeatDue()); wait > 0 {
				if backoff.Sleep(ctx, wait) != nil {
					return nil
				}
				continue // a poll may have carried one meanwhile
			}
		}
		sent := time.Now()
		resp, err := c.client.Heartbeat(ctx, connect.NewRequest(c.heartbeatRequest(ctx, !sentURL)))
		if ctx.Err() == nil {
			c.metrics.observe("heartbeat", err)
		}
		switch {
		case ctx.Err() != nil:
			return nil
		case connect.CodeOf(err) == connect.CodeUnauthenticated:
			return c.keyRefused(err)
		case err != nil:
			wait := bo.Next()
			c.logger.WarnContext(ctx, "heartbeat failed; retrying", slog.Any("error", err),
				slog.Int("attempt", bo.Failures()), slog.Duration("retry_in", wait))
			if backoff.Sleep(ctx, wait) != nil {
				return nil
			}
		default:
			if bo.Failures() > 0 {
				// Configure commands may have expired undelivered while the control plane was out of reach.
				c.requestResync()
			}
			bo.Reset()
			sentURL = true
			c.heartbeatRecorded(ctx, sent, resp.Msg)
		}
	}
}

// heartbeatDue is when the next heartbeat is due: an interval after the last one recorded, or after the one
// riding on the poll in flight.
func (c *Communicator) heartbeatDue() time.Time {
	c.beats.mu.Lock()
	defer c.beats.mu.Unlock()
	last := c.beats.last
	if c.beats.riding.After(last) {
		last = c.beats.riding
	}
	return last.Add(c.beats.interval)
}

// pollHeartbeat is the heartbeat the poll sent at sent carries, or nil. A poll carries one once the control
// plane said it records them and half an interval has passed since the last: an idle satellite, whose polls
// are held for less than an interval, so sends every heartbeat on a poll, and one busy with commands does
// not send one with each of its quick polls. Call pollDone when the poll ends.
func (c *Communicator) pollHeartbeat(ctx context.Context, sent time.Time) *satellitev1.HeartbeatRequest {
	c.beats.mu.Lock()
	due := c.beats.onPolls && sent.Sub(c.beats.last) >= c.beats.interval/2
	if due {
		c.beats.riding = sent
	}
	c.beats.mu.Unlock()
	if !due {
		return nil
	}
	return c.heartbeatRequest(ctx, false)
}

// pollDone takes in the end of the poll sent at sent: the heartbeat it carried is no longer in flight, and
// resp, when the poll succeeded, may say it was recorded. A poll with a heartbeat refused for its content
// stops polls from carrying heartbeats until a Heartbeat call gets through again, so that a heartbeat the
// control plane will not take never holds up commands.
func (c *Communicator) pollDone(ctx context.Context, sent time.Time, resp *satellitev1.PollCommandsResponse, err error) {
	c.beats.mu.Lock()
	carried := c.beats.riding.Equal(sent) && !sent.IsZero()
	if carried {
		c.beats.riding = time.Time{}
	}
	refused := carried && err != nil && ctx.Err() == nil && !transient(err) &&
		connect.CodeOf(err) != connect.CodeUnauthenticated
	if refused {
		c.beats.onPolls = false
	}
	c.beats.mu.Unlock()
	if refused {
		c.logger.WarnContext(ctx, "a poll carrying a heartbeat was refused; heartbeats go as Heartbeat calls for now",
			slog.Any("error", err))
	}
	if beat := resp.GetHeartbeat(); beat != nil {
		c.heartbeatRecorded(ctx, sent, beat)
	}
}

// heartbeatRecorded takes in the control plane's answer to a heartbeat sent at sent.
func (c *Communicator) heartbeatRecorded(ctx context.Context, sent time.Time, resp *satellitev1.HeartbeatResponse) {
	if h := c.cfg.Commands; h != nil && h.Updater != nil {
		// Deferred first so it runs after the unlock: confirming an update reports a command result.
		defer h.Updater.Heartbeat(ctx)
	}
	c.beats.mu.Lock()
	defer c.beats.mu.Unlock()
	if sent.After(c.beats.last) {
		c.beats.last = sent
	}
	c.beats.interval = c.cfg.HeartbeatInterval
	c.beats.onPolls = resp.GetPollsCarryHeartbeats()
	if next := resp.GetNextHeartbeat().AsDuration(); next > 0 {
		c.beats.interval = next
	}
	if s := resp.GetStatus(); s != c.beats.status {
		c.logger.InfoContext(ctx, "satellite status", slog.String("status", s.String()))
		c.beats.status = s
	}
}

// heartbeatRequest builds a heartbeat. Metrics that cannot be read are sent as zero, and said so once, so a
// heartbeat is never withheld for want of a number.
func (c *Communicator) heartbeatRequest(ctx context.Context, withURL bool) *satellitev1.HeartbeatRequest {
	m, err := c.cfg.Metrics.Sample()
	if err != nil {
		c.beats.mu.Lock()
		logged := c.beats.loggedMetricsErr
		c.beats.loggedMetricsErr = true
		c.beats.mu.Unlock()
		if !logged {
			c.logger.WarnContext(ctx, "some system metrics are unavailable; heartbeats report them as zero",
				slog.Any("error", err))
		}
	}
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
	return req
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
