// Package placer keeps the stored team placement current: callers recompute it when a heartbeat, a drain or
// a setting may have changed it, and a periodic job does, so that a satellite silent past the grace period loses its
// teams and a new team finds satellites. The computation itself is store.RecomputePlacement over package
// placement; an advisory lock makes it one at a time across control-plane replicas.
package placer

import (
	"context"
	"log/slog"
	"time"

	"github.com/riverqueue/river"

	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// Config configures a Placer. Zero fields take the defaults named on each.
type Config struct {
	// Grace is how long a global satellite may go unheard before its teams move. Default 90 s.
	Grace time.Duration
	// Interval is how often the placement is recomputed without a request. Default 15 s.
	Interval time.Duration
	// Slack is how far above its weighted share a satellite's load may go (placement.Options.Slack).
	Slack float64
}

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.Grace == 0 {
		c.Grace = 90 * time.Second
	}
	if c.Interval == 0 {
		c.Interval = 15 * time.Second
	}
	return c
}

// Placer recomputes the placement when asked (after a heartbeat or an operator's change) and periodically.
type Placer struct {
	logger *slog.Logger
	store  *store.Store
	cfg    Config
}

// New returns a Placer; its periodic job runs in the maintenance client (Periodic).
func New(logger *slog.Logger, st *store.Store, cfg Config) *Placer {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Placer{logger: logger, store: st, cfg: cfg.WithDefaults()}
}

// Grace is the configured grace period.
func (p *Placer) Grace() time.Duration { return p.cfg.Grace }

// Recompute recomputes the placement now.
func (p *Placer) Recompute(ctx context.Context) (store.PlacementResult, error) {
	start := time.Now()
	res, err := p.store.RecomputePlacement(ctx, store.PlacementOptions{Grace: p.cfg.Grace, Slack: p.cfg.Slack})
	if err != nil {
		return res, err
	}
	if res.Moved > 0 || len(res.Drained) > 0 {
		p.logger.InfoContext(ctx, "placement recomputed", "teams", res.Teams, "satellites", res.Satellites,
			"teams_moved", res.Moved, "drained", len(res.Drained), "duration", time.Since(start))
	}
	return res, nil
}

// Args is the periodic recomputation's job.
type Args struct{}

// Kind names the job.
func (Args) Kind() string { return "placement" }

// Worker works Args.
type Worker struct {
	river.WorkerDefaults[Args]
	Placer *Placer
}

// Work recomputes the placement.
func (w *Worker) Work(ctx context.Context, _ *river.Job[Args]) error {
	_, err := w.Placer.Recompute(ctx)
	return err
}

// Periodic registers the worker on workers and returns its schedule (maintenance.Periodic): River runs each
// period's job on one replica.
func (p *Placer) Periodic(workers *river.Workers) *river.PeriodicJob {
	river.AddWorker(workers, &Worker{Placer: p})
	return river.NewPeriodicJob(river.PeriodicInterval(p.cfg.Interval),
		func() (river.JobArgs, *river.InsertOpts) { return Args{}, nil }, &river.PeriodicJobOpts{RunOnStart: true})
}
