// Package maintenance runs the control plane's periodic jobs through River: sweeping commands of satellites
// that stopped polling and pruning history. River elects one leader among the replicas to schedule them, so
// each job runs once per period however many replicas there are.
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

	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// Periods and retention of the jobs.
const (
	SweepPeriod = time.Minute
	PrunePeriod = time.Hour
)

// DefaultRetention keeps a day of heartbeats and event ids, and a month of command and instance history.
var DefaultRetention = store.Retention{
	Heartbeats:       24 * time.Hour,
	ReceivedEvents:   24 * time.Hour,
	FinishedCommands: 30 * 24 * time.Hour,
	InstanceEvents:   30 * 24 * time.Hour,
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
	w.Logger.InfoContext(ctx, "pruned history", "heartbeats", p.Heartbeats, "received_events", p.ReceivedEvents,
		"finished_commands", p.FinishedCommands, "instance_events", p.InstanceEvents)
	return nil
}

// NewClient returns a River client that schedules and works the periodic jobs. Start it with Start.
func NewClient(logger *slog.Logger, pool *pgxpool.Pool, st *store.Store) (*river.Client[pgx.Tx], error) {
	workers := river.NewWorkers()
	river.AddWorker(workers, &SweepWorker{Logger: logger, Store: st})
	river.AddWorker(workers, &PruneWorker{Logger: logger, Store: st, Retention: DefaultRetention})
	client, err := river.NewClient(riverpgxv5.New(pool), &river.Config{
		Logger:  logger,
		Queues:  map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: 2}},
		Workers: workers,
		PeriodicJobs: []*river.PeriodicJob{
			river.NewPeriodicJob(river.PeriodicInterval(SweepPeriod),
				func() (river.JobArgs, *river.InsertOpts) { return SweepArgs{}, nil }, &river.PeriodicJobOpts{RunOnStart: true}),
			river.NewPeriodicJob(river.PeriodicInterval(PrunePeriod),
				func() (river.JobArgs, *river.InsertOpts) { return PruneArgs{}, nil }, &river.PeriodicJobOpts{RunOnStart: true}),
		},
	})
	if err != nil {
		return nil, fmt.Errorf("create job client: %w", err)
	}
	return client, nil
}

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
