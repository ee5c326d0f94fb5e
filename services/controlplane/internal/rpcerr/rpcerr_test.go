package rpcerr_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"

	"github.com/orrery/orrery/services/controlplane/internal/password"
	"github.com/orrery/orrery/services/controlplane/internal/rpcerr"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// TestRetryHints tells a caller turned away for load when to come back, as a header and as a detail, and
// leaves other errors without a hint.
func TestRetryHints(t *testing.T) {
	t.Parallel()
	logger := slog.New(slog.DiscardHandler)
	for _, tc := range []struct {
		name      string
		err       *connect.Error
		code      connect.Code
		retryHint string
	}{
		{"retry later", rpcerr.RetryLater("slow down", 1500*time.Millisecond), connect.CodeResourceExhausted, "2"},
		{"argon2 busy", asConnect(rpcerr.From(t.Context(), logger, "sign in", fmt.Errorf("verify: %w", password.ErrBusy))),
			connect.CodeResourceExhausted, "2"},
		{"not found", asConnect(rpcerr.From(t.Context(), logger, "get", store.ErrNotFound)), connect.CodeNotFound, ""},
		{"database down", asConnect(rpcerr.From(t.Context(), logger, "get", fmt.Errorf("get team: %w", store.ErrUnavailable))),
			connect.CodeUnavailable, "5"},
	} {
		if tc.err.Code() != tc.code || tc.err.Meta().Get("Retry-After") != tc.retryHint {
			t.Errorf("%s: %v with Retry-After %q, want %v with %q", tc.name, tc.err.Code(), tc.err.Meta().Get("Retry-After"),
				tc.code, tc.retryHint)
		}
		var info *errdetails.RetryInfo
		for _, d := range tc.err.Details() {
			if v, err := d.Value(); err == nil {
				info, _ = v.(*errdetails.RetryInfo)
			}
		}
		if (info != nil) != (tc.retryHint != "") {
			t.Errorf("%s: RetryInfo %v", tc.name, info)
		}
	}
}

func asConnect(err error) *connect.Error {
	ce, _ := err.(*connect.Error)
	return ce
}

// TestUnavailable answers a database outage as Unavailable, never as the caller's fault or as internal,
// names no detail of the cause to the caller, and logs the cause as a warning for operators.
func TestUnavailable(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	cause := errors.New("dial tcp 10.0.0.7:5432: connect: connection refused")
	err := asConnect(rpcerr.From(t.Context(), logger, "get team",
		fmt.Errorf("get team: %w: %w", store.ErrUnavailable, cause)))
	if err.Code() != connect.CodeUnavailable || strings.Contains(err.Message(), "10.0.0.7") {
		t.Errorf("got %v %q, want unavailable without the cause", err.Code(), err.Message())
	}
	if out := logs.String(); !strings.Contains(out, "level=WARN") || !strings.Contains(out, "connection refused") {
		t.Errorf("logged %q, want a warning with the cause", out)
	}

	for _, tc := range []struct {
		err   error
		after time.Duration
		ok    bool
	}{
		{fmt.Errorf("get client: %w", store.ErrUnavailable), 5 * time.Second, true},
		{fmt.Errorf("verify: %w", password.ErrBusy), 2 * time.Second, true},
		{store.ErrNotFound, 0, false},
		{cause, 0, false},
	} {
		if after, ok := rpcerr.RetryAfter(tc.err); after != tc.after || ok != tc.ok {
			t.Errorf("RetryAfter(%v) = %v, %v; want %v, %v", tc.err, after, ok, tc.after, tc.ok)
		}
	}
}
