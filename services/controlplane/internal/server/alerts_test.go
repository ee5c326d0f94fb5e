package server_test

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	"github.com/orrery/orrery/gen/orrery/api/v1/apiv1connect"
	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/services/controlplane/internal/alert"
)

// receipt is one request a receiver got, with what a receiver would check.
type receipt struct {
	at        time.Time
	header    http.Header
	body      []byte
	signature error // the result of verifying the signature as a receiver does
}

// hookReceiver is a webhook receiver on loopback that answers each request with the next status of its
// script (the last one repeated) and keeps what it got.
type hookReceiver struct {
	url    string
	secret func() string
	mu     sync.Mutex
	got    []receipt
	notify chan struct{}
}

func newReceiver(t *testing.T, statuses ...int) *hookReceiver {
	t.Helper()
	r := &hookReceiver{notify: make(chan struct{}, 16)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(req.Body, 1<<20))
		r.mu.Lock()
		rc := receipt{at: time.Now(), header: req.Header.Clone(), body: body}
		if r.secret != nil {
			rc.signature = alert.Verify(r.secret(), req.Header.Get(alert.SignatureHeader), body, time.Now(), 5*time.Minute)
		}
		r.got = append(r.got, rc)
		status := statuses[min(len(r.got), len(statuses))-1]
		r.mu.Unlock()
		w.WriteHeader(status)
		r.notify <- struct{}{}
	}))
	t.Cleanup(srv.Close)
	r.url = srv.URL + "/hooks/orrery"
	return r
}

func (r *hookReceiver) receipts() []receipt {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]receipt(nil), r.got...)
}

// wait waits for the receiver's nth request.
func (r *hookReceiver) wait(t *testing.T, n int, timeout time.Duration) []receipt {
	t.Helper()
	deadline := time.After(timeout)
	for len(r.receipts()) < n {
		select {
		case <-r.notify:
		case <-deadline:
			t.Fatalf("the receiver got %d requests, want %d", len(r.receipts()), n)
		}
	}
	return r.receipts()
}

func alertClient(b *testBundle, token string) apiv1connect.AlertServiceClient {
	return apiv1connect.NewAlertServiceClient(testClient, b.replicas[0].url, connect.WithInterceptors(withBearer(token)))
}

// createWebhook creates a webhook for teamID ("" for a global one) and returns it with its secret.
func createWebhook(t *testing.T, c apiv1connect.AlertServiceClient, teamID, url string, kinds ...apiv1.AlertKind) (*apiv1.Webhook, string) {
	t.Helper()
	if len(kinds) == 0 {
		kinds = []apiv1.AlertKind{apiv1.AlertKind_ALERT_KIND_SATELLITE_OFFLINE}
	}
	resp, err := c.CreateWebhook(t.Context(), connect.NewRequest(&apiv1.CreateWebhookRequest{
		TeamId: teamID, Name: "pager", Url: url, EventKinds: kinds,
	}))
	if err != nil {
		t.Fatal(err)
	}
	return resp.Msg.Webhook, resp.Msg.Secret
}

// deliveries waits until the webhook's newest delivery is no longer pending and returns the log.
func finishedDeliveries(t *testing.T, c apiv1connect.AlertServiceClient, teamID, webhookID string) []*apiv1.WebhookDelivery {
	t.Helper()
	var ds []*apiv1.WebhookDelivery
	waitFor(t, 30*time.Second, "the delivery to finish", func() bool {
		resp, err := c.ListWebhookDeliveries(t.Context(), connect.NewRequest(&apiv1.ListWebhookDeliveriesRequest{TeamId: teamID, Id: webhookID}))
		if err != nil {
			t.Fatal(err)
		}
		ds = resp.Msg.Deliveries
		return len(ds) > 0 && ds[0].State != apiv1.DeliveryState_DELIVERY_STATE_PENDING
	})
	return ds
}

