package oauth

import (
	"context"
	"net/http"

	"github.com/ory/fosite"

	"github.com/orrery/orrery/services/controlplane/internal/rpcerr"
)

// temporary recognizes a passing failure of what the server depends on (the database unreachable, every
// Argon2 slot taken) anywhere in err's chain, logs its cause, sets Retry-After on w, and returns the
// temporarily_unavailable error (RFC 6749, section 4.1.2.1; 503) to answer with. fosite wraps whatever its
// storage or secret hasher returns in invalid_client or server_error, so without this a client whose record
// could not be read, or whose secret could not be checked, would be told its credentials are wrong.
func (s *Server) temporary(ctx context.Context, w http.ResponseWriter, endpoint string, err error) (*fosite.RFC6749Error, bool) {
	after, ok := rpcerr.RetryAfter(err)
	if !ok {
		return nil, false
	}
	cause := err
	if rfc := fosite.ErrorToRFC6749Error(err); rfc.Cause() != nil {
		cause = rfc.Cause()
	}
	s.logger.WarnContext(ctx, endpoint+": temporarily unavailable", "error", cause)
	w.Header().Set("Retry-After", rpcerr.RetryAfterHeader(after))
	return fosite.ErrTemporarilyUnavailable.WithWrap(err), true
}

// writeAccessError answers the token, revocation and introspection endpoints' errors as JSON (RFC 6749,
// section 5.2), a passing failure as temporarily_unavailable.
func (s *Server) writeAccessError(ctx context.Context, w http.ResponseWriter, ar fosite.AccessRequester, endpoint string, err error) {
	if t, ok := s.temporary(ctx, w, endpoint, err); ok {
		err = t
	} else {
		s.logFailure(ctx, endpoint, err)
	}
	if ar == nil {
		ar = fosite.NewAccessRequest(&Session{})
	}
	s.provider.WriteAccessError(ctx, w, ar, err)
}
