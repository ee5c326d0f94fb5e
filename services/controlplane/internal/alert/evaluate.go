package alert

import (
	"context"
	"errors"
	"time"

	"github.com/riverqueue/river"

	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// EvaluatePeriod is how often rate alerts are evaluated.
const EvaluatePeriod = time.Minute

// rateWindow is the trailing window the rate thresholds count over.
const rateWindow = time.Hour

// EvaluateArgs schedules an evaluation of the rate alerts.
type EvaluateArgs struct{}

// Kind names the job for River.
func (EvaluateArgs) Kind() string { return "evaluate_alerts" }

// EvaluateWorker raises usage.threshold and policy.denials for each webhook whose threshold a team's count
// over the trailing hour reached, at most once per webhook, team and clock hour, and requeues stranded
// deliveries.
type EvaluateWorker struct {
	river.WorkerDefaults[EvaluateArgs]
	alerter *Alerter
}

// Work evaluates both rates.
func (w *EvaluateWorker) Work(ctx context.Context, _ *river.Job[EvaluateArgs]) error {
	return w.alerter.Evaluate(ctx)
}

// strandedAfter is how long a delivery may wait for its first attempt before it is queued again.
const strandedAfter = 5 * time.Minute

// Evaluate raises the rate alerts that are due now, and queues again the deliveries whose jobs were lost
// between storing an alert and queuing them.
func (a *Alerter) Evaluate(ctx context.Context) error {
	now := a.cfg.Now()
	stranded, err := a.store.StrandedDeliveries(ctx, now.Add(-strandedAfter))
	if err != nil {
		return err
	}
	if err := a.enqueue(ctx, stranded); err != nil {
		return err
	}
	since := now.Add(-rateWindow)
	usage, err := a.store.UsageOverThreshold(ctx, since)
	if err != nil {
		return err
	}
	denials, err := a.store.DenialsOverThreshold(ctx, since)
	if err != nil {
		return err
	}
	var events []Event
	add := func(kind, measure string, over []store.RateOverThreshold) {
		for _, o := range over {
			events = append(events, Event{
				Kind: kind, TeamID: &o.TeamID, WebhookID: &o.WebhookID,
				Key:  o.WebhookID.String() + ":" + o.TeamID.String() + ":" + now.UTC().Truncate(time.Hour).Format(time.RFC3339),
				Data: map[string]any{measure: o.Count, "threshold": o.Threshold, "window_seconds": rateWindow.Seconds(), "since": since.UTC()},
			})
		}
	}
	add(KindUsageThreshold, "calls", usage)
	add(KindPolicyDenials, "denials", denials)
	_, err = a.Raise(ctx, events...)
	if errors.Is(err, store.ErrNotFound) {
		return nil // a webhook deleted meanwhile
	}
	return err
}