// TestWebhookDeliveredSigned sends a test event to a receiver on loopback (the operator allows private
// addresses) and checks it as a receiver would: the signature over the raw body, the headers, the body;
// then the delivery log. It reports the latency from the request to send to the receipt.
func TestWebhookDeliveredSigned(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{alerts: alert.Config{AllowPrivate: true}})
	x := seedTenants(t, b)
	rcv := newReceiver(t, http.StatusNoContent)
	c := alertClient(b, x.adminA.token)
	hook, secret := createWebhook(t, c, x.teamA.ID.String(), rcv.url)
	rcv.mu.Lock()
	rcv.secret = func() string { return secret }
	rcv.mu.Unlock()

	start := time.Now()
	sent, err := c.SendTestEvent(t.Context(), connect.NewRequest(&apiv1.SendTestEventRequest{TeamId: x.teamA.ID.String(), Id: hook.Id}))
	if err != nil {
		t.Fatal(err)
	}
	got := rcv.wait(t, 1, 30*time.Second)[0]
	t.Logf("webhook delivery latency, from the request to send to the receiver's receipt: %s", got.at.Sub(start))
	if got.signature != nil {
		t.Fatalf("signature check as a receiver: %v", got.signature)
	}
	if alert.Verify("whsec_not-the-secret", got.header.Get(alert.SignatureHeader), got.body, time.Now(), 5*time.Minute) == nil {
		t.Error("the signature verifies with another secret")
	}
	tampered := append([]byte(nil), got.body...)
	tampered[len(tampered)-2] ^= 1
	if !errors.Is(alert.Verify(secret, got.header.Get(alert.SignatureHeader), tampered, time.Now(), 5*time.Minute), alert.ErrBadSignature) {
		t.Error("the signature verifies over a changed body")
	}
	if !errors.Is(alert.Verify(secret, got.header.Get(alert.SignatureHeader), got.body, time.Now().Add(10*time.Minute), 5*time.Minute), alert.ErrStale) {
		t.Error("a replay ten minutes later is not refused as stale")
	}
	var body struct {
		ID     string         `json:"id"`
		Type   string         `json:"type"`
		TeamID string         `json:"team_id"`
		Data   map[string]any `json:"data"`
	}
	if err := json.Unmarshal(got.body, &body); err != nil {
		t.Fatal(err)
	}
	if body.Type != "test" || body.TeamID != x.teamA.ID.String() || body.Data["webhook_id"] != hook.Id {
		t.Errorf("body = %s", got.body)
	}
	if got.header.Get(alert.EventTypeHeader) != "test" || got.header.Get(alert.EventIDHeader) != body.ID ||
		got.header.Get(alert.DeliveryIDHeader) != sent.Msg.DeliveryId || got.header.Get("Content-Type") != "application/json" {
		t.Errorf("headers = %v", got.header)
	}

	ds := finishedDeliveries(t, c, x.teamA.ID.String(), hook.Id)
	d := ds[0]
	if d.Id != sent.Msg.DeliveryId || d.State != apiv1.DeliveryState_DELIVERY_STATE_DELIVERED || d.Kind != apiv1.AlertKind_ALERT_KIND_TEST ||
		d.AlertId != body.ID || len(d.Attempts) != 1 || d.FinishedAt == nil {
		t.Fatalf("delivery = %v", d)
	}
	if a := d.Attempts[0]; a.Attempt != 1 || a.StatusCode != http.StatusNoContent || a.Error != "" || a.LatencyMs <= 0 {
		t.Errorf("attempt = %v", a)
	}
}

