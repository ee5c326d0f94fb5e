package gateway

import (
	"context"
	"errors"
	"net/http/httptest"
	"testing"

	"connectrpc.com/connect"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/gen/orrery/satellite/v1/satellitev1connect"
)

type introspectHandler struct {
	satellitev1connect.UnimplementedSatelliteServiceHandler
}

func (introspectHandler) IntrospectToken(_ context.Context, req *connect.Request[satellitev1.IntrospectTokenRequest]) (*connect.Response[satellitev1.IntrospectTokenResponse], error) {
	if req.Msg.GetToken() == "database-down" {
		// What the control plane answers while its database is unreachable.
		return nil, connect.NewError(connect.CodeUnavailable, errors.New("introspect token: database unavailable"))
	}
	if req.Msg.GetToken() != "good" {
		return connect.NewResponse(&satellitev1.IntrospectTokenResponse{}), nil
	}
	return connect.NewResponse(&satellitev1.IntrospectTokenResponse{Active: true, TeamSlug: "acme"}), nil
}

func TestServiceIntrospector(t *testing.T) {
	t.Parallel()
	_, h := satellitev1connect.NewSatelliteServiceHandler(introspectHandler{})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	in := ServiceIntrospector{Client: satellitev1connect.NewSatelliteServiceClient(srv.Client(), srv.URL)}
	resp, err := in.Introspect(t.Context(), "good")
	if err != nil || !resp.GetActive() || resp.GetTeamSlug() != "acme" {
		t.Errorf("good token: %v, %v", resp, err)
	}
	resp, err = in.Introspect(t.Context(), "bad")
	if err != nil || resp.GetActive() {
		t.Errorf("bad token: %v, %v", resp, err)
	}
	// An outage is an error, which the gateway answers with 503 (TestIntrospectionFailure), never an
	// inactive token, which it would answer with 401 and send the client to sign in again.
	resp, err = in.Introspect(t.Context(), "database-down")
	if connect.CodeOf(err) != connect.CodeUnavailable || resp != nil {
		t.Errorf("control plane unavailable: %v, %v; want an Unavailable error", resp, err)
	}
}
