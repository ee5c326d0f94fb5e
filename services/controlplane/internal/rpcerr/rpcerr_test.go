package rpcerr_test

import (
	"fmt"
	"log/slog"
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
