package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/orrery/orrery/services/controlplane/internal/store/internal/dbsqlc"
)

// Webhooks, alerts and their deliveries. Every read and write of a webhook names its scope: a team, or nil for
// the global webhooks. A webhook of another scope is ErrNotFound, the same as one that does not exist.

// Delivery states.
const (
	DeliveryPending   = "pending"
	DeliveryDelivered = "delivered"
	DeliveryFailed    = "failed"
)

// Webhook is an endpoint that hears alerts.
type Webhook struct {
	ID uuid.UUID
	// TeamID is nil for a global webhook, which hears every team's alerts.
	TeamID     *uuid.UUID
	Name       string
	URL        string
	EventKinds []string
	// UsageCallsPerHour and PolicyDenialsPerHour are the thresholds of the rate alerts; 0 never raises them.
	UsageCallsPerHour    int64
	PolicyDenialsPerHour int64
	CreatedAt            time.Time
}

// NewWebhook is a webhook to create, with its signing secret in the clear; the store seals it.
type NewWebhook struct {
	Webhook
	Secret    string
	CreatedBy *uuid.UUID
}

func webhookFromRow(r dbsqlc.Webhook) Webhook {
	return Webhook{
		ID: r.ID, TeamID: r.TeamID, Name: r.Name, URL: r.Url, EventKinds: r.EventKinds,
		UsageCallsPerHour: r.UsageCallsPerHour, PolicyDenialsPerHour: r.PolicyDenialsPerHour, CreatedAt: r.CreatedAt,
	}
}

// CreateWebhook adds a webhook to its scope; a scope that has max webhooks already is ErrLimit.
func (s *Store) CreateWebhook(ctx context.Context, w NewWebhook, max int) (Webhook, error) {
	sealed, err := s.keyring.Seal(w.Secret)
	if err != nil {
		return Webhook{}, fmt.Errorf("seal webhook secret: %w", err)
	}
	row, err := s.q.CreateWebhook(ctx, dbsqlc.CreateWebhookParams{
		TeamID: w.TeamID, Name: w.Name, Url: w.URL, EventKinds: w.EventKinds, SecretSealed: sealed,
		UsageCallsPerHour: w.UsageCallsPerHour, PolicyDenialsPerHour: w.PolicyDenialsPerHour, CreatedBy: w.CreatedBy,
		MaxPerScope: int64(max),
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return Webhook{}, fmt.Errorf("create webhook: at most %d per team: %w", max, ErrLimit)
	}
	if err != nil {
		return Webhook{}, translate(err, "create webhook")
	}
	return webhookFromRow(row), nil
}

// ListWebhooks lists the webhooks of a scope, oldest first.
func (s *Store) ListWebhooks(ctx context.Context, teamID *uuid.UUID) ([]Webhook, error) {
	rows, err := s.q.ListWebhooks(ctx, teamID)
	if err != nil {
		return nil, translate(err, "list webhooks")
	}
	out := make([]Webhook, len(rows))
	for i, r := range rows {
		out[i] = webhookFromRow(r)
	}
	return out, nil
}

// GetWebhook returns a webhook of a scope.
func (s *Store) GetWebhook(ctx context.Context, id uuid.UUID, teamID *uuid.UUID) (Webhook, error) {
	row, err := s.q.GetWebhook(ctx, id, teamID)
	if err != nil {
		return Webhook{}, translate(err, "webhook")
	}
	return webhookFromRow(row), nil
}

// DeleteWebhook removes a webhook of a scope with its deliveries.
func (s *Store) DeleteWebhook(ctx context.Context, id uuid.UUID, teamID *uuid.UUID) error {
	n, err := s.q.DeleteWebhook(ctx, id, teamID)
	if err != nil {
		return translate(err, "delete webhook")
	}
	if n == 0 {
		return fmt.Errorf("webhook: %w", ErrNotFound)
	}
	return nil
}

// Alert is something the control plane tells webhooks about.
type Alert struct {
	ID uuid.UUID
	// TeamID is the team the alert concerns; nil for a global satellite, heard only by global webhooks.
	TeamID *uuid.UUID
	Kind   string
	// DedupeKey names the alert so that raising it again (a retried report, a second replica) does nothing.
	DedupeKey string
	// Body is the JSON sent and signed.
	Body []byte
	// WebhookID, when set, sends the alert to this webhook alone: a test event, or a rate alert raised
	// against one webhook's threshold.
	WebhookID *uuid.UUID
}

// RecordAlert stores an alert and a pending delivery to each webhook that hears it, in one transaction, and
// returns the deliveries' ids; none when the alert was recorded before.
func (s *Store) RecordAlert(ctx context.Context, a Alert) ([]uuid.UUID, error) {
	var deliveries []uuid.UUID
	err := s.inTx(ctx, func(q *dbsqlc.Queries) error {
		_, err := q.InsertAlert(ctx, dbsqlc.InsertAlertParams{
			ID: a.ID, TeamID: a.TeamID, Kind: a.Kind, DedupeKey: a.DedupeKey, Body: string(a.Body),
		})
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return translate(err, "insert alert")
		}
		if a.WebhookID == nil {
			deliveries, err = q.InsertDeliveriesForAlert(ctx, a.ID, a.Kind, a.TeamID)
			return translate(err, "insert deliveries")
		}
		id, err := q.InsertDelivery(ctx, a.ID, *a.WebhookID, a.TeamID)
		if err != nil {
			return translate(err, "insert delivery")
		}
		deliveries = []uuid.UUID{id}
		return nil
	})
	return deliveries, err
}

