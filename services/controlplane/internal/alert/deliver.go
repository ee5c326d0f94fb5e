package alert

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/riverqueue/river"

	"github.com/orrery/orrery/internal/buildinfo"
	"github.com/orrery/orrery/internal/egress"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// DeliverArgs is one delivery's job.
type DeliverArgs struct {
	DeliveryID uuid.UUID `json:"delivery_id"`
}

// Kind names the job for River.
func (DeliverArgs) Kind() string { return "deliver_webhook" }

// DeliverWorker makes one attempt at a delivery per run; River retries a failed attempt after NextRetry.
type DeliverWorker struct {
	river.WorkerDefaults[DeliverArgs]
	alerter *Alerter
	client  *http.Client
}

// maxBackoff caps the wait between attempts.
const maxBackoff = time.Hour

// NextRetry waits RetryBase before the second attempt and doubles each time, with up to 10% jitter so
// that a receiver's outage does not bring every delivery back at the same instant.
func (w *DeliverWorker) NextRetry(job *river.Job[DeliverArgs]) time.Time {
	wait := min(w.alerter.cfg.RetryBase<<min(job.Attempt-1, 20), maxBackoff)
	wait += time.Duration(rand.Int64N(int64(wait)/10 + 1))
	return w.alerter.cfg.Now().Add(wait)
}

// Timeout bounds a run: the attempt's own timeout and the time to record it.
func (w *DeliverWorker) Timeout(*river.Job[DeliverArgs]) time.Duration {
	return w.alerter.cfg.Timeout + 10*time.Second
}

// errAttemptFailed makes River retry a delivery whose attempt is already logged.
var errAttemptFailed = errors.New("webhook delivery attempt failed")

// Work makes one attempt and logs it.
func (w *DeliverWorker) Work(ctx context.Context, job *river.Job[DeliverArgs]) error {
	a := w.alerter
	d, err := a.store.DeliveryToSend(ctx, job.Args.DeliveryID)
	if errors.Is(err, store.ErrNotFound) {
		return nil // the webhook was deleted
	}
	if err != nil {
		return err
	}
	if d.State != store.DeliveryPending {
		return nil
	}
	attempt := store.DeliveryAttempt{Attempt: job.Attempt}
	attempt.StatusCode, attempt.Latency, attempt.Error = w.post(ctx, d)
	state := store.DeliveryPending
	switch {
	case attempt.Error == "":
		state = store.DeliveryDelivered
	case job.Attempt >= job.MaxAttempts:
		state = store.DeliveryFailed
	}
	if err := a.store.RecordDeliveryAttempt(ctx, d.ID, attempt, state); err != nil {
		return err
	}
	logger := a.logger.With("delivery_id", d.ID, "webhook_id", d.WebhookID, "alert_kind", d.Kind, "attempt", job.Attempt)
	switch state {
	case store.DeliveryDelivered:
		logger.DebugContext(ctx, "webhook delivered", "status", attempt.StatusCode, "latency", attempt.Latency)
		return nil
	case store.DeliveryFailed:
		logger.WarnContext(ctx, "webhook delivery failed for good", "error", attempt.Error)
		return nil
	}
	logger.InfoContext(ctx, "webhook delivery attempt failed; will retry", "error", attempt.Error)
	return errAttemptFailed
}

// post sends the alert once and says how it went: the status (0 without an answer), how long it took, and
// why it failed in words that never carry the URL, which may hold a receiver's token.
func (w *DeliverWorker) post(ctx context.Context, d store.DeliveryToSend) (int, time.Duration, string) {
	a := w.alerter
	ctx, cancel := context.WithTimeout(ctx, a.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.URL, bytes.NewReader(d.Body))
	if err != nil {
		return 0, 0, "the webhook URL is not valid"
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Orrery-Webhooks/"+buildinfo.Version())
	req.Header.Set(EventIDHeader, d.AlertID.String())
	req.Header.Set(EventTypeHeader, d.Kind)
	req.Header.Set(DeliveryIDHeader, d.ID.String())
	start := a.cfg.Now()
	req.Header.Set(SignatureHeader, Sign(d.Secret, start, d.Body))
	resp, err := w.client.Do(req)
	if err != nil {
		return 0, time.Since(start), describe(err, a.cfg)
	}
	defer resp.Body.Close()
	// The status decides; the rest of the body is read (within bounds) only so the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, a.cfg.MaxResponseBytes))
	latency := time.Since(start)
	switch {
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		return resp.StatusCode, latency, fmt.Sprintf("the receiver answered %d; redirects are not followed", resp.StatusCode)
	case resp.StatusCode < 200 || resp.StatusCode >= 300:
		return resp.StatusCode, latency, fmt.Sprintf("the receiver answered %d", resp.StatusCode)
	}
	return resp.StatusCode, latency, ""
}

// describe says why a request got no answer.
func describe(err error, cfg Config) string {
	var dnsErr *net.DNSError
	switch {
	case errors.Is(err, egress.ErrForbidden):
		return "the address is not public (loopback, private, link-local or this host): the operator must allow private webhook addresses"
	case errors.Is(err, context.DeadlineExceeded) || os.IsTimeout(err):
		return fmt.Sprintf("no answer within %s", cfg.Timeout)
	case errors.As(err, &dnsErr):
		return "the host name does not resolve"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "the connection was closed before an answer"
	}
	if ue := new(url.Error); errors.As(err, &ue) {
		return "could not connect: " + shortReason(ue.Err)
	}
	return "could not connect"
}

// shortReason is an error's text without the URL that net/http puts in front of it.
func shortReason(err error) string {
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Err != nil {
		return opErr.Err.Error()
	}
	return err.Error()
}

// newHTTPClient returns the client deliveries use: no proxy (it would connect where the check cannot see),
// each dialed address checked after DNS resolution, no redirects followed.
func newHTTPClient(cfg Config) *http.Client {
	policy := egress.Policy{}
	if cfg.AllowPrivate {
		policy.Allow = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}
	}
	transport := policy.Transport()
	transport.DialContext = (&net.Dialer{Timeout: cfg.Timeout, Control: policy.Control}).DialContext
	transport.MaxResponseHeaderBytes = 16 << 10
	transport.ResponseHeaderTimeout = cfg.Timeout
	return &http.Client{
		Transport:     transport,
		Timeout:       cfg.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// CheckURL refuses a webhook URL that can never be delivered to: not http or https, credentials in it, or
// an address literal that is not public (unless private addresses are allowed). Names are checked again
// at each delivery, after they resolve.
func (a *Alerter) CheckURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return errors.New("url must be an absolute http or https URL")
	}
	if u.User != nil {
		return errors.New("url must not carry a user name or password")
	}
	if addr, err := netip.ParseAddr(u.Hostname()); err == nil && !a.cfg.AllowPrivate && !(egress.Policy{}).Permits(addr) {
		return errors.New("url names an address that is not public; the operator has not allowed private webhook addresses")
	}
	return nil
}
