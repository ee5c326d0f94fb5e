// Package maintenance runs the control plane's periodic jobs through River: expiring commands, noticing
// satellites that went offline, trimming logs, aggregating template health, queuing credential checks of
// remote installations, rolling usage up into hours and pruning history. River elects one leader among the replicas to schedule them,
// so each job runs once per period however many replicas there are.
package maintenance

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"

	"github.com/orrery/orrery/services/controlplane/internal/alert"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// Periods of the jobs, and what they keep.
const (
	SweepPeriod          = time.Minute
	RateLimitsPeriod     = time.Minute
	PrunePeriod          = time.Hour
	TrimLogsPeriod       = 10 * time.Minute
	TemplateHealthPeriod = 3 * time.Minute
	CredentialPeriod     = time.Minute
	OfflinePeriod        = 30 * time.Second
	// UsageRollupPeriod is how far the hourly usage rollups may trail the per-minute ones.
	UsageRollupPeriod = time.Minute

	// KeepLogs is how many server-log lines and request logs each installation keeps.
	KeepLogs = 100
	// CredentialCheckEvery is how often each remote installation's credentials are validated.
	CredentialCheckEvery = 15 * time.Minute
	// KeepAlerts is how long alerts and their delivery logs are kept.
	KeepAlerts = 30 * 24 * time.Hour
)

// DefaultRetention keeps a day of heartbeats and event ids, and a month of command and instance history.
var DefaultRetention = store.Retention{
	Heartbeats:       24 * time.Hour,
	ReceivedEvents:   24 * time.Hour,
	FinishedCommands: 30 * 24 * time.Hour,
	InstanceEvents:   30 * 24 * time.Hour,
	// Nothing needs an expired code or token; the day keeps clock skew between replicas harmless.
	ExpiredOAuthTokens: 24 * time.Hour,
	// A client registers just before it asks for consent; a day is ample for a person to answer.
	UnusedOAuthClients: 24 * time.Hour,
	// Nothing needs an expired invitation, and its address is personal data; the day keeps clock skew harmless.
	ExpiredInvitations: 24 * time.Hour,
}

// SweepArgs schedules a command sweep.
type SweepArgs struct{}

// Kind names the job for River.
func (SweepArgs) Kind() string { return "sweep_commands" }

// PruneArgs schedules a history prune.
type PruneArgs struct{}

// Kind names the job for River.
func (PruneArgs) Kind() string { return "prune_history" }

// SweepWorker expires and fails commands of every satellite.
type SweepWorker struct {
	river.WorkerDefaults[SweepArgs]
	Logger *slog.Logger
	Store  *store.Store
}

// Work runs one sweep.
func (w *SweepWorker) Work(ctx context.Context, _ *river.Job[SweepArgs]) error {
	expired, failed, err := w.Store.SweepCommands(ctx)
	if err != nil {
		return err
	}
	if expired+failed > 0 {
		w.Logger.InfoContext(ctx, "swept commands", "expired", expired, "failed", failed)
	}
	return nil
}

// PruneWorker deletes history past its retention.
type PruneWorker struct {
	river.WorkerDefaults[PruneArgs]
	Logger    *slog.Logger
	Store     *store.Store
	Retention store.Retention
}

// Work runs one prune.
func (w *PruneWorker) Work(ctx context.Context, _ *river.Job[PruneArgs]) error {
	p, err := w.Store.Prune(ctx, time.Now(), w.Retention)
	if err != nil {
		return err
	}
	minutes, hours, err := w.Store.PruneUsage(ctx, time.Now())
	if err != nil {
		return err
	}
	alerts, err := w.Store.PruneAlerts(ctx, time.Now().Add(-KeepAlerts))
	if err != nil {
		return err
	}
	w.Logger.InfoContext(ctx, "pruned history", "heartbeats", p.Heartbeats, "received_events", p.ReceivedEvents,
		"finished_commands", p.FinishedCommands, "instance_events", p.InstanceEvents, "oauth_tokens", p.OAuthTokens,
		"oauth_clients", p.OAuthClients, "invitations", p.Invitations, "usage_minutes", minutes, "usage_hours", hours, "alerts", alerts)
	return nil
}

