package backend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
	"unicode/utf8"

	"buf.build/go/protovalidate"
	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/internal/action"
	"github.com/orrery/orrery/services/satellite/internal/backoff"
	"github.com/orrery/orrery/services/satellite/internal/selfupdate"
)

// outcome is a command's result as reported, remembered by command id.
type outcome struct {
	result   satellitev1.CommandResult
	output   *structpb.Struct
	outcomes []*satellitev1.InstanceOutcome
	err      string
	// restarting says the satellite restarts to finish the command: the process after the restart reports
	// its result, so this one reports nothing and remembers nothing.
	restarting bool
}

func failed(format string, args ...any) outcome {
	return outcome{result: satellitev1.CommandResult_COMMAND_RESULT_FAILED, err: fmt.Sprintf(format, args...)}
}

// pollLoop long-polls for commands and carries them out one at a time, in the order the control plane
// sends them (highest priority first), until ctx ends or the API key is refused.
func (c *Communicator) pollLoop(ctx context.Context) error {
	bo := backoff.New(c.cfg.Backoff)
	for {
		start := time.Now()
		poll := &satellitev1.PollCommandsRequest{Wait: durationpb.New(c.cfg.PollWait), Heartbeat: c.pollHeartbeat(ctx, start)}
		resp, err := c.client.PollCommands(ctx, connect.NewRequest(poll))
		var answer *satellitev1.PollCommandsResponse
		if err == nil {
			answer = resp.Msg
		}
		c.pollDone(ctx, start, answer, err)
		if ctx.Err() == nil {
			c.metrics.observe("poll", err)
		}
		switch {
		case ctx.Err() != nil:
			return nil
		case connect.CodeOf(err) == connect.CodeUnauthenticated:
			return c.keyRefused(err)
		case err != nil:
			delay := bo.Next()
			c.logger.WarnContext(ctx, "polling for commands failed; retrying", slog.Any("error", err),
				slog.Int("attempt", bo.Failures()), slog.Duration("retry_in", delay))
			if backoff.Sleep(ctx, delay) != nil {
				return nil
			}
			continue
		}
		if bo.Failures() > 0 {
			// Commands created during the outage may have expired undelivered, configure commands among them;
			// a conditional fetch costs one small response when nothing changed.
			c.logger.InfoContext(ctx, "control plane reachable again", slog.Int("failed_polls", bo.Failures()))
			c.requestResync()
		}
		bo.Reset()

		cmds := resp.Msg.GetCommands()
		for _, cmd := range cmds {
			if err := c.handle(ctx, cmd); err != nil {
				return err
			}
			if ctx.Err() != nil {
				return nil
			}
		}
		if len(cmds) == 0 && resp.Msg.GetReplicaDraining() {
			// Jitter spreads the fleet over the remaining replicas instead of all arriving at one instant.
			switchWait := backoff.Policy{Min: c.cfg.ReplicaSwitchWait, Max: c.cfg.ReplicaSwitchWait, Rand: c.cfg.Backoff.Rand}
			if backoff.Sleep(ctx, switchWait.Delay(0)) != nil {
				return nil
			}
			continue
		}
		// A quick empty answer means the control plane did not hold the call, so polling again at once would
		// spin. The threshold is not the wait itself because the control plane may cap the wait below it.
		if len(cmds) == 0 && time.Since(start) < min(c.cfg.PollInterval, c.cfg.PollWait/2) {
			delay := c.cfg.PollInterval
			if next := resp.Msg.GetNextPoll().AsDuration(); next > 0 {
				delay = next
			}
			if backoff.Sleep(ctx, delay) != nil {
				return nil
			}
		}
	}
}

