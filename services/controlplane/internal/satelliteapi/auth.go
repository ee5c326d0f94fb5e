package satelliteapi

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"connectrpc.com/connect"

	"github.com/orrery/orrery/gen/orrery/satellite/v1/satellitev1connect"
	"github.com/orrery/orrery/services/controlplane/internal/apikey"
	"github.com/orrery/orrery/services/controlplane/internal/rpcerr"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

type satelliteKey struct{}

// refusal is an authentication failure whose text tells the satellite's operator what to do.
type refusal string

func (r refusal) Error() string { return string(r) }

// errKeyNoLongerValid refuses a key whose satellite was revoked or deleted after the key was verified.
const errKeyNoLongerValid = refusal("this satellite was revoked: register it again with a new registration token")

// authenticate resolves the request's API key to a live satellite. It reads the satellite's row on every
// request, so a revocation holds at once on every replica; the key cache only spares the Argon2 work.
//
// Heartbeats and polls, the steady traffic, are the exception: their own statements re-check the key hash and
// revocation in the same round trip (store.RecordHeartbeat, store.ClaimCommands), so for a key verified
// before they use the satellite as last read.
func (h *Handler) authenticate(ctx context.Context, header, procedure string) (store.Satellite, error) {
	token, ok := strings.CutPrefix(header, "Bearer ")
	if !ok {
		return store.Satellite{}, refusal(`missing "Authorization: Bearer <api key>" header`)
	}
	key, err := apikey.Parse(token)
	if err != nil {
		return store.Satellite{}, refusal(err.Error())
	}
	if procedure == satellitev1connect.SatelliteServiceHeartbeatProcedure ||
		procedure == satellitev1connect.SatelliteServicePollCommandsProcedure {
		if sat, ok := h.lastRead.Get(key.ID); ok && h.keys.Known(key, sat.APIKeyHash) {
			return sat, nil
		}
	}
	sat, err := h.store.SatelliteByKeyID(ctx, key.ID)
	if errors.Is(err, store.ErrNotFound) {
		return store.Satellite{}, refusal("unknown API key: register the satellite again with a new registration token")
	}
	if err != nil {
		return store.Satellite{}, err
	}
	matches, err := h.keys.Verify(ctx, key, sat.APIKeyHash)
	if err != nil {
		return store.Satellite{}, err
	}
	if !matches {
		return store.Satellite{}, refusal("API key does not match")
	}
	if sat.RevokedAt != nil {
		return store.Satellite{}, errKeyNoLongerValid
	}
	h.lastRead.Add(key.ID, sat)
	return sat, nil
}

// NeedsKey reports whether procedure needs a satellite's API key: every RPC but Register, which carries its
// own registration token.
func NeedsKey(procedure string) bool {
	return procedure != satellitev1connect.SatelliteServiceRegisterProcedure
}

// Authenticate resolves a request's satellite from the API key in its headers alone, so that a request
// without a valid key is refused before its body is read. peer is the caller's address, for the log. The
// context it returns carries the satellite to the interceptor, which then does not check the key again.
func (h *Handler) Authenticate(ctx context.Context, procedure string, header http.Header, peer string) (context.Context, error) {
	sat, err := h.authenticate(ctx, header.Get("Authorization"), procedure)
	var r refusal
	if errors.As(err, &r) {
		h.logger.WarnContext(ctx, "satellite authentication refused", "security_event", "satellite_auth_refused",
			"procedure", procedure, "peer", peer, "reason", string(r))
		return ctx, connect.NewError(connect.CodeUnauthenticated, r)
	}
	if err != nil {
		return ctx, rpcerr.From(ctx, h.logger, "authenticate satellite", err)
	}
	return context.WithValue(ctx, satelliteKey{}, sat), nil
}

// authInterceptor authenticates every RPC that needs a key, unless Authenticate already has.
func (h *Handler) authInterceptor() connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			if !NeedsKey(req.Spec().Procedure) {
				return next(ctx, req)
			}
			if _, ok := ctx.Value(satelliteKey{}).(store.Satellite); ok {
				return next(ctx, req)
			}
			ctx, err := h.Authenticate(ctx, req.Spec().Procedure, req.Header(), req.Peer().Addr)
			if err != nil {
				return nil, err
			}
			return next(ctx, req)
		}
	}
}

func satelliteFrom(ctx context.Context) store.Satellite {
	sat, _ := ctx.Value(satelliteKey{}).(store.Satellite)
	return sat
}
