// Package rpcerr maps the control plane's domain errors to Connect errors, in one table, at the API boundary.
package rpcerr

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/orrery/orrery/services/controlplane/internal/password"
	"github.com/orrery/orrery/services/controlplane/internal/ratelimit"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// busyRetry is when a caller refused because every Argon2 slot stayed taken should try again: by then the
// queue it gave up on has moved on by several runs.
const busyRetry = 2 * time.Second

// unavailableRetry is when a caller turned away because the database is unreachable should try again:
// long enough for a restart or failover not to be hammered by every agent at once.
const unavailableRetry = 5 * time.Second

var codes = []struct {
	err  error
	code connect.Code
	// retry, when set, is sent as a hint of when to try again; it marks the failure as passing.
	retry time.Duration
	// warn logs the cause: the failure is the server's own, and operators must see it.
	warn bool
}{
	{store.ErrUnavailable, connect.CodeUnavailable, unavailableRetry, true},
	{store.ErrNotFound, connect.CodeNotFound, 0, false},
	{store.ErrGlobalTemplate, connect.CodePermissionDenied, 0, false},
	{store.ErrStoppedByGlobalAdmin, connect.CodePermissionDenied, 0, false},
	{store.ErrVersionUnsealable, connect.CodeFailedPrecondition, 0, false},
	{store.ErrInstalled, connect.CodeFailedPrecondition, 0, false},
	{store.ErrAlreadyExists, connect.CodeAlreadyExists, 0, false},
	{store.ErrConflict, connect.CodeFailedPrecondition, 0, false},
	{store.ErrForeignInstance, connect.CodePermissionDenied, 0, false},
	{store.ErrLimit, connect.CodeResourceExhausted, 0, false},
	{password.ErrBusy, connect.CodeResourceExhausted, busyRetry, false},
	{context.Canceled, connect.CodeCanceled, 0, false},
	{context.DeadlineExceeded, connect.CodeDeadlineExceeded, 0, false},
}

// From returns the Connect error for err: message, then the domain error's own text. Errors that map to no
// code become CodeInternal; their detail is logged, never sent, since it may hold SQL or other tenants' data.
func From(ctx context.Context, logger *slog.Logger, message string, err error) error {
	if ce := new(connect.Error); errors.As(err, &ce) {
		return ce
	}
	// A value that does not fit a template's schema is the caller's to fix, so it is named.
	if fe := new(store.FieldError); errors.As(err, &fe) {
		return connect.NewError(connect.CodeInvalidArgument, fe)
	}
	for _, c := range codes {
		if errors.Is(err, c.err) {
			ce := connect.NewError(c.code, errors.New(message+": "+c.err.Error()))
			if c.retry > 0 {
				withRetryHint(ce, c.retry)
			}
			if c.warn {
				logger.WarnContext(ctx, message, slog.Any("error", err))
			}
			return ce
		}
	}
	logger.ErrorContext(ctx, message, slog.Any("error", err))
	return connect.NewError(connect.CodeInternal, errors.New(message+": internal error"))
}

// RetryAfter reports whether err is a passing failure of the server (the database unreachable, every Argon2
// slot taken) rather than of the request, and when to try again. Endpoints outside Connect, such as
// OAuth's, answer such errors with their own "temporarily unavailable".
func RetryAfter(err error) (time.Duration, bool) {
	for _, c := range codes {
		if c.retry > 0 && errors.Is(err, c.err) {
			return c.retry, true
		}
	}
	return 0, false
}

// RetryAfterHeader is the Retry-After header value for after: whole seconds, rounded up, at least one.
func RetryAfterHeader(after time.Duration) string {
	return strconv.FormatInt(max(1, int64(math.Ceil(after.Seconds()))), 10)
}

// RetryLater is the answer to a caller who is asking too often or too much at once: ResourceExhausted with
// a hint of when to try again, as a Retry-After header (whole seconds, rounded up) and a google.rpc.RetryInfo
// detail.
func RetryLater(message string, after time.Duration) *connect.Error {
	return withRetryHint(connect.NewError(connect.CodeResourceExhausted, errors.New(message)), after)
}

func withRetryHint(ce *connect.Error, after time.Duration) *connect.Error {
	ce.Meta().Set("Retry-After", RetryAfterHeader(after))
	if detail, err := connect.NewErrorDetail(&errdetails.RetryInfo{RetryDelay: durationpb.New(after)}); err == nil {
		ce.AddDetail(detail)
	}
	return ce
}

// AllowUser takes a token of the user's bucket in l. It returns nil when the user may go on, a
// resource-exhausted error with message and a retry hint when they have acted too often, and an internal
// error, logged as failing what, when the buckets cannot be reached.
func AllowUser(ctx context.Context, logger *slog.Logger, l *ratelimit.Limiter, userID fmt.Stringer, what, message string) error {
	ok, wait, err := l.AllowKey(ctx, "user "+userID.String())
	if err != nil {
		return From(ctx, logger, what, err)
	}
	if !ok {
		return RetryLater(message, wait)
	}
	return nil
}