// handle carries out one command at most once and reports its result. A command id seen before is not
// run again: delivery is at least once, so a lost report or an expired lease brings the same command back,
// and its remembered result is reported again instead.
func (c *Communicator) handle(ctx context.Context, cmd *satellitev1.Command) error {
	log := c.logger.With(slog.String("command_id", cmd.GetId()), slog.String("action", actionName(cmd)),
		slog.String("priority", cmd.GetPriority().String()), slog.Int("attempt", int(cmd.GetAttempt())))
	if cmd.GetId() == "" {
		log.ErrorContext(ctx, "ignoring a command without an id: it could be neither deduplicated nor reported")
		return nil
	}
	if out, ok := c.history.Get(cmd.GetId()); ok {
		log.InfoContext(ctx, "command delivered again; reporting its earlier result without running it again")
		return c.report(ctx, log, cmd, out)
	}

	log.InfoContext(ctx, "running command")
	out, err := c.execute(ctx, cmd)
	if err != nil {
		return err
	}
	if ctx.Err() != nil {
		// Interrupted by shutdown: no result is recorded, so the control plane delivers it again later.
		return nil
	}
	if out.restarting {
		// Nothing more is taken on: the satellite is draining to restart, and commands taken now would be
		// cut short. Those already delivered come back when their lease ends.
		log.InfoContext(ctx, "command continues after a restart")
		<-ctx.Done()
		return nil
	}
	c.history.Add(cmd.GetId(), out)
	if out.result == satellitev1.CommandResult_COMMAND_RESULT_FAILED {
		log.WarnContext(ctx, "command failed", slog.String("error", out.err))
	} else {
		log.InfoContext(ctx, "command completed", slog.Any("output", out.output.AsMap()), slog.Int("instances", len(out.outcomes)))
	}
	return c.report(ctx, log, cmd, out)
}

// execute hands cmd's action to the handler that owns it. Its error is fatal to Run (the API key was
// refused); a command that could not be carried out is a failed outcome instead.
func (c *Communicator) execute(ctx context.Context, cmd *satellitev1.Command) (outcome, error) {
	if err := protovalidate.Validate(cmd); err != nil {
		return failed("invalid command: %v", err), nil
	}
	h := c.cfg.Commands
	if h == nil {
		h = &Handlers{}
	}
	team := cmd.GetTeamId()
	switch a := cmd.GetAction().(type) {
	case *satellitev1.Command_Configure:
		return c.configure(ctx, func(ctx context.Context, out map[string]any) error {
			if a.Configure.GetEvent() != satellitev1.ConfigureEvent_CONFIGURE_EVENT_MEMBER_REMOVED || h.Reconciler == nil {
				return nil
			}
			if team == "" {
				return errors.New("member_removed needs the command's team")
			}
			removed, err := h.Reconciler.ForgetMember(team, a.Configure.GetUserId())
			out["member_home_removed"] = removed
			return err
		})
	case *satellitev1.Command_Redeploy:
		if h.Instances == nil {
			return noRuntime(cmd), nil
		}
		var outcomes []*satellitev1.InstanceOutcome
		out, err := c.configure(ctx, func(ctx context.Context, _ map[string]any) (err error) {
			outcomes, err = h.Instances.Restart(ctx, team, &satellitev1.InstanceSelector{
				Target: &satellitev1.InstanceSelector_InstallationId{InstallationId: a.Redeploy.GetInstallationId()},
			}, satellitev1.RestartReason_RESTART_REASON_CONFIG_RELOAD)
			return err
		})
		out.outcomes = outcomes
		return out, err
	case *satellitev1.Command_RevokeTokens:
		if h.Tokens == nil {
			return noRuntime(cmd), nil
		}
		n, err := h.Tokens.RevokeTokens(a.RevokeTokens.GetTokenHashes())
		if err != nil {
			return failed("revoke_tokens: %v", err), nil
		}
		return completedWith(map[string]any{"revoked": n}, nil), nil
	case *satellitev1.Command_Update:
		if h.Updater == nil {
			return failed("self-update is off on this satellite: configure release keys (ORRERY_RELEASE_PUBLIC_KEYS) to enable it"), nil
		}
		out, err := h.Updater.Update(ctx, selfupdate.Request{
			CommandID: cmd.GetId(), Version: a.Update.GetVersion(), AllowDowngrade: a.Update.GetAllowDowngrade(),
		})
		switch {
		case errors.Is(err, selfupdate.ErrRestarting):
			return outcome{restarting: true}, nil
		case err != nil:
			return failed("update: %v", err), nil
		}
		return completedWith(out, nil), nil
	}
	if h.Instances == nil {
		return noRuntime(cmd), nil
	}
	var (
		outcomes []*satellitev1.InstanceOutcome
		err      error
	)
	switch a := cmd.GetAction().(type) {
	case *satellitev1.Command_Spawn:
		outcomes, err = h.Instances.Spawn(ctx, team, a.Spawn.GetInstances())
	case *satellitev1.Command_Kill:
		outcomes, err = h.Instances.Kill(ctx, team, a.Kill.GetInstances())
	case *satellitev1.Command_Restart:
		outcomes, err = h.Instances.Restart(ctx, team, a.Restart.GetInstances(), a.Restart.GetReason())
	case *satellitev1.Command_Recovery:
		outcomes, err = h.Instances.Recover(ctx, team, a.Recovery.GetInstallationId())
	case *satellitev1.Command_HealthCheck:
		outcomes, err = h.Instances.CheckCredentials(ctx, team, a.HealthCheck.GetInstallationId())
	default:
		return failed("unknown action %s", actionName(cmd)), nil
	}
	if err != nil {
		return failed("%s: %v", actionName(cmd), err), nil
	}
	return completedWith(nil, outcomes), nil
}