// DeliveryToSend is what an attempt to deliver needs.
type DeliveryToSend struct {
	ID, WebhookID, AlertID uuid.UUID
	Kind                   string
	State                  string
	Attempts               int
	URL                    string
	// Secret is the webhook's signing secret, opened.
	Secret string
	Body   []byte
}

// DeliveryToSend returns a delivery with its webhook and alert; ErrNotFound once the webhook is deleted.
func (s *Store) DeliveryToSend(ctx context.Context, id uuid.UUID) (DeliveryToSend, error) {
	r, err := s.q.GetDeliveryToSend(ctx, id)
	if err != nil {
		return DeliveryToSend{}, translate(err, "delivery")
	}
	secret, err := s.keyring.Open(r.SecretSealed)
	if err != nil {
		return DeliveryToSend{}, fmt.Errorf("open webhook secret: %w", err)
	}
	return DeliveryToSend{
		ID: r.ID, WebhookID: r.WebhookID, AlertID: r.AlertID, Kind: r.Kind, State: r.State, Attempts: int(r.Attempts),
		URL: r.Url, Secret: secret, Body: []byte(r.Body),
	}, nil
}

// DeliveryAttempt is one try at delivering.
type DeliveryAttempt struct {
	Attempt int
	// StatusCode is the receiver's HTTP status; 0 when no response arrived.
	StatusCode int
	Latency    time.Duration
	// Error says why the attempt failed, without the URL or anything secret; empty on success.
	Error       string
	AttemptedAt time.Time
}

// RecordDeliveryAttempt logs an attempt and sets the delivery's state. Recording the same attempt again
// (a job retried after a crash) replaces it.
func (s *Store) RecordDeliveryAttempt(ctx context.Context, deliveryID uuid.UUID, a DeliveryAttempt, state string) error {
	return translate(s.q.RecordDeliveryAttempt(ctx, dbsqlc.RecordDeliveryAttemptParams{
		DeliveryID: deliveryID, Attempt: int32(a.Attempt), StatusCode: int32(a.StatusCode),
		LatencyMs: float64(a.Latency) / float64(time.Millisecond), Error: a.Error, State: state,
	}), "record delivery attempt")
}