// UsageRollupArgs schedules a usage rollup.
type UsageRollupArgs struct{}

// Kind names the job for River.
func (UsageRollupArgs) Kind() string { return "roll_up_usage" }

// usageRollupBatch is how many team-hours one transaction of a rollup recomputes.
const usageRollupBatch = 500

// UsageRollupWorker recomputes the hourly usage rollups of the hours whose minutes changed.
type UsageRollupWorker struct {
	river.WorkerDefaults[UsageRollupArgs]
	Logger *slog.Logger
	Store  *store.Store
}

// Work rolls up every changed hour, a batch per transaction.
func (w *UsageRollupWorker) Work(ctx context.Context, _ *river.Job[UsageRollupArgs]) error {
	total := 0
	for {
		n, err := w.Store.RollUpUsage(ctx, usageRollupBatch)
		if err != nil {
			return err
		}
		total += n
		if n < usageRollupBatch {
			break
		}
	}
	if total > 0 {
		w.Logger.DebugContext(ctx, "rolled up usage", "team_hours", total)
	}
	return nil
}

// RateLimitsArgs schedules a cleanup of refilled rate-limit buckets.
type RateLimitsArgs struct{}

// Kind names the job for River.
func (RateLimitsArgs) Kind() string { return "prune_rate_limits" }

// RateLimitsWorker drops the rate-limit buckets that have refilled, so the table holds only the addresses
// seen in the last minutes, however many a flood of them brought.
type RateLimitsWorker struct {
	river.WorkerDefaults[RateLimitsArgs]
	Store *store.Store
}

// Work runs one cleanup.
func (w *RateLimitsWorker) Work(ctx context.Context, _ *river.Job[RateLimitsArgs]) error {
	_, err := w.Store.PruneRateLimits(ctx)
	return err
}

// TrimLogsArgs schedules a log trim.
type TrimLogsArgs struct{}

// Kind names the job for River.
func (TrimLogsArgs) Kind() string { return "trim_logs" }

// TrimLogsWorker keeps the newest KeepLogs server-log lines and request logs of every installation. Storing
// events trims as it goes; this catches what a failed trim or a lowered limit left behind.
type TrimLogsWorker struct {
	river.WorkerDefaults[TrimLogsArgs]
	Logger *slog.Logger
	Store  *store.Store
}

// Work runs one trim.
func (w *TrimLogsWorker) Work(ctx context.Context, _ *river.Job[TrimLogsArgs]) error {
	serverLogs, requestLogs, err := w.Store.TrimLogs(ctx, KeepLogs)
	if err != nil {
		return err
	}
	if serverLogs+requestLogs > 0 {
		w.Logger.InfoContext(ctx, "trimmed logs", "server_logs", serverLogs, "request_logs", requestLogs)
	}
	return nil
}

// TemplateHealthArgs schedules a template health aggregation.
type TemplateHealthArgs struct{}

// Kind names the job for River.
func (TemplateHealthArgs) Kind() string { return "aggregate_template_health" }

// TemplateHealthWorker summarises, per catalog template, how its instances are doing.
type TemplateHealthWorker struct {
	river.WorkerDefaults[TemplateHealthArgs]
	Store *store.Store
}

// Work runs one aggregation.
func (w *TemplateHealthWorker) Work(ctx context.Context, _ *river.Job[TemplateHealthArgs]) error {
	_, err := w.Store.AggregateTemplateHealth(ctx)
	return err
}

// CredentialChecksArgs schedules credential checks.
type CredentialChecksArgs struct{}

// Kind names the job for River.
func (CredentialChecksArgs) Kind() string { return "queue_credential_checks" }

// CredentialChecksWorker queues health_check commands so each remote installation's credentials are
// validated every CredentialCheckEvery; running each minute spreads the checks out. The satellites' results
// stamp each checked instance's last_health_check_at (see store.RecordCredentialChecks).
type CredentialChecksWorker struct {
	river.WorkerDefaults[CredentialChecksArgs]
	Logger *slog.Logger
	Store  *store.Store
}