// TestWebhookRetriedAfterFailures has the receiver fail twice (500, then 503) before it answers 200: the
// delivery is retried with the same alert id and a fresh signature, and the log shows every attempt.
func TestWebhookRetriedAfterFailures(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{alerts: alert.Config{AllowPrivate: true, RetryBase: 200 * time.Millisecond}})
	x := seedTenants(t, b)
	rcv := newReceiver(t, http.StatusInternalServerError, http.StatusServiceUnavailable, http.StatusOK)
	c := alertClient(b, x.adminA.token)
	hook, secret := createWebhook(t, c, x.teamA.ID.String(), rcv.url)
	rcv.mu.Lock()
	rcv.secret = func() string { return secret }
	rcv.mu.Unlock()
	if _, err := c.SendTestEvent(t.Context(), connect.NewRequest(&apiv1.SendTestEventRequest{TeamId: x.teamA.ID.String(), Id: hook.Id})); err != nil {
		t.Fatal(err)
	}
	got := rcv.wait(t, 3, 60*time.Second)
	for i, r := range got {
		if r.signature != nil {
			t.Errorf("attempt %d: signature: %v", i+1, r.signature)
		}
		if r.header.Get(alert.EventIDHeader) != got[0].header.Get(alert.EventIDHeader) {
			t.Errorf("attempt %d carries another event id", i+1)
		}
	}
	if gap := got[2].at.Sub(got[1].at); gap < 400*time.Millisecond {
		t.Errorf("the third attempt came %s after the second; the backoff doubles from 200ms", gap)
	}
	d := finishedDeliveries(t, c, x.teamA.ID.String(), hook.Id)[0]
	if d.State != apiv1.DeliveryState_DELIVERY_STATE_DELIVERED || len(d.Attempts) != 3 {
		t.Fatalf("delivery = %v", d)
	}
	for i, want := range []struct {
		status uint32
		error  string
	}{{500, "the receiver answered 500"}, {503, "the receiver answered 503"}, {200, ""}} {
		if a := d.Attempts[i]; a.Attempt != uint32(i+1) || a.StatusCode != want.status || a.Error != want.error {
			t.Errorf("attempt %d = %v, want status %d error %q", i+1, a, want.status, want.error)
		}
	}
	if len(rcv.receipts()) != 3 {
		t.Errorf("the receiver got %d requests after a success, want 3", len(rcv.receipts()))
	}
}

// TestWebhookNeverReachesPrivateAddresses checks that, by default, a webhook cannot reach loopback: an
// address literal is refused when the webhook is created, and a name that resolves to loopback is refused
// when it is dialed, every attempt, without a byte reaching the receiver.
func TestWebhookNeverReachesPrivateAddresses(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{alerts: alert.Config{RetryBase: 100 * time.Millisecond, MaxAttempts: 2}})
	x := seedTenants(t, b)
	rcv := newReceiver(t, http.StatusOK)
	c := alertClient(b, x.adminA.token)
	for _, literal := range []string{rcv.url, "http://169.254.169.254/latest/meta-data", "http://[::1]/", "http://10.1.2.3/"} {
		_, err := c.CreateWebhook(t.Context(), connect.NewRequest(&apiv1.CreateWebhookRequest{
			TeamId: x.teamA.ID.String(), Name: "metadata", Url: literal,
			EventKinds: []apiv1.AlertKind{apiv1.AlertKind_ALERT_KIND_SATELLITE_OFFLINE},
		}))
		if connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Errorf("creating a webhook to %s: %v, want InvalidArgument", literal, err)
		}
	}
	_, port, err := net.SplitHostPort(rcv.url[len("http://") : len(rcv.url)-len("/hooks/orrery")])
	if err != nil {
		t.Fatal(err)
	}
	hook, _ := createWebhook(t, c, x.teamA.ID.String(), "http://localhost:"+port+"/hooks/orrery")
	if _, err := c.SendTestEvent(t.Context(), connect.NewRequest(&apiv1.SendTestEventRequest{TeamId: x.teamA.ID.String(), Id: hook.Id})); err != nil {
		t.Fatal(err)
	}
	d := finishedDeliveries(t, c, x.teamA.ID.String(), hook.Id)[0]
	if d.State != apiv1.DeliveryState_DELIVERY_STATE_FAILED || len(d.Attempts) != 2 {
		t.Fatalf("delivery = %v", d)
	}
	for _, a := range d.Attempts {
		if a.StatusCode != 0 || a.Error != "the address is not public (loopback, private, link-local or this host): the operator must allow private webhook addresses" {
			t.Errorf("attempt = %v", a)
		}
	}
	if n := len(rcv.receipts()); n != 0 {
		t.Errorf("the receiver on loopback got %d requests", n)
	}
}