// Delivery is an alert's delivery to one webhook, with its attempts.
type Delivery struct {
	ID, WebhookID, AlertID uuid.UUID
	Kind, State            string
	Attempts               []DeliveryAttempt
	CreatedAt              time.Time
	FinishedAt             *time.Time
}

// ListDeliveries pages a webhook's deliveries, newest first, before cursor (from the newest when nil).
// A webhook outside the scope is ErrNotFound.
func (s *Store) ListDeliveries(ctx context.Context, webhookID uuid.UUID, teamID *uuid.UUID, cursor *Cursor, limit int) ([]Delivery, error) {
	if _, err := s.GetWebhook(ctx, webhookID, teamID); err != nil {
		return nil, err
	}
	p := dbsqlc.ListDeliveriesParams{WebhookID: webhookID, TeamID: teamID, MaxRows: int32(limit)}
	if cursor != nil {
		p.BeforeCreatedAt, p.BeforeID = &cursor.CreatedAt, &cursor.ID
	}
	rows, err := s.q.ListDeliveries(ctx, p)
	if err != nil {
		return nil, translate(err, "list deliveries")
	}
	out := make([]Delivery, len(rows))
	ids := make([]uuid.UUID, len(rows))
	index := make(map[uuid.UUID]int, len(rows))
	for i, r := range rows {
		out[i] = Delivery{ID: r.ID, WebhookID: r.WebhookID, AlertID: r.AlertID, Kind: r.Kind, State: r.State,
			CreatedAt: r.CreatedAt, FinishedAt: r.FinishedAt}
		ids[i], index[r.ID] = r.ID, i
	}
	attempts, err := s.q.ListDeliveryAttempts(ctx, ids)
	if err != nil {
		return nil, translate(err, "list delivery attempts")
	}
	for _, a := range attempts {
		d := &out[index[a.DeliveryID]]
		d.Attempts = append(d.Attempts, DeliveryAttempt{
			Attempt: int(a.Attempt), StatusCode: int(a.StatusCode), Error: a.Error, AttemptedAt: a.AttemptedAt,
			Latency: time.Duration(a.LatencyMs * float64(time.Millisecond)),
		})
	}
	return out, nil
}

// SatellitesBack notes the satellites alerted offline that have sent a heartbeat since, and returns them;
// each return is reported once.
func (s *Store) SatellitesBack(ctx context.Context) ([]OfflineSatellite, error) {
	rows, err := s.q.MarkSatellitesBack(ctx)
	if err != nil {
		return nil, translate(err, "mark satellites back")
	}
	out := make([]OfflineSatellite, len(rows))
	for i, r := range rows {
		out[i] = OfflineSatellite{ID: r.ID, Name: r.Name, TeamID: r.TeamID}
	}
	return out, nil
}

// AddPolicyDenials counts n calls a satellite's policies denied in teamID at about time at, for the
// policy_denials alert. Whatever stores the satellites' denial events calls this once per batch and team.
func (s *Store) AddPolicyDenials(ctx context.Context, teamID uuid.UUID, at time.Time, n int64) error {
	return translate(s.q.AddPolicyDenials(ctx, teamID, at, n), "add policy denials")
}

// RateOverThreshold is a team whose count over the trailing window reached a webhook's threshold.
type RateOverThreshold struct {
	WebhookID, TeamID uuid.UUID
	Count, Threshold  int64
}

// UsageOverThreshold returns, per webhook watching usage, each team it hears whose tool calls since since
// reach its threshold.
func (s *Store) UsageOverThreshold(ctx context.Context, since time.Time) ([]RateOverThreshold, error) {
	rows, err := s.q.UsageOverThreshold(ctx, since)
	if err != nil {
		return nil, translate(err, "usage over threshold")
	}
	out := make([]RateOverThreshold, len(rows))
	for i, r := range rows {
		out[i] = RateOverThreshold{WebhookID: r.WebhookID, TeamID: r.TeamID, Count: r.Calls, Threshold: r.Threshold}
	}
	return out, nil
}