// Work queues the checks that are due.
func (w *CredentialChecksWorker) Work(ctx context.Context, _ *river.Job[CredentialChecksArgs]) error {
	n, err := w.Store.EnqueueCredentialChecks(ctx, CredentialCheckEvery)
	if err != nil {
		return err
	}
	if n > 0 {
		w.Logger.InfoContext(ctx, "queued credential checks", "installations", n)
	}
	return nil
}

// OfflineArgs schedules offline detection.
type OfflineArgs struct{}

// Kind names the job for River.
func (OfflineArgs) Kind() string { return "detect_offline_satellites" }

// OfflineWorker notices satellites that stopped sending heartbeats, logs and audits each outage once, and
// raises an alert for each outage and for each return. Who is offline is always derived from the last
// heartbeat, so every replica agrees without this job; the job is what makes an outage an event someone
// sees.
type OfflineWorker struct {
	river.WorkerDefaults[OfflineArgs]
	Logger *slog.Logger
	Store  *store.Store
	// Alerts raises satellite.offline and satellite.online; nil raises none.
	Alerts *alert.Alerter
	// After is how long a silent satellite still counts as online.
	After time.Duration
}

// Work notices new outages.
func (w *OfflineWorker) Work(ctx context.Context, _ *river.Job[OfflineArgs]) error {
	sats, err := w.Store.MarkSatellitesOffline(ctx, w.After)
	if err != nil {
		return err
	}
	for _, sat := range sats {
		w.Logger.WarnContext(ctx, "satellite went offline", "satellite_id", sat.ID, "satellite_name", sat.Name,
			"silent_for_more_than", w.After)
		if err := w.Store.Audit(ctx, store.AuditEvent{Actor: "system", TeamID: sat.TeamID, Action: "satellite.offline",
			Target: sat.ID.String(), Details: map[string]string{"name": sat.Name}}); err != nil {
			return err
		}
	}
	if w.Alerts == nil {
		return nil
	}
	if err := w.Alerts.SatellitesOffline(ctx, sats, w.After); err != nil {
		return err
	}
	back, err := w.Store.SatellitesBack(ctx)
	if err != nil {
		return err
	}
	for _, sat := range back {
		w.Logger.InfoContext(ctx, "satellite is back", "satellite_id", sat.ID, "satellite_name", sat.Name)
	}
	return w.Alerts.SatellitesOnline(ctx, back)
}

// NewClient returns a River client that schedules and works the periodic jobs, those of other packages
// (more) among them, refreshes members' tokens at remote servers through remote, and delivers alerts
// through alerts (bound to the client here). Start it with Start. offlineAfter is how long a silent
// satellite still counts as online.
func NewClient(logger *slog.Logger, pool *pgxpool.Pool, st *store.Store, offlineAfter time.Duration, remote RemoteRefresher,
	alerts *alert.Alerter, more ...Periodic) (*river.Client[pgx.Tx], error) {
	workers := river.NewWorkers()
	var extra []*river.PeriodicJob
	for _, register := range more {
		extra = append(extra, register(workers))
	}
	river.AddWorker(workers, &SweepWorker{Logger: logger, Store: st})
	river.AddWorker(workers, &PruneWorker{Logger: logger, Store: st, Retention: DefaultRetention})
	river.AddWorker(workers, &TrimLogsWorker{Logger: logger, Store: st})
	river.AddWorker(workers, &RateLimitsWorker{Store: st})
	river.AddWorker(workers, &TemplateHealthWorker{Store: st})
	river.AddWorker(workers, &CredentialChecksWorker{Logger: logger, Store: st})
	river.AddWorker(workers, &OfflineWorker{Logger: logger, Store: st, Alerts: alerts, After: offlineAfter})
	alerts.AddWorkers(workers)
	river.AddWorker(workers, &UsageRollupWorker{Logger: logger, Store: st})
	river.AddWorker(workers, &RemoteTokensWorker{Logger: logger, Remote: remote})
	river.AddWorker(workers, &RolloutWorker{Logger: logger, Store: st})
	every := func(period time.Duration, args river.JobArgs) *river.PeriodicJob {
		return river.NewPeriodicJob(river.PeriodicInterval(period),
			func() (river.JobArgs, *river.InsertOpts) { return args, nil }, &river.PeriodicJobOpts{RunOnStart: true})
	}
	client, err := river.NewClient(riverpgxv5.New(pool), &river.Config{
		Logger: slog.New(atLeast{Handler: logger.Handler(), min: slog.LevelWarn}),
		// Deliveries wait on receivers, so they have their own workers: a slow receiver never delays the
		// periodic jobs.
		Queues:  map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: 2}, alert.Queue: {MaxWorkers: 4}},
		Workers: workers,
		PeriodicJobs: append([]*river.PeriodicJob{
			every(SweepPeriod, SweepArgs{}),
			every(PrunePeriod, PruneArgs{}),
			every(TrimLogsPeriod, TrimLogsArgs{}),
			every(RateLimitsPeriod, RateLimitsArgs{}),
			every(TemplateHealthPeriod, TemplateHealthArgs{}),
			every(CredentialPeriod, CredentialChecksArgs{}),
			every(OfflinePeriod, OfflineArgs{}),
			every(UsageRollupPeriod, UsageRollupArgs{}),
			every(RemoteTokensPeriod, RemoteTokensArgs{}),
			every(RolloutPeriod, RolloutArgs{}),
			every(alert.EvaluatePeriod, alert.EvaluateArgs{}),
		}, extra...),
	})
	if err != nil {
		return nil, fmt.Errorf("create job client: %w", err)
	}
	alerts.Bind(client)
	return client, nil
}