// TestWebhooksAreTeamScoped is the attacker's view: another team's webhooks and their deliveries answer
// exactly like ones that do not exist, global webhooks are the global admins', and a team's admin cannot
// reach them by leaving out the team.
func TestWebhooksAreTeamScoped(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{alerts: alert.Config{AllowPrivate: true}})
	x := seedTenants(t, b)
	victim := alertClient(b, x.adminA.token)
	hookA, _ := createWebhook(t, victim, x.teamA.ID.String(), "https://hooks.example.test/a")
	global, _ := createWebhook(t, alertClient(b, x.globalAdmin.token), "", "https://hooks.example.test/global")
	attacker := alertClient(b, x.adminB.token)
	teamB := x.teamB.ID.String()

	// Named under the attacker's own team, the victim's webhook (and the global one) is NotFound, with the
	// same message as a webhook that does not exist.
	missing := "00000000-0000-4000-8000-000000000000"
	for _, id := range []string{hookA.Id, global.Id, missing} {
		_, errGet := attacker.GetWebhook(t.Context(), connect.NewRequest(&apiv1.GetWebhookRequest{TeamId: teamB, Id: id}))
		_, errDel := attacker.DeleteWebhook(t.Context(), connect.NewRequest(&apiv1.DeleteWebhookRequest{TeamId: teamB, Id: id}))
		_, errTest := attacker.SendTestEvent(t.Context(), connect.NewRequest(&apiv1.SendTestEventRequest{TeamId: teamB, Id: id}))
		_, errList := attacker.ListWebhookDeliveries(t.Context(), connect.NewRequest(&apiv1.ListWebhookDeliveriesRequest{TeamId: teamB, Id: id}))
		for _, err := range []error{errGet, errDel, errTest, errList} {
			if connect.CodeOf(err) != connect.CodeNotFound {
				t.Errorf("webhook %s under team B: %v, want NotFound", id, err)
			}
		}
		if got, want := errGet.(*connect.Error).Message(), "webhook "+id+": not found"; got != want {
			t.Errorf("message %q, want %q", got, want)
		}
	}
	// Named under the victim's team, or without a team, the attacker is refused outright.
	for _, teamID := range []string{x.teamA.ID.String(), ""} {
		_, err := attacker.GetWebhook(t.Context(), connect.NewRequest(&apiv1.GetWebhookRequest{TeamId: teamID, Id: hookA.Id}))
		if connect.CodeOf(err) != connect.CodePermissionDenied {
			t.Errorf("webhook of team %q: %v, want PermissionDenied", teamID, err)
		}
		_, err = attacker.CreateWebhook(t.Context(), connect.NewRequest(&apiv1.CreateWebhookRequest{
			TeamId: teamID, Name: "spy", Url: "https://spy.example.test/",
			EventKinds: []apiv1.AlertKind{apiv1.AlertKind_ALERT_KIND_SATELLITE_OFFLINE},
		}))
		if connect.CodeOf(err) != connect.CodePermissionDenied {
			t.Errorf("creating a webhook for team %q: %v, want PermissionDenied", teamID, err)
		}
	}
	// A team's list holds only its own; the victim's webhook survived the attempts on it.
	list, err := attacker.ListWebhooks(t.Context(), connect.NewRequest(&apiv1.ListWebhooksRequest{TeamId: teamB}))
	if err != nil || len(list.Msg.Webhooks) != 0 {
		t.Errorf("team B's webhooks: %v, %v", list, err)
	}
	own, err := victim.ListWebhooks(t.Context(), connect.NewRequest(&apiv1.ListWebhooksRequest{TeamId: x.teamA.ID.String()}))
	if err != nil || len(own.Msg.Webhooks) != 1 || own.Msg.Webhooks[0].Id != hookA.Id {
		t.Errorf("team A's webhooks: %v, %v", own, err)
	}
	// A team user may not manage the team's webhooks either.
	_, err = alertClient(b, x.userA.token).ListWebhooks(t.Context(), connect.NewRequest(&apiv1.ListWebhooksRequest{TeamId: x.teamA.ID.String()}))
	if connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Errorf("team user listing webhooks: %v, want PermissionDenied", err)
	}
}

