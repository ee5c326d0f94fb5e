package store

import (
	"context"
	"time"
)

// SweepCommands expires and fails commands of every satellite, not only of those that poll, so stored states
// stay true for satellites that went away.
func (s *Store) SweepCommands(ctx context.Context) (expired, failed int64, err error) {
	if expired, err = s.q.ExpireAllCommands(ctx); err != nil {
		return 0, 0, translate(err, "expire commands")
	}
	if failed, err = s.q.FailAllExhaustedCommands(ctx); err != nil {
		return expired, 0, translate(err, "fail exhausted commands")
	}
	return expired, failed, nil
}

// Retention says how long history is kept.
type Retention struct {
	// Heartbeats is the heartbeat history; the satellite row keeps the latest values regardless.
	Heartbeats time.Duration
	// ReceivedEvents is how long event ids are remembered to drop retried batches; it must outlast any
	// satellite's retries.
	ReceivedEvents time.Duration
	// FinishedCommands is how long completed, failed and expired commands stay listed.
	FinishedCommands time.Duration
	// InstanceEvents is how long status changes and lifecycle events are kept.
	InstanceEvents time.Duration
}

// Pruned counts the rows a Prune removed.
type Pruned struct {
	Heartbeats, ReceivedEvents, FinishedCommands, InstanceEvents int64
}

// Prune deletes history older than r allows at now.
func (s *Store) Prune(ctx context.Context, now time.Time, r Retention) (Pruned, error) {
	var p Pruned
	var err error
	if p.Heartbeats, err = s.q.PruneHeartbeats(ctx, now.Add(-r.Heartbeats)); err != nil {
		return p, translate(err, "prune heartbeats")
	}
	if p.ReceivedEvents, err = s.q.PruneReceivedEvents(ctx, now.Add(-r.ReceivedEvents)); err != nil {
		return p, translate(err, "prune received events")
	}
	before := now.Add(-r.FinishedCommands)
	if p.FinishedCommands, err = s.q.PruneFinishedCommands(ctx, &before); err != nil {
		return p, translate(err, "prune finished commands")
	}
	if p.InstanceEvents, err = s.q.PruneInstanceEvents(ctx, now.Add(-r.InstanceEvents)); err != nil {
		return p, translate(err, "prune instance events")
	}
	return p, nil
}
