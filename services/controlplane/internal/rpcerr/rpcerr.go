// Package rpcerr maps the control plane's domain errors to Connect errors, in one table, at the API boundary.
package rpcerr

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"strconv"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/orrery/orrery/services/controlplane/internal/password"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// busyRetry is when a caller refused because every Argon2 slot stayed taken should try again: by then the
// queue it gave up on has moved on by several runs.
const busyRetry = 2 * time.Second

var codes = []struct {
	err  error
	code connect.Code
	// retry, when set, is sent as a hint of when to try again.
	retry time.Duration
}{
	{store.ErrNotFound, connect.CodeNotFound, 0},
	{store.ErrGlobalTemplate, connect.CodePermissionDenied, 0},
	{store.ErrInstalled, connect.CodeFailedPrecondition, 0},
	{store.ErrAlreadyExists, connect.CodeAlreadyExists, 0},
	{store.ErrConflict, connect.CodeFailedPrecondition, 0},
	{store.ErrForeignInstance, connect.CodePermissionDenied, 0},
	{store.ErrLimit, connect.CodeResourceExhausted, 0},
	{password.ErrBusy, connect.CodeResourceExhausted, busyRetry},
	{context.Canceled, connect.CodeCanceled, 0},
	{context.DeadlineExceeded, connect.CodeDeadlineExceeded, 0},
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
			return ce
		}
	}
	logger.ErrorContext(ctx, message, slog.Any("error", err))
	return connect.NewError(connect.CodeInternal, errors.New(message+": internal error"))
}

// RetryLater is the answer to a caller who is asking too often or too much at once: ResourceExhausted with
// a hint of when to try again, as a Retry-After header (whole seconds, rounded up) and a google.rpc.RetryInfo
// detail.
func RetryLater(message string, after time.Duration) *connect.Error {
	return withRetryHint(connect.NewError(connect.CodeResourceExhausted, errors.New(message)), after)
}

func withRetryHint(ce *connect.Error, after time.Duration) *connect.Error {
	seconds := max(1, int64(math.Ceil(after.Seconds())))
	ce.Meta().Set("Retry-After", strconv.FormatInt(seconds, 10))
	if detail, err := connect.NewErrorDetail(&errdetails.RetryInfo{RetryDelay: durationpb.New(after)}); err == nil {
		ce.AddDetail(detail)
	}
	return ce
}