// TestWebhookInputIsBounded checks the limits a hostile admin meets: kinds, URL shapes and the number of
// webhooks per team.
func TestWebhookInputIsBounded(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	x := seedTenants(t, b)
	c := alertClient(b, x.adminA.token)
	team := x.teamA.ID.String()
	bad := []*apiv1.CreateWebhookRequest{
		{TeamId: team, Name: "no kinds", Url: "https://hooks.example.test/"},
		{TeamId: team, Name: "test kind", Url: "https://hooks.example.test/", EventKinds: []apiv1.AlertKind{apiv1.AlertKind_ALERT_KIND_TEST}},
		{TeamId: team, Name: "ftp", Url: "ftp://hooks.example.test/", EventKinds: []apiv1.AlertKind{apiv1.AlertKind_ALERT_KIND_SATELLITE_ONLINE}},
		{TeamId: team, Name: "credentials", Url: "https://user:pass@hooks.example.test/", EventKinds: []apiv1.AlertKind{apiv1.AlertKind_ALERT_KIND_SATELLITE_ONLINE}},
		{TeamId: team, Name: "relative", Url: "/hooks", EventKinds: []apiv1.AlertKind{apiv1.AlertKind_ALERT_KIND_SATELLITE_ONLINE}},
	}
	for _, req := range bad {
		if _, err := c.CreateWebhook(t.Context(), connect.NewRequest(req)); connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Errorf("%s: %v, want InvalidArgument", req.Name, err)
		}
	}
	for range 20 {
		createWebhook(t, c, team, "https://hooks.example.test/")
	}
	_, err := c.CreateWebhook(t.Context(), connect.NewRequest(&apiv1.CreateWebhookRequest{
		TeamId: team, Name: "21st", Url: "https://hooks.example.test/", EventKinds: []apiv1.AlertKind{apiv1.AlertKind_ALERT_KIND_SATELLITE_ONLINE},
	}))
	if connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Errorf("a 21st webhook: %v, want ResourceExhausted", err)
	}
	// Team B's quota is its own.
	createWebhook(t, alertClient(b, x.adminB.token), x.teamB.ID.String(), "https://hooks.example.test/")
}

// TestPermanentlyFailedInstanceAlertsItsTeam has a team's satellite report an instance failed for good:
// the team's webhook hears it once however often the report is retried. Another team's satellite cannot
// raise that alert for the team, whether it names the team's real instance or makes one up.
func TestPermanentlyFailedInstanceAlertsItsTeam(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{alerts: alert.Config{AllowPrivate: true}})
	red, blue := seedTeam(t, b, "red"), seedTeam(t, b, "blue")
	rcv := newReceiver(t, http.StatusOK)
	hook, secret := createWebhook(t, alertClient(b, adminToken), red.team.ID.String(), rcv.url,
		apiv1.AlertKind_ALERT_KIND_INSTANCE_PERMANENTLY_FAILED)
	rcv.mu.Lock()
	rcv.secret = func() string { return secret }
	rcv.mu.Unlock()
	failed := func(f teamFixture, team uuid.UUID, instanceID string) *satellitev1.Event {
		return &satellitev1.Event{
			Id: uuid.NewString(), OccurredAt: timestamppb.Now(), TeamId: team.String(),
			InstallationId: f.installation.ID.String(), InstanceId: instanceID,
			Payload: &satellitev1.Event_Lifecycle{Lifecycle: &satellitev1.Lifecycle{
				Kind: satellitev1.LifecycleKind_LIFECYCLE_KIND_PERMANENTLY_FAILED, Reason: "crashed 3 times in 5 minutes",
			}},
		}
	}
	blueSat := b.activeSatellite(t, blue.team.ID.String())
	// The rival's satellite names red's real instance (refused) and an instance it made up (dropped).
	_, err := blueSat.client.EmitEvents(t.Context(), connect.NewRequest(&satellitev1.EmitEventsRequest{
		Events: []*satellitev1.Event{failed(red, red.team.ID, red.instanceID(red.alice))},
	}))
	if connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Errorf("a rival satellite reporting red's instance: %v", err)
	}
	if _, err := blueSat.client.EmitEvents(t.Context(), connect.NewRequest(&satellitev1.EmitEventsRequest{
		Events: []*satellitev1.Event{failed(red, red.team.ID, red.instanceID(red.alice)+"-made-up")},
	})); err != nil {
		t.Fatal(err)
	}

	redSat := b.activeSatellite(t, red.team.ID.String())
	event := failed(red, red.team.ID, red.instanceID(red.alice))
	for range 2 {
		if _, err := redSat.client.EmitEvents(t.Context(), connect.NewRequest(&satellitev1.EmitEventsRequest{Events: []*satellitev1.Event{event}})); err != nil {
			t.Fatal(err)
		}
	}
	got := rcv.wait(t, 1, 30*time.Second)[0]
	if got.signature != nil {
		t.Fatal(got.signature)
	}
	var body struct {
		Type   string            `json:"type"`
		TeamID string            `json:"team_id"`
		Data   map[string]string `json:"data"`
	}
	if err := json.Unmarshal(got.body, &body); err != nil {
		t.Fatal(err)
	}
	if body.Type != "instance.permanently_failed" || body.TeamID != red.team.ID.String() ||
		body.Data["instance_id"] != red.instanceID(red.alice) || body.Data["reason"] != "crashed 3 times in 5 minutes" {
		t.Errorf("alert = %s", got.body)
	}
	ds := finishedDeliveries(t, alertClient(b, adminToken), red.team.ID.String(), hook.Id)
	if len(ds) != 1 {
		t.Errorf("%d deliveries, want 1: a retried report and a rival's reports raise nothing more", len(ds))
	}
}