// DenialsOverThreshold returns, per webhook watching policy denials, each team it hears whose denials since
// since reach its threshold.
func (s *Store) DenialsOverThreshold(ctx context.Context, since time.Time) ([]RateOverThreshold, error) {
	rows, err := s.q.DenialsOverThreshold(ctx, since)
	if err != nil {
		return nil, translate(err, "denials over threshold")
	}
	out := make([]RateOverThreshold, len(rows))
	for i, r := range rows {
		out[i] = RateOverThreshold{WebhookID: r.WebhookID, TeamID: r.TeamID, Count: r.Denials, Threshold: r.Threshold}
	}
	return out, nil
}

// PruneAlerts deletes alerts raised before before, with their deliveries, and denial counts as old.
func (s *Store) PruneAlerts(ctx context.Context, before time.Time) (int64, error) {
	n, err := s.q.PruneAlerts(ctx, before)
	if err != nil {
		return 0, translate(err, "prune alerts")
	}
	_, err = s.q.PrunePolicyDenials(ctx, before)
	return n, translate(err, "prune policy denials")
}

// AccessRow is what one member of a team can reach through one installation.
type AccessRow struct {
	UserID           uuid.UUID
	Email            string
	UserName         string
	Role             string
	InstallationID   uuid.UUID
	InstallationName string
	// Scopes are the OAuth scopes the member granted clients for the team.
	Scopes []string
	// LastUsed is the start of the last minute (within the per-minute rollups' 30 days, else hour) in which
	// the member called a tool of the installation; nil if never within the rollups' year.
	LastUsed *time.Time
	// Calls counts the member's calls of the installation since the review's start, from the hourly rollups.
	Calls int64
}

// AccessReview lists, for every member of teamID and every installation of the team, what the member can
// reach and when they last used it, by email and installation name; calls are counted from since.
func (s *Store) AccessReview(ctx context.Context, teamID uuid.UUID, since time.Time) ([]AccessRow, error) {
	rows, err := s.q.AccessReview(ctx, teamID, since)
	if err != nil {
		return nil, translate(err, "access review")
	}
	out := make([]AccessRow, len(rows))
	for i, r := range rows {
		out[i] = AccessRow{
			UserID: r.UserID, Email: r.Email, UserName: r.UserName, Role: r.Role, InstallationID: r.InstallationID,
			InstallationName: r.InstallationName, Scopes: r.Scopes, Calls: r.Calls,
		}
		if r.LastUsed.Unix() != 0 {
			t := r.LastUsed
			out[i].LastUsed = &t
		}
	}
	return out, nil
}

// InstanceOwner is the team and installation an instance belongs to.
type InstanceOwner struct {
	TeamID, InstallationID uuid.UUID
}

// ServedInstances returns the owners of the instances among ids that exist and belong to a team sat
// serves, so that what a satellite claims about an instance is believed only for its own teams.
func (s *Store) ServedInstances(ctx context.Context, sat Satellite, ids []string) (map[string]InstanceOwner, error) {
	rows, err := s.q.ListInstanceOwners(ctx, ids)
	if err != nil {
		return nil, translate(err, "list instance owners")
	}
	out := make(map[string]InstanceOwner, len(rows))
	for _, r := range rows {
		if sat.Serves(r.TeamID) {
			out[r.ID] = InstanceOwner{TeamID: r.TeamID, InstallationID: r.InstallationID}
		}
	}
	return out, nil
}

// StrandedDeliveries lists up to 500 deliveries queued before before and never attempted.
func (s *Store) StrandedDeliveries(ctx context.Context, before time.Time) ([]uuid.UUID, error) {
	ids, err := s.q.StrandedDeliveries(ctx, before)
	return ids, translate(err, "list stranded deliveries")
}
