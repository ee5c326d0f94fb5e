package cli

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
)

func instanceRow(i *apiv1.Instance) []string {
	return []string{i.GetId(), enumName(i.GetStatus().String(), "INSTANCE_STATUS_"), i.GetStatusMessage(), ago(i.GetStatusUpdatedAt())}
}

var instanceHeaders = []string{"INSTANCE", "STATUS", "MESSAGE", "UPDATED"}

func (a *App) instancesCommand() *cobra.Command {
	c := &cobra.Command{
		Use:     "instances",
		Aliases: []string{"instance"},
		Short:   "See and restart MCP server instances (yours; a team admin's, the team's)",
	}
	var team, installation string
	list := &cobra.Command{
		Use:     "list --team TEAM",
		Short:   "List instances with their status",
		Example: "  orreryctl instances list --team platform --installation everything",
		Args:    args(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			s, t, err := a.teamScope(c.Context(), team)
			if err != nil {
				return err
			}
			req := &apiv1.ListInstancesRequest{TeamId: t.GetId()}
			if installation != "" {
				i, err := s.installation(c.Context(), t.GetId(), installation)
				if err != nil {
					return err
				}
				req.InstallationId = i.GetId()
			}
			all := &apiv1.ListInstancesResponse{}
			for {
				resp, err := s.instances().ListInstances(c.Context(), connect.NewRequest(req))
				if err != nil {
					return err
				}
				all.Instances = append(all.Instances, resp.Msg.GetInstances()...)
				if req.PageToken = resp.Msg.GetNextPageToken(); req.PageToken == "" {
					break
				}
			}
			var rows [][]string
			for _, i := range all.GetInstances() {
				rows = append(rows, instanceRow(i))
			}
			return a.show(all, instanceHeaders, rows)
		},
	}
	a.teamFlag(list, &team, true)
	list.Flags().StringVar(&installation, "installation", "", "only this installation's instances")

	var statusTeam string
	status := &cobra.Command{
		Use:   "status INSTANCE --team TEAM",
		Short: "Show an instance's status and its recent events",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, argv []string) error {
			s, t, err := a.teamScope(c.Context(), statusTeam)
			if err != nil {
				return err
			}
			resp, err := s.instances().GetInstanceStatus(c.Context(), connect.NewRequest(&apiv1.GetInstanceStatusRequest{TeamId: t.GetId(), InstanceId: argv[0]}))
			if err != nil {
				return err
			}
			if a.output != "table" {
				return writeStructured(a.Out, a.output, resp.Msg)
			}
			if err := writeTable(a.Out, instanceHeaders, [][]string{instanceRow(resp.Msg.GetInstance())}); err != nil {
				return err
			}
			var rows [][]string
			for _, e := range resp.Msg.GetRecentEvents() {
				what := enumName(e.GetStatus().String(), "INSTANCE_STATUS_")
				if e.GetStatus() == 0 {
					what = enumName(e.GetLifecycle().String(), "LIFECYCLE_KIND_")
				}
				rows = append(rows, []string{when(e.GetOccurredAt()), what, e.GetMessage()})
			}
			if len(rows) > 0 {
				fmt.Fprintln(a.Out)
				return writeTable(a.Out, []string{"WHEN", "EVENT", "MESSAGE"}, rows)
			}
			return nil
		},
	}
	a.teamFlag(status, &statusTeam, true)

	var restartTeam string
	restart := &cobra.Command{
		Use:   "restart INSTANCE --team TEAM",
		Short: "Restart an instance, also one that failed permanently",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, argv []string) error {
			s, t, err := a.teamScope(c.Context(), restartTeam)
			if err != nil {
				return err
			}
			resp, err := s.instances().RestartInstance(c.Context(), connect.NewRequest(&apiv1.RestartInstanceRequest{TeamId: t.GetId(), InstanceId: argv[0]}))
			if err != nil {
				return err
			}
			fmt.Fprintf(a.Err, "Restart of %s queued for %d satellite(s); 'orreryctl instances status %s --team %s' follows it.\n",
				argv[0], len(resp.Msg.GetCommandIds()), argv[0], t.GetSlug())
			if a.output != "table" {
				return writeStructured(a.Out, a.output, resp.Msg)
			}
			return nil
		},
	}
	a.teamFlag(restart, &restartTeam, true)
	c.AddCommand(list, status, restart)
	return c
}

// logsCommand prints an installation's server logs and, with --follow, streams new lines from the
// cursor, reconnecting where the last stream ended.
func (a *App) logsCommand() *cobra.Command {
	var team string
	var follow bool
	var tail uint32
	c := &cobra.Command{
		Use:   "logs INSTALLATION --team TEAM",
		Short: "Print an installation's server logs (stderr of its servers)",
		Example: `  orreryctl logs everything --team platform
  orreryctl logs everything --team platform --follow -o json`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, argv []string) error {
			ctx := c.Context()
			s, t, i, err := a.installationScope(ctx, team, argv[0])
			if err != nil {
				return err
			}
			if !follow {
				resp, err := s.instances().ListServerLogs(ctx, connect.NewRequest(&apiv1.ListServerLogsRequest{TeamId: t.GetId(), InstallationId: i.GetId(), PageSize: tail}))
				if err != nil {
					return err
				}
				return printOldestFirst(resp.Msg.GetLines(), a.printLogLine)
			}
			open := func(ctx context.Context, after int64) (*connect.ServerStreamForClient[apiv1.StreamServerLogsResponse], error) {
				return s.instances().StreamServerLogs(ctx, connect.NewRequest(&apiv1.StreamServerLogsRequest{TeamId: t.GetId(), InstallationId: i.GetId(), AfterId: after}))
			}
			return followEntries(ctx, a, open, (*apiv1.StreamServerLogsResponse).GetLines, (*apiv1.StreamServerLogsResponse).GetCursor, a.printLogLine)
		},
	}
	a.teamFlag(c, &team, true)
	c.Flags().BoolVarP(&follow, "follow", "f", false, "print every retained line, then new lines as they arrive")
	c.Flags().Uint32Var(&tail, "tail", 100, "without --follow, how many of the newest lines to print (at most 500)")
	return c
}

