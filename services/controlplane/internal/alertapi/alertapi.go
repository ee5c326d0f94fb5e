// Package alertapi serves orrery.api.v1.AlertService: webhooks, their test events and their delivery logs.
//
// Every request names its scope: a team (its admins, or a global admin) or, without a team, the global
// webhooks (global admins only); the access policy decides that before a method runs. Methods then read and
// write only webhooks of that exact scope, so another team's webhook, or a global one named with a team,
// is NotFound like one that does not exist.
package alertapi

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	"github.com/orrery/orrery/services/controlplane/internal/access"
	"github.com/orrery/orrery/services/controlplane/internal/alert"
	"github.com/orrery/orrery/services/controlplane/internal/page"
	"github.com/orrery/orrery/services/controlplane/internal/ratelimit"
	"github.com/orrery/orrery/services/controlplane/internal/rpcerr"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// MaxWebhooks is how many webhooks a team may have, and how many global ones there may be.
const MaxWebhooks = 20

// Handler implements apiv1connect.AlertServiceHandler.
type Handler struct {
	logger  *slog.Logger
	store   *store.Store
	alerter *alert.Alerter
	// tests bounds each user's test events: each is a delivery with retries on the queue every team's
	// alerts share, to an address the caller chose.
	tests *ratelimit.Limiter
}

// New returns a Handler.
func New(logger *slog.Logger, st *store.Store, alerter *alert.Alerter) *Handler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Handler{logger: logger, store: st, alerter: alerter, tests: ratelimit.New(st, "webhook_test", 10, 20)}
}

// scope is the team a validated request names, or nil for the global webhooks.
func scope(teamID string) *uuid.UUID {
	if teamID == "" {
		return nil
	}
	id, _ := uuid.Parse(teamID)
	return &id
}

func requestID(s string) uuid.UUID {
	id, _ := uuid.Parse(s)
	return id
}

// CreateWebhook adds a webhook with a fresh secret, shown only in this answer.
func (h *Handler) CreateWebhook(ctx context.Context, req *connect.Request[apiv1.CreateWebhookRequest]) (*connect.Response[apiv1.CreateWebhookResponse], error) {
	p, err := access.Require(ctx)
	if err != nil {
		return nil, err
	}
	m := req.Msg
	if err := h.alerter.CheckURL(m.Url); err != nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, err)
	}
	secret := alert.NewSecret()
	w, err := h.store.CreateWebhook(ctx, store.NewWebhook{
		Webhook: store.Webhook{
			TeamID: scope(m.TeamId), Name: m.Name, URL: m.Url, EventKinds: kindNames(m.EventKinds),
			UsageCallsPerHour: int64(m.UsageCallsPerHour), PolicyDenialsPerHour: int64(m.PolicyDenialsPerHour),
		},
		Secret: secret, CreatedBy: &p.User.ID,
	}, MaxWebhooks)
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "create webhook", err)
	}
	h.audit(ctx, p, w.TeamID, "webhook.created", w.ID, map[string]string{"name": w.Name, "kinds": strings.Join(w.EventKinds, " ")})
	return connect.NewResponse(&apiv1.CreateWebhookResponse{Webhook: webhookToProto(w), Secret: secret}), nil
}

// ListWebhooks lists the scope's webhooks.
func (h *Handler) ListWebhooks(ctx context.Context, req *connect.Request[apiv1.ListWebhooksRequest]) (*connect.Response[apiv1.ListWebhooksResponse], error) {
	ws, err := h.store.ListWebhooks(ctx, scope(req.Msg.TeamId))
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "list webhooks", err)
	}
	resp := &apiv1.ListWebhooksResponse{}
	for _, w := range ws {
		resp.Webhooks = append(resp.Webhooks, webhookToProto(w))
	}
	return connect.NewResponse(resp), nil
}

// GetWebhook returns one webhook of the scope.
func (h *Handler) GetWebhook(ctx context.Context, req *connect.Request[apiv1.GetWebhookRequest]) (*connect.Response[apiv1.GetWebhookResponse], error) {
	w, err := h.store.GetWebhook(ctx, requestID(req.Msg.Id), scope(req.Msg.TeamId))
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "webhook "+req.Msg.Id, err)
	}
	return connect.NewResponse(&apiv1.GetWebhookResponse{Webhook: webhookToProto(w)}), nil
}

// DeleteWebhook removes one webhook of the scope.
func (h *Handler) DeleteWebhook(ctx context.Context, req *connect.Request[apiv1.DeleteWebhookRequest]) (*connect.Response[apiv1.DeleteWebhookResponse], error) {
	p, err := access.Require(ctx)
	if err != nil {
		return nil, err
	}
	id, teamID := requestID(req.Msg.Id), scope(req.Msg.TeamId)
	if err := h.store.DeleteWebhook(ctx, id, teamID); err != nil {
		return nil, rpcerr.From(ctx, h.logger, "webhook "+req.Msg.Id, err)
	}
	h.audit(ctx, p, teamID, "webhook.deleted", id, nil)
	return connect.NewResponse(&apiv1.DeleteWebhookResponse{}), nil
}

