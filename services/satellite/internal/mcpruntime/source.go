package mcpruntime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/services/satellite/internal/build"
)

// errBuildFailedBefore stops a source build that failed from running again on every call or crash.
var errBuildFailedBefore = errors.New("the last build of this source failed; a new configuration or a restart command tries again")

// buildSource builds, or finds built, the source of a stdio server's spec. The build's output and steps
// become the instance's server logs; a start or command that cuts the start short cancels it.
func (in *instance) buildSource(ctx context.Context, spec *satellitev1.Instance) (*build.Result, error) {
	if in.rt.cfg.Builds == nil {
		return nil, errors.New("this satellite does not build servers from source")
	}
	key := build.Key(spec.GetTeamId(), spec.GetSource())
	if in.failedBuild == key {
		return nil, errBuildFailedBefore
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer in.cancelOnUrgent(cancel)()
	box := sandboxSpec(spec, in.id, "")
	in.emitLog(satellitev1.LogLevel_LOG_LEVEL_INFO, "build: preparing sha256 "+spec.GetSource().GetSha256())
	res, err := in.rt.cfg.Builds.Build(ctx, build.Request{
		TeamID: spec.GetTeamId(), InstanceID: in.id, Source: spec.GetSource(),
		Network: box.Network, EgressAllow: box.EgressAllow, Limits: box.Limits,
		Log: func(line string) { in.logs.line(satellitev1.LogLevel_LOG_LEVEL_INFO, line) },
	})
	in.logs.flush()
	if err != nil {
		if ctx.Err() == nil {
			in.failedBuild = key
		}
		err = fmt.Errorf("build failed: %w", err)
		in.emitLog(satellitev1.LogLevel_LOG_LEVEL_ERROR, err.Error())
		in.log().Warn("building an MCP server from source failed", slog.Any("error", err))
		return nil, err
	}
	return res, nil
}

// canRedeploy reports whether a new configuration of the instance can replace the running server blue/
// green: the new one built from source and brought online beside it. Other changes stop the old server
// first, as a restart does.
func (in *instance) canRedeploy(spec *satellitev1.Instance) bool {
	return spec.GetSource() != nil && isStdio(spec) && in.conn != nil && in.conn.proc != nil &&
		in.currentStatus() == satellitev1.InstanceStatus_INSTANCE_STATUS_ONLINE
}

// redeploy replaces the running server with spec's, blue/green: the old one serves while the new one is
// built, started and lists its tools; then calls move to the new one and the old one stops once the calls
// it carries are done (Config.DrainTimeout at most). If anything fails, the old server goes on serving
// with its configuration, and the failure is in the logs and the status message.
func (in *instance) redeploy(ctx context.Context, old, spec *satellitev1.Instance) {
	in.rt.metrics.observeRestart("config_reload")
	in.emitLog(satellitev1.LogLevel_LOG_LEVEL_INFO, "redeploy: building the new version; the running one keeps serving")
	fail := func(err error) {
		in.mu.Lock()
		in.spec = old // restarts, crashes and wakes go on with the version that works
		in.mu.Unlock()
		msg := "redeploy failed, the previous version keeps serving: " + err.Error()
		in.emitLog(satellitev1.LogLevel_LOG_LEVEL_ERROR, msg)
		in.reportStatus(satellitev1.InstanceStatus_INSTANCE_STATUS_ONLINE, msg)
	}
	built, err := in.buildSource(ctx, spec)
	if err != nil {
		fail(err)
		return
	}
	opCtx, cancel := context.WithTimeoutCause(ctx, in.rt.cfg.StartTimeout,
		fmt.Errorf("the new version did not start within %v", in.rt.cfg.StartTimeout))
	defer cancel()
	defer in.cancelOnUrgent(cancel)()
	c, err := in.connect(opCtx, spec, startRestart, "redeploy", built)
	var cat catalog
	if err == nil {
		cat, err = discover(opCtx, c.session)
	}
	if err != nil {
		if c != nil {
			if c.proc != nil && c.proc.Exited() {
				err = fmt.Errorf("%w (%s)", err, exitDetail(c.proc))
			}
			c.close(in.rt.cfg.StopGrace)
		}
		fail(err)
		return
	}
	c.proc.Started()
	previous := in.conn
	in.conn = c
	before := in.currentStatusMessage()
	in.goOnline(c, cat)
	if now := in.currentStatusMessage(); now != before {
		// The instance stayed online, so goOnline reported nothing; a failed redeploy's message must go.
		in.reportStatus(satellitev1.InstanceStatus_INSTANCE_STATUS_ONLINE, now)
	}
	go c.relistLoop()
	in.emitLog(satellitev1.LogLevel_LOG_LEVEL_INFO, "redeploy: the new version serves; the previous one stops")
	in.rt.wg.Add(1)
	go func() {
		defer in.rt.wg.Done()
		previous.drain(in.rt.cfg.DrainTimeout)
		previous.close(in.rt.cfg.StopGrace)
	}()
}

// drain waits until no lease on c is held, or for timeout, or until the connection ends.
func (c *conn) drain(timeout time.Duration) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for c.leases.Load() > 0 {
		select {
		case <-deadline.C:
			return
		case <-c.done:
			return
		case <-c.ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// reportStatus publishes a status like setStatus, and reports it as an event even when only its message
// changed, such as a failed redeploy of a server that stays online.
func (in *instance) reportStatus(s satellitev1.InstanceStatus, message string) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.emitLocked(&satellitev1.Event{Payload: &satellitev1.Event_StatusChanged{StatusChanged: &satellitev1.StatusChanged{
		Status: s, Message: cut(message, 4096),
	}}})
	in.status, in.message = s, message
	in.changedLocked()
}

func (in *instance) currentStatusMessage() string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.message
}
