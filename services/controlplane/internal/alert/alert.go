// Package alert raises alerts about a team's satellites, instances, credentials, policies and usage, and
// delivers them to the webhooks that hear them: a team's own (set by its admins) and the global ones (set by
// global admins, hearing every team).
//
// An alert is stored once (a dedupe key makes raising it twice a no-op) with a pending delivery per webhook
// in one transaction; a River job per delivery then POSTs the alert's JSON, retrying with exponential
// backoff, and logs every attempt (status, latency, error) for the API to show.
//
// # What a receiver gets
//
//	POST <webhook url>
//	Content-Type: application/json
//	Orrery-Event-Id: <alert id, the same on every retry>
//	Orrery-Event-Type: satellite.offline
//	Orrery-Delivery-Id: <delivery id>
//	Orrery-Signature: t=1764979200,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd
//
//	{"id":"…","type":"satellite.offline","created_at":"2026-12-06T00:00:00Z","team_id":"…","data":{…}}
//
// The signature is the hex HMAC-SHA256, keyed with the webhook's secret (the whole whsec_… string shown
// once at creation), of the timestamp t, a dot, and the raw body. A receiver recomputes it over the bytes it
// read, compares in constant time, and refuses a t more than five minutes from its clock, so a captured
// request cannot be replayed later (Verify does exactly this). Any 2xx answer is success; anything else, a
// redirect included, is retried.
//
// # Egress
//
// Webhook URLs are tenants' input, so the control plane connects only to public addresses: the address is
// checked when it is dialed, after DNS resolution (egress.Policy.Control), so a name that resolves to
// 127.0.0.1 or 169.254.169.254 at delivery time is refused as the address itself would be. Operators who
// run receivers on a private network allow it with Config.AllowPrivate.
package alert

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// Alert kinds.
const (
	KindSatelliteOffline = "satellite.offline"
	KindSatelliteOnline  = "satellite.online"
	KindInstanceFailed   = "instance.permanently_failed"
	KindCredentialFailed = "credential_check.failed"
	KindPolicyDenials    = "policy.denials"
	KindUsageThreshold   = "usage.threshold"
	// KindTest is sent by SendTest, to the one webhook named.
	KindTest = "test"
)

// Kinds are the kinds a webhook may subscribe to.
var Kinds = []string{
	KindSatelliteOffline, KindSatelliteOnline, KindInstanceFailed, KindCredentialFailed, KindPolicyDenials,
	KindUsageThreshold,
}

// Config configures an Alerter. Zero fields take the defaults named on each.
type Config struct {
	// AllowPrivate lets webhooks reach loopback, private, link-local and other non-public addresses. Default
	// false: only public addresses.
	AllowPrivate bool
	// Timeout bounds one delivery attempt, connecting and reading the answer included. Default 10 s.
	Timeout time.Duration
	// RetryBase is the wait before the second attempt; each later wait doubles, up to an hour. Default 10 s.
	RetryBase time.Duration
	// MaxAttempts is how many times a delivery is tried. Default 8 (about 40 minutes of retries).
	MaxAttempts int
	// MaxResponseBytes is how much of a receiver's answer is read (and thrown away). Default 64 KiB.
	MaxResponseBytes int64
	// Now tells the time. Default time.Now.
	Now func() time.Time
}

