// Package rpcerr maps the control plane's domain errors to Connect errors, in one table, at the API boundary.
package rpcerr

import (
	"context"
	"errors"
	"log/slog"

	"connectrpc.com/connect"

	"github.com/orrery/orrery/services/controlplane/internal/store"
)

var codes = []struct {
	err  error
	code connect.Code
}{
	{store.ErrNotFound, connect.CodeNotFound},
	{store.ErrGlobalTemplate, connect.CodePermissionDenied},
	{store.ErrInstalled, connect.CodeFailedPrecondition},
	{store.ErrAlreadyExists, connect.CodeAlreadyExists},
	{store.ErrConflict, connect.CodeFailedPrecondition},
	{store.ErrForeignInstance, connect.CodePermissionDenied},
	{context.Canceled, connect.CodeCanceled},
	{context.DeadlineExceeded, connect.CodeDeadlineExceeded},
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
			return connect.NewError(c.code, errors.New(message+": "+c.err.Error()))
		}
	}
	logger.ErrorContext(ctx, message, slog.Any("error", err))
	return connect.NewError(connect.CodeInternal, errors.New(message+": internal error"))
}