// SendTestEvent queues a test alert to one webhook of the scope.
func (h *Handler) SendTestEvent(ctx context.Context, req *connect.Request[apiv1.SendTestEventRequest]) (*connect.Response[apiv1.SendTestEventResponse], error) {
	p, err := access.Require(ctx)
	if err != nil {
		return nil, err
	}
	if err := rpcerr.AllowUser(ctx, h.logger, h.tests, p.User.ID, "send test event", "too many test events; try again later"); err != nil {
		return nil, err
	}
	delivery, err := h.alerter.SendTest(ctx, requestID(req.Msg.Id), scope(req.Msg.TeamId), p.User.Email)
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "webhook "+req.Msg.Id, err)
	}
	return connect.NewResponse(&apiv1.SendTestEventResponse{DeliveryId: delivery.String()}), nil
}

// ListWebhookDeliveries pages one webhook's deliveries with their attempts.
func (h *Handler) ListWebhookDeliveries(ctx context.Context, req *connect.Request[apiv1.ListWebhookDeliveriesRequest]) (*connect.Response[apiv1.ListWebhookDeliveriesResponse], error) {
	cursor, err := page.DecodeToken(req.Msg.PageToken)
	if err != nil {
		return nil, err
	}
	size := page.Size(req.Msg.PageSize)
	ds, err := h.store.ListDeliveries(ctx, requestID(req.Msg.Id), scope(req.Msg.TeamId), cursor, size)
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "webhook "+req.Msg.Id, err)
	}
	resp := &apiv1.ListWebhookDeliveriesResponse{
		NextPageToken: page.NextToken(ds, size, func(d store.Delivery) (time.Time, uuid.UUID) { return d.CreatedAt, d.ID }),
	}
	for _, d := range ds {
		resp.Deliveries = append(resp.Deliveries, deliveryToProto(d))
	}
	return connect.NewResponse(resp), nil
}

// audit appends to the audit log; a failure is logged, since the action it records has already happened.
func (h *Handler) audit(ctx context.Context, p *access.Principal, teamID *uuid.UUID, action string, target uuid.UUID, details map[string]string) {
	if err := h.store.Audit(ctx, store.AuditEvent{
		ActorID: &p.User.ID, Actor: p.User.Email, TeamID: teamID, Action: action, Target: target.String(), Details: details,
	}); err != nil {
		h.logger.ErrorContext(ctx, "write audit log", "action", action, "error", err)
	}
}

// kinds maps each subscribable and test kind to its proto value.
var kinds = map[string]apiv1.AlertKind{
	alert.KindSatelliteOffline: apiv1.AlertKind_ALERT_KIND_SATELLITE_OFFLINE,
	alert.KindSatelliteOnline:  apiv1.AlertKind_ALERT_KIND_SATELLITE_ONLINE,
	alert.KindInstanceFailed:   apiv1.AlertKind_ALERT_KIND_INSTANCE_PERMANENTLY_FAILED,
	alert.KindCredentialFailed: apiv1.AlertKind_ALERT_KIND_CREDENTIAL_CHECK_FAILED,
	alert.KindPolicyDenials:    apiv1.AlertKind_ALERT_KIND_POLICY_DENIALS,
	alert.KindUsageThreshold:   apiv1.AlertKind_ALERT_KIND_USAGE_THRESHOLD,
	alert.KindTest:             apiv1.AlertKind_ALERT_KIND_TEST,
}

func kindNames(ks []apiv1.AlertKind) []string {
	out := make([]string, 0, len(ks))
	for _, k := range ks {
		for name, v := range kinds {
			if v == k {
				out = append(out, name)
			}
		}
	}
	return out
}

func webhookToProto(w store.Webhook) *apiv1.Webhook {
	pw := &apiv1.Webhook{
		Id: w.ID.String(), Name: w.Name, Url: w.URL, UsageCallsPerHour: uint64(w.UsageCallsPerHour),
		PolicyDenialsPerHour: uint64(w.PolicyDenialsPerHour), CreatedAt: timestamppb.New(w.CreatedAt),
	}
	if w.TeamID != nil {
		pw.TeamId = w.TeamID.String()
	}
	for _, k := range w.EventKinds {
		pw.EventKinds = append(pw.EventKinds, kinds[k])
	}
	return pw
}

var states = map[string]apiv1.DeliveryState{
	store.DeliveryPending:   apiv1.DeliveryState_DELIVERY_STATE_PENDING,
	store.DeliveryDelivered: apiv1.DeliveryState_DELIVERY_STATE_DELIVERED,
	store.DeliveryFailed:    apiv1.DeliveryState_DELIVERY_STATE_FAILED,
}

func deliveryToProto(d store.Delivery) *apiv1.WebhookDelivery {
	pd := &apiv1.WebhookDelivery{
		Id: d.ID.String(), AlertId: d.AlertID.String(), Kind: kinds[d.Kind], State: states[d.State],
		CreatedAt: timestamppb.New(d.CreatedAt),
	}
	if d.FinishedAt != nil {
		pd.FinishedAt = timestamppb.New(*d.FinishedAt)
	}
	for _, a := range d.Attempts {
		pd.Attempts = append(pd.Attempts, &apiv1.DeliveryAttempt{
			Attempt: uint32(a.Attempt), StatusCode: uint32(a.StatusCode), Error: a.Error,
			LatencyMs: float64(a.Latency) / float64(time.Millisecond), AttemptedAt: timestamppb.New(a.AttemptedAt),
		})
	}
	return pd
}
