package backend

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/services/satellite/internal/backoff"
)

// outcome is a command's result as reported, remembered by command id.
type outcome struct {
	result satellitev1.CommandResult
	output *structpb.Struct
	err    string
}

func completed(output *structpb.Struct) outcome {
	return outcome{result: satellitev1.CommandResult_COMMAND_RESULT_COMPLETED, output: output}
}

func failed(format string, args ...any) outcome {
	return outcome{result: satellitev1.CommandResult_COMMAND_RESULT_FAILED, err: fmt.Sprintf(format, args...)}
}

// pollLoop long-polls for commands and carries them out one at a time, in the order the control plane
// sends them (highest priority first), until ctx ends or the API key is refused.
func (c *Communicator) pollLoop(ctx context.Context) error {
	bo := backoff.New(c.cfg.Backoff)
	poll := &satellitev1.PollCommandsRequest{Wait: durationpb.New(c.cfg.PollWait)}
	for {
		start := time.Now()
		resp, err := c.client.PollCommands(ctx, connect.NewRequest(poll))
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
	log := c.logger.With(slog.String("command_id", cmd.GetId()), slog.String("type", cmd.GetType().String()),
		slog.String("priority", cmd.GetPriority().String()), slog.Int("attempt", int(cmd.GetAttempt())))
	if cmd.GetId() == "" {
		log.ErrorContext(ctx, "ignoring a command without an id: it could be neither deduplicated nor reported")
		return nil
	}
	if out, ok := c.history.Get(cmd.GetId()); ok {
		log.InfoContext(ctx, "command delivered again; reporting its earlier result without running it again")
		return c.report(ctx, log, cmd, out)
	}

	log.InfoContext(ctx, "running command", slog.String("event", payloadString(cmd, "event")))
	out, err := c.execute(ctx, cmd)
	if err != nil {
		return err
	}
	if ctx.Err() != nil {
		// Interrupted by shutdown: no result is recorded, so the control plane delivers it again later.
		return nil
	}
	c.history.Add(cmd.GetId(), out)
	if out.result == satellitev1.CommandResult_COMMAND_RESULT_FAILED {
		log.WarnContext(ctx, "command failed", slog.String("error", out.err))
	} else {
		log.InfoContext(ctx, "command completed", slog.Any("output", out.output.AsMap()))
	}
	return c.report(ctx, log, cmd, out)
}

// execute carries out cmd. Its error is fatal to Run (the API key was refused); a command that could not
// be carried out is a failed outcome instead.
func (c *Communicator) execute(ctx context.Context, cmd *satellitev1.Command) (outcome, error) {
	switch t := cmd.GetType(); t {
	case satellitev1.CommandType_COMMAND_TYPE_CONFIGURE:
		return c.configure(ctx, cmd)
	case satellitev1.CommandType_COMMAND_TYPE_SPAWN, satellitev1.CommandType_COMMAND_TYPE_KILL,
		satellitev1.CommandType_COMMAND_TYPE_RESTART, satellitev1.CommandType_COMMAND_TYPE_HEALTH_CHECK,
		satellitev1.CommandType_COMMAND_TYPE_REVOKE_TOKENS:
		if c.cfg.Executor == nil {
			// Reporting success would tell users their server runs when nothing does.
			return failed("this satellite has no MCP runtime yet, so it cannot carry out %s commands", commandName(t)), nil
		}
		out, err := c.cfg.Executor.Execute(ctx, cmd)
		if err != nil {
			return failed("%s: %v", commandName(t), err), nil
		}
		return completedWith(out), nil
	case satellitev1.CommandType_COMMAND_TYPE_UPDATE:
		return failed("this satellite cannot update itself: replace its binary and restart it"), nil
	default:
		return failed("unknown command type %s", t), nil
	}
}

// completedWith is a completed outcome whose output is out.
func completedWith(out map[string]any) outcome {
	output, err := structpb.NewStruct(out)
	if err != nil {
		return failed("encode result: %v", err)
	}
	return completed(output)
}

// configure fetches the configuration and applies it to the desired view, retrying while the control plane
// is unreachable, then lets the executor reconcile and act on the command's event.
func (c *Communicator) configure(ctx context.Context, cmd *satellitev1.Command) (outcome, error) {
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
	if c.cfg.Executor != nil {
		more, err := c.cfg.Executor.Execute(ctx, cmd)
		if err != nil {
			return failed("configuration %s applied, but: %v", res.etag, err), nil
		}
		for k, v := range more {
			if _, taken := out[k]; !taken {
				out[k] = v
			}
		}
	}
	return completedWith(out), nil
}

// report sends a command's result, retrying with backoff until it is recorded. A result the control plane
// refuses outright is logged and given up on; the command's lease then runs out and the control plane
// decides what happens to it.
func (c *Communicator) report(ctx context.Context, log *slog.Logger, cmd *satellitev1.Command, out outcome) error {
	msg := &satellitev1.ReportCommandResultRequest{
		CommandId: cmd.GetId(),
		Result:    out.result,
		Output:    out.output,
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

// commandName is the protocol's spelling of a command type, such as "health_check".
func commandName(t satellitev1.CommandType) string {
	return strings.ToLower(strings.TrimPrefix(t.String(), "COMMAND_TYPE_"))
}

func payloadString(cmd *satellitev1.Command, key string) string {
	return cmd.GetPayload().GetFields()[key].GetStringValue()
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