// WithDefaults returns c with zero fields set to their defaults.
func (c Config) WithDefaults() Config {
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
	if c.RetryBase <= 0 {
		c.RetryBase = 10 * time.Second
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 8
	}
	if c.MaxResponseBytes <= 0 {
		c.MaxResponseBytes = 64 << 10
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Queue is the River queue deliveries run in, apart from the periodic jobs so a slow receiver never
// delays them.
const Queue = "webhooks"

// Alerter raises alerts and delivers them.
type Alerter struct {
	logger *slog.Logger
	store  *store.Store
	cfg    Config
	jobs   atomic.Pointer[river.Client[pgx.Tx]]
}

// New returns an Alerter. Register its workers with AddWorkers, then Bind the River client that runs them.
func New(logger *slog.Logger, st *store.Store, cfg Config) *Alerter {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Alerter{logger: logger, store: st, cfg: cfg.WithDefaults()}
}

// AddWorkers registers the delivery and rate-evaluation workers.
func (a *Alerter) AddWorkers(workers *river.Workers) {
	river.AddWorker(workers, &DeliverWorker{alerter: a, client: newHTTPClient(a.cfg)})
	river.AddWorker(workers, &EvaluateWorker{alerter: a})
}

// Bind gives the Alerter the River client that queues deliveries.
func (a *Alerter) Bind(jobs *river.Client[pgx.Tx]) { a.jobs.Store(jobs) }

// Event is an alert to raise.
type Event struct {
	Kind string
	// TeamID is the team concerned; nil for a global satellite.
	TeamID *uuid.UUID
	// Key identifies the occurrence: raising the same kind and key again does nothing.
	Key string
	// Data are the alert's facts, sent as the body's "data".
	Data map[string]any
	// WebhookID, when set, sends the alert to this webhook only.
	WebhookID *uuid.UUID
}

// body is the JSON a receiver gets.
type body struct {
	ID        uuid.UUID      `json:"id"`
	Type      string         `json:"type"`
	CreatedAt time.Time      `json:"created_at"`
	TeamID    *uuid.UUID     `json:"team_id,omitempty"`
	Data      map[string]any `json:"data"`
}

// Raise records each event once and queues its deliveries. It returns the deliveries queued.
func (a *Alerter) Raise(ctx context.Context, events ...Event) ([]uuid.UUID, error) {
	var all []uuid.UUID
	var errs []error
	for _, e := range events {
		id := uuid.New()
		raw, err := json.Marshal(body{ID: id, Type: e.Kind, CreatedAt: a.cfg.Now().UTC(), TeamID: e.TeamID, Data: e.Data})
		if err != nil {
			errs = append(errs, fmt.Errorf("encode alert %s: %w", e.Kind, err))
			continue
		}
		deliveries, err := a.store.RecordAlert(ctx, store.Alert{
			ID: id, TeamID: e.TeamID, Kind: e.Kind, DedupeKey: e.Kind + ":" + e.Key, Body: raw, WebhookID: e.WebhookID,
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("record alert %s: %w", e.Kind, err))
			continue
		}
		all = append(all, deliveries...)
	}
	return all, errors.Join(append(errs, a.enqueue(ctx, all))...)
}

// RaiseLogged raises events for callers whose own work must not fail because an alert could not be
// raised, such as a satellite's report: failures are logged.
func (a *Alerter) RaiseLogged(ctx context.Context, events ...Event) {
	if len(events) == 0 {
		return
	}
	if _, err := a.Raise(ctx, events...); err != nil {
		a.logger.ErrorContext(ctx, "raise alerts", "error", err)
	}
}

func (a *Alerter) enqueue(ctx context.Context, deliveries []uuid.UUID) error {
	if len(deliveries) == 0 {
		return nil
	}
	jobs := a.jobs.Load()
	if jobs == nil {
		return errors.New("queue webhook deliveries: no job client bound")
	}
	params := make([]river.InsertManyParams, len(deliveries))
	for i, id := range deliveries {
		// Unique by delivery, so queuing a stranded delivery again never runs it twice.
		params[i] = river.InsertManyParams{Args: DeliverArgs{DeliveryID: id},
			InsertOpts: &river.InsertOpts{Queue: Queue, MaxAttempts: a.cfg.MaxAttempts, UniqueOpts: river.UniqueOpts{ByArgs: true}}}
	}
	if _, err := jobs.InsertMany(ctx, params); err != nil {
		return fmt.Errorf("queue webhook deliveries: %w", err)
	}
	return nil
}

// SendTest sends a test alert to one webhook of a scope and returns its delivery.
func (a *Alerter) SendTest(ctx context.Context, webhookID uuid.UUID, teamID *uuid.UUID, by string) (uuid.UUID, error) {
	w, err := a.store.GetWebhook(ctx, webhookID, teamID)
	if err != nil {
		return uuid.Nil, err
	}
	deliveries, err := a.Raise(ctx, Event{
		Kind: KindTest, TeamID: w.TeamID, Key: uuid.NewString(), WebhookID: &w.ID,
		Data: map[string]any{"webhook_id": w.ID, "requested_by": by, "message": "a test alert from Orrery"},
	})
	if err != nil {
		return uuid.Nil, err
	}
	if len(deliveries) != 1 {
		return uuid.Nil, fmt.Errorf("test alert queued %d deliveries", len(deliveries))
	}
	return deliveries[0], nil
}

// Satellite alerts: offline when the periodic check finds one silent, online when it heard one again.

// SatellitesOffline raises satellite.offline for each satellite.
func (a *Alerter) SatellitesOffline(ctx context.Context, sats []store.OfflineSatellite, silentFor time.Duration) error {
	return a.satellites(ctx, KindSatelliteOffline, sats, map[string]any{"silent_for_seconds": silentFor.Seconds()})
}

// SatellitesOnline raises satellite.online for each satellite.
func (a *Alerter) SatellitesOnline(ctx context.Context, sats []store.OfflineSatellite) error {
	return a.satellites(ctx, KindSatelliteOnline, sats, nil)
}

func (a *Alerter) satellites(ctx context.Context, kind string, sats []store.OfflineSatellite, extra map[string]any) error {
	now := a.cfg.Now()
	events := make([]Event, len(sats))
	for i, s := range sats {
		data := map[string]any{"satellite_id": s.ID, "satellite_name": s.Name}
		for k, v := range extra {
			data[k] = v
		}
		// Each outage is noticed once, so the time of noticing names it.
		events[i] = Event{Kind: kind, TeamID: s.TeamID, Key: s.ID.String() + ":" + now.UTC().Format(time.RFC3339Nano), Data: data}
	}
	_, err := a.Raise(ctx, events...)
	return err
}

// InstancesFailed raises instance.permanently_failed for the permanently_failed lifecycle events among
// events that a satellite reported, believing only those about instances of teams the satellite serves.
func (a *Alerter) InstancesFailed(ctx context.Context, sat store.Satellite, events []store.Event) {
	var failed []store.Event
	var ids []string
	for _, e := range events {
		if e.Lifecycle != nil && e.Lifecycle.Kind == "permanently_failed" {
			failed = append(failed, e)
			ids = append(ids, e.InstanceID)
		}
	}
	if len(failed) == 0 {
		return
	}
	owners, err := a.store.ServedInstances(ctx, sat, ids)
	if err != nil {
		a.logger.ErrorContext(ctx, "raise instance alerts", "error", err)
		return
	}
	var raise []Event
	for _, e := range failed {
		o, ok := owners[e.InstanceID]
		if !ok || o.TeamID != e.TeamID || o.InstallationID != e.InstallationID {
			continue
		}
		raise = append(raise, Event{Kind: KindInstanceFailed, TeamID: &o.TeamID, Key: e.ID.String(), Data: map[string]any{
			"installation_id": o.InstallationID, "instance_id": e.InstanceID, "reason": e.Lifecycle.Reason,
			"occurred_at": e.OccurredAt.UTC(),
		}})
	}
	a.RaiseLogged(ctx, raise...)
}

// CredentialChecksFailed raises credential_check.failed for each instance that a completed credential
// check found failing (offline, erroring or refusing its credentials) when it was not failing that way
// before: one alert when a check starts failing, not one per check while it keeps failing. Only instances
// of the command's team and installation count, whatever else the satellite named.
func (a *Alerter) CredentialChecksFailed(ctx context.Context, sat store.Satellite, cmd store.Command) {
	check := cmd.Action.GetHealthCheck()
	installationID, err := uuid.Parse(check.GetInstallationId())
	if check == nil || err != nil || cmd.TeamID == nil || cmd.State != store.CommandCompleted {
		return
	}
	var failing []string
	statuses := map[string]string{}
	for _, o := range cmd.Outcomes {
		if o.GetSkipped() == "" && slices.Contains(store.UnhealthyRemote, o.GetStatus()) && o.GetPreviousStatus() != o.GetStatus() {
			failing = append(failing, o.GetInstanceId())
			statuses[o.GetInstanceId()] = strings.ToLower(strings.TrimPrefix(o.GetStatus().String(), "INSTANCE_STATUS_"))
		}
	}
	if len(failing) == 0 {
		return
	}
	owners, err := a.store.ServedInstances(ctx, sat, failing)
	if err != nil {
		a.logger.ErrorContext(ctx, "raise credential alerts", "error", err)
		return
	}
	var raise []Event
	for _, id := range failing {
		o, ok := owners[id]
		if !ok || o.TeamID != *cmd.TeamID || o.InstallationID != installationID {
			continue
		}
		raise = append(raise, Event{Kind: KindCredentialFailed, TeamID: &o.TeamID, Key: cmd.ID.String() + ":" + id,
			Data: map[string]any{"installation_id": installationID, "instance_id": id, "status": statuses[id]}})
	}
	a.RaiseLogged(ctx, raise...)
}
