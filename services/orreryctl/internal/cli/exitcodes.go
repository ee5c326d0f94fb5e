package cli

import (
	"errors"
	"strings"

	"connectrpc.com/connect"
)

// Exit codes. They are part of orreryctl's interface: scripts may rely on them, so they only ever grow.
const (
	ExitOK = 0
	// ExitError is any failure without a code of its own.
	ExitError = 1
	// ExitUsage is a wrong command line: an unknown command or flag, a missing argument, a bad value.
	ExitUsage = 2
	// ExitAuth means no valid sign-in: not signed in, or the token expired or was revoked.
	ExitAuth = 3
	// ExitDenied means signed in but not allowed.
	ExitDenied = 4
	// ExitNotFound means a team, template, installation or instance that does not exist, or is not yours to see.
	ExitNotFound = 5
	// ExitTimeout means a wait (such as install --wait) ended before what it waited for happened.
	ExitTimeout = 6
	// ExitUnavailable means the control plane could not be reached or asked to retry later.
	ExitUnavailable = 7
)

const exitCodeHelp = `Exit codes:
  0  success
  1  any other failure
  2  wrong usage: unknown command or flag, missing argument, invalid value
  3  not signed in, or the sign-in expired or was revoked: run 'orreryctl login'
  4  signed in but not allowed
  5  not found (or not yours to see)
  6  a wait timed out
  7  the control plane is unreachable or busy: try again`

// usageError is a wrong command line.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

// codedError carries its own exit code.
type codedError struct {
	code int
	error
}

func (e codedError) Unwrap() error { return e.error }

func notFound(err error) error { return codedError{ExitNotFound, err} }

// classify picks the exit code for err and the message to print, with what to do where there is
// something to do.
func classify(err error) (int, string) {
	var usage usageError
	if errors.As(err, &usage) {
		return ExitUsage, err.Error()
	}
	var coded codedError
	if errors.As(err, &coded) {
		return coded.code, err.Error()
	}
	// Cobra's own refusals of a command line carry no type of their own.
	if msg := err.Error(); strings.HasPrefix(msg, "unknown command") || strings.HasPrefix(msg, "required flag(s)") ||
		strings.HasPrefix(msg, "if any flags in the group") {
		return ExitUsage, err.Error() + " (see 'orreryctl --help')"
	}
	var ce *connect.Error
	if errors.As(err, &ce) {
		msg := ce.Message()
		switch ce.Code() {
		case connect.CodeUnauthenticated:
			return ExitAuth, msg + "; run 'orreryctl login' to sign in again"
		case connect.CodePermissionDenied:
			return ExitDenied, "not allowed: " + msg
		case connect.CodeNotFound:
			return ExitNotFound, msg
		case connect.CodeInvalidArgument:
			return ExitUsage, "invalid request: " + msg
		case connect.CodeUnavailable, connect.CodeResourceExhausted:
			return ExitUnavailable, "the control plane is unavailable or busy (" + msg + "); try again shortly"
		case connect.CodeDeadlineExceeded:
			return ExitTimeout, msg
		}
		return ExitError, msg
	}
	return ExitError, err.Error()
}