func (a *App) printLogLine(l *apiv1.ServerLogLine) error {
	if a.output != "table" {
		return printJSONLine(a.Out, l)
	}
	_, err := fmt.Fprintf(a.Out, "%s  %-5s  %s  %s\n", when(l.GetOccurredAt()), enumName(l.GetLevel().String(), "LOG_LEVEL_"), l.GetInstanceId(), l.GetMessage())
	return err
}

func (a *App) requestsCommand() *cobra.Command {
	var team string
	var follow bool
	var tail uint32
	c := &cobra.Command{
		Use:     "requests INSTALLATION --team TEAM",
		Short:   "Print the tool calls an installation served",
		Example: "  orreryctl requests everything --team platform --follow",
		Args:    args(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, argv []string) error {
			ctx := c.Context()
			s, t, i, err := a.installationScope(ctx, team, argv[0])
			if err != nil {
				return err
			}
			if !follow {
				resp, err := s.instances().ListRequestLogs(ctx, connect.NewRequest(&apiv1.ListRequestLogsRequest{TeamId: t.GetId(), InstallationId: i.GetId(), PageSize: tail}))
				if err != nil {
					return err
				}
				return printOldestFirst(resp.Msg.GetRequestLogs(), a.printRequestLog)
			}
			open := func(ctx context.Context, after int64) (*connect.ServerStreamForClient[apiv1.StreamRequestLogsResponse], error) {
				return s.instances().StreamRequestLogs(ctx, connect.NewRequest(&apiv1.StreamRequestLogsRequest{TeamId: t.GetId(), InstallationId: i.GetId(), AfterId: after}))
			}
			return followEntries(ctx, a, open, (*apiv1.StreamRequestLogsResponse).GetRequestLogs, (*apiv1.StreamRequestLogsResponse).GetCursor, a.printRequestLog)
		},
	}
	a.teamFlag(c, &team, true)
	c.Flags().BoolVarP(&follow, "follow", "f", false, "print every retained call, then new calls as they arrive")
	c.Flags().Uint32Var(&tail, "tail", 100, "without --follow, how many of the newest calls to print (at most 500)")
	return c
}

func (a *App) printRequestLog(r *apiv1.RequestLog) error {
	if a.output != "table" {
		return printJSONLine(a.Out, r)
	}
	outcome := "ok"
	if !r.GetSuccess() {
		outcome = "error " + r.GetError()
	}
	_, err := fmt.Fprintf(a.Out, "%s  %-30s  %8s  %s\n", when(r.GetOccurredAt()), r.GetToolName(), r.GetDuration().AsDuration().Round(time.Millisecond), outcome)
	return err
}

// printOldestFirst prints a page that the unary listings return newest first.
func printOldestFirst[E any](page []E, print func(E) error) error {
	for i := len(page) - 1; i >= 0; i-- {
		if err := print(page[i]); err != nil {
			return err
		}
	}
	return nil
}

// followEntries prints the entries of one of the instance streams, the retained ones and then every new
// one, resuming from the cursor whenever a stream ends.
func followEntries[Res, E any](ctx context.Context, a *App,
	open func(ctx context.Context, after int64) (*connect.ServerStreamForClient[Res], error),
	entries func(*Res) []E, cursor func(*Res) int64, print func(E) error) error {
	return a.followStream(ctx, func(ctx context.Context, after int64) (int64, error) {
		stream, err := open(ctx, after)
		if err != nil {
			return after, err
		}
		defer stream.Close()
		for stream.Receive() {
			msg := stream.Msg()
			for _, e := range entries(msg) {
				if err := print(e); err != nil {
					return after, err
				}
			}
			after = cursor(msg)
		}
		return after, stream.Err()
	})
}

// followStream runs one stream after another from the last cursor: a stream ends when its replica shuts
// down, and the next one resumes where it stopped, so nothing is printed twice or lost.
func (a *App) followStream(ctx context.Context, run func(ctx context.Context, after int64) (int64, error)) error {
	var after int64
	failures := 0
	for {
		next, err := run(ctx, after)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil && connect.CodeOf(err) != connect.CodeUnavailable {
			return err
		}
		if next != after {
			failures = 0
		}
		after = next
		failures++
		if failures > 30 {
			return fmt.Errorf("the stream keeps ending (last error: %v); try again later", err)
		}
		fmt.Fprintln(a.Err, "(stream ended; resuming after "+strconv.FormatInt(after, 10)+")")
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}