// noRuntime is the outcome of a command whose handler this satellite lacks. Reporting success would tell
// users their server runs when nothing does.
func noRuntime(cmd *satellitev1.Command) outcome {
	return failed("this satellite has no MCP runtime yet, so it cannot carry out %s commands", actionName(cmd))
}

// completedWith is a completed outcome whose output is out.
func completedWith(out map[string]any, outcomes []*satellitev1.InstanceOutcome) outcome {
	var output *structpb.Struct
	if out != nil {
		var err error
		if output, err = structpb.NewStruct(out); err != nil {
			return failed("encode result: %v", err)
		}
	}
	return outcome{result: satellitev1.CommandResult_COMMAND_RESULT_COMPLETED, output: output, outcomes: outcomes}
}

// configure fetches the configuration and applies it to the desired view, retrying while the control plane
// is unreachable, lets the reconciler apply it to the instances, then runs then, which may add to the output.
func (c *Communicator) configure(ctx context.Context, then func(context.Context, map[string]any) error) (outcome, error) {
	var res syncResult
	err := c.retry(ctx, "fetching configuration", func() (err error) {
		res, err = c.syncConfiguration(ctx)
		return err
	})
	switch {
	case ctx.Err() != nil:
		return outcome{}, nil
	case connect.CodeOf(err) == connect.CodeUnauthenticated:
		return outcome{}, c.keyRefused(err)
	case err != nil:
		return failed("fetch configuration: %v", err), nil
	}
	out := map[string]any{
		"instances": res.instances,
		"added":     len(res.diff.Added),
		"changed":   len(res.diff.Changed),
		"removed":   len(res.diff.Removed),
		"etag":      res.etag,
	}
	if h := c.cfg.Commands; h != nil && h.Reconciler != nil {
		// The runtime also reconciles on its own when the view changed; this returns once that is done, so
		// then finds the instances as configured.
		if err := h.Reconciler.ApplyConfiguration(ctx); err != nil {
			return failed("configuration %s applied, but: %v", res.etag, err), nil
		}
	}
	if err := then(ctx, out); err != nil {
		return failed("configuration %s applied, but: %v", res.etag, err), nil
	}
	return completedWith(out, nil), nil
}

// report sends a command's result, retrying with backoff until it is recorded. A result the control plane
// refuses outright is logged and given up on; the command's lease then runs out and the control plane
// decides what happens to it.
func (c *Communicator) report(ctx context.Context, log *slog.Logger, cmd *satellitev1.Command, out outcome) error {
	msg := &satellitev1.ReportCommandResultRequest{
		CommandId: cmd.GetId(),
		Result:    out.result,
		Output:    out.output,
		Outcomes:  out.outcomes,
		Error:     truncate(out.err, 4096),
	}
	err := c.retry(ctx, "reporting a command result", func() error {
		_, err := c.client.ReportCommandResult(ctx, connect.NewRequest(msg))
		return err
	})
	switch {
	case ctx.Err() != nil:
		return nil
	case connect.CodeOf(err) == connect.CodeUnauthenticated:
		return c.keyRefused(err)
	case err != nil:
		log.ErrorContext(ctx, "control plane refused the command result", slog.Any("error", err))
	}
	return nil
}

// actionName is the protocol's spelling of cmd's action, such as "health_check".
func actionName(cmd *satellitev1.Command) string {
	if name := action.Name(cmd); name != "" {
		return name
	}
	return "unknown"
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// ReportResult reports the result of a command this process did not receive, such as an update finished by
// the process that restarted on the new version: completed with output when failure is empty, else failed.
func (c *Communicator) ReportResult(ctx context.Context, commandID string, output map[string]any, failure string) error {
	out := completedWith(output, nil)
	if failure != "" {
		out = failed("%s", failure)
	}
	c.history.Add(commandID, out)
	return c.report(ctx, c.logger.With(slog.String("command_id", commandID)), &satellitev1.Command{Id: commandID}, out)
}