// TestFailingCredentialCheckAlertsOnce: a credential check that finds an instance newly refusing its
// credentials raises credential_check.failed for the team once; the next check that finds it still failing
// raises nothing more, and another team's instance named in the report raises nothing.
func TestFailingCredentialCheckAlertsOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{alerts: alert.Config{AllowPrivate: true}})
	red := seedViewers(t, b, "failing")
	blue := seedViewers(t, b, "bystander")
	sat := b.activeSatellite(t, red.team.ID.String())
	sat.poll(t, 0)
	rcv := newReceiver(t, http.StatusOK)
	admins := alertClient(b, adminToken)
	hook, secret := createWebhook(t, admins, red.team.ID.String(), rcv.url, apiv1.AlertKind_ALERT_KIND_CREDENTIAL_CHECK_FAILED)
	rcv.mu.Lock()
	rcv.secret = func() string { return secret }
	rcv.mu.Unlock()
	blueRcv := newReceiver(t, http.StatusOK)
	blueHook, _ := createWebhook(t, admins, blue.team.ID.String(), blueRcv.url, apiv1.AlertKind_ALERT_KIND_CREDENTIAL_CHECK_FAILED)

	online, reauth := satellitev1.InstanceStatus_INSTANCE_STATUS_ONLINE, satellitev1.InstanceStatus_INSTANCE_STATUS_REQUIRES_REAUTH
	aliceID, blueID := red.instanceID(red.teamFixture.alice), blue.instanceID(blue.teamFixture.alice)
	reportHealthCheck(t, b, red, sat,
		&satellitev1.InstanceOutcome{InstanceId: aliceID, Status: reauth, PreviousStatus: online, Message: "401 from the server"},
		&satellitev1.InstanceOutcome{InstanceId: blueID, Status: reauth, PreviousStatus: online})
	reportHealthCheck(t, b, red, sat, &satellitev1.InstanceOutcome{InstanceId: aliceID, Status: reauth, PreviousStatus: reauth})

	got := rcv.wait(t, 1, 30*time.Second)[0]
	var body struct {
		Type string            `json:"type"`
		Data map[string]string `json:"data"`
	}
	if err := json.Unmarshal(got.body, &body); err != nil || got.signature != nil {
		t.Fatalf("%s: %v, signature %v", got.body, err, got.signature)
	}
	if body.Type != "credential_check.failed" || body.Data["instance_id"] != aliceID || body.Data["status"] != "requires_reauth" ||
		body.Data["installation_id"] != red.installation.ID.String() {
		t.Errorf("alert = %s", got.body)
	}
	if ds := finishedDeliveries(t, admins, red.team.ID.String(), hook.Id); len(ds) != 1 {
		t.Errorf("%d deliveries, want 1", len(ds))
	}
	resp, err := admins.ListWebhookDeliveries(t.Context(), connect.NewRequest(&apiv1.ListWebhookDeliveriesRequest{TeamId: blue.team.ID.String(), Id: blueHook.Id}))
	if err != nil || len(resp.Msg.Deliveries) != 0 {
		t.Errorf("the bystander team's webhook: %v, %v", resp, err)
	}
}
