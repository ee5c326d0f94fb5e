package maintenance

import (
	"context"
	"log/slog"
	"time"

	"github.com/riverqueue/river"
)

// RemoteTokensPeriod is how often members' tokens at remote MCP servers are checked for refresh; shorter
// than the margin (remoteauth.Config.RefreshBefore) so no token expires between two runs.
const RemoteTokensPeriod = time.Minute

// RemoteRefresher refreshes members' tokens at remote MCP servers that are about to expire;
// remoteauth.Connector is one.
type RemoteRefresher interface {
	RefreshDue(ctx context.Context) (int, error)
}

// RemoteTokensArgs schedules a refresh of the remote tokens that are due.
type RemoteTokensArgs struct{}

// Kind names the job for River.
func (RemoteTokensArgs) Kind() string { return "refresh_remote_tokens" }

// RemoteTokensWorker refreshes the remote tokens that are due.
type RemoteTokensWorker struct {
	river.WorkerDefaults[RemoteTokensArgs]
	Logger *slog.Logger
	Remote RemoteRefresher
}

// Work refreshes what is due; connections that fail for a passing reason are tried again next run.
func (w *RemoteTokensWorker) Work(ctx context.Context, _ *river.Job[RemoteTokensArgs]) error {
	n, err := w.Remote.RefreshDue(ctx)
	if n > 0 {
		w.Logger.InfoContext(ctx, "refreshed remote tokens", "count", n)
	}
	return err
}