// Periodic is periodic work of another package: it registers its worker on workers and returns its
// schedule.
type Periodic func(workers *river.Workers) *river.PeriodicJob

// Migrate brings River's own tables up to date. Callers serialise it across replicas.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	m, err := rivermigrate.New(riverpgxv5.New(pool), nil)
	if err != nil {
		return fmt.Errorf("create job migrator: %w", err)
	}
	if _, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fmt.Errorf("migrate job tables: %w", err)
	}
	return nil
}

// atLeast passes on only records at min or above. River reports its routine work at INFO every 30 s, which
// would drown the control plane's own log; its warnings and errors still come through.
type atLeast struct {
	slog.Handler
	min slog.Level
}

func (h atLeast) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h atLeast) WithAttrs(attrs []slog.Attr) slog.Handler {
	return atLeast{Handler: h.Handler.WithAttrs(attrs), min: h.min}
}

func (h atLeast) WithGroup(name string) slog.Handler {
	return atLeast{Handler: h.Handler.WithGroup(name), min: h.min}
}

// RolloutPeriod is how often rolling updates move on: a batch's satellites heartbeat on the new version
// seconds after their restart, so the next batch follows within this.
const RolloutPeriod = 5 * time.Second

// RolloutArgs advances rolling updates.
type RolloutArgs struct{}

// Kind is the job's kind.
func (RolloutArgs) Kind() string { return "advance_rollouts" }

// RolloutWorker advances rolling updates (store.AdvanceRollouts).
type RolloutWorker struct {
	river.WorkerDefaults[RolloutArgs]
	Logger *slog.Logger
	Store  *store.Store
}

// Work moves every running rollout on.
func (w *RolloutWorker) Work(ctx context.Context, _ *river.Job[RolloutArgs]) error {
	moved, err := w.Store.AdvanceRollouts(ctx)
	if err != nil {
		return err
	}
	for _, ro := range moved {
		w.Logger.InfoContext(ctx, "rollout moved on", "rollout_id", ro.ID, "version", ro.Version, "state", ro.State, "error", ro.Error)
		if ro.State != store.RolloutRunning {
			if err := w.Store.Audit(ctx, store.AuditEvent{Actor: "system", TeamID: ro.TeamID, Action: "rollout." + ro.State,
				Target: ro.ID.String(), Details: map[string]string{"version": ro.Version, "error": ro.Error}}); err != nil {
				return err
			}
		}
	}
	return nil
}
