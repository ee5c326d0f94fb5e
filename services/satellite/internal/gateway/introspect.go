package gateway

import (
	"context"
	"fmt"

	"connectrpc.com/connect"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
)

// TokenIntrospecter is the part of the control plane's SatelliteService client that checks tokens;
// satellitev1connect.SatelliteServiceClient is one.
type TokenIntrospecter interface {
	IntrospectToken(context.Context, *connect.Request[satellitev1.IntrospectTokenRequest]) (*connect.Response[satellitev1.IntrospectTokenResponse], error)
}

// ServiceIntrospector is the Introspector that asks the control plane through the satellite's
// authenticated SatelliteService client.
type ServiceIntrospector struct {
	Client TokenIntrospecter
}

// Introspect implements Introspector.
func (s ServiceIntrospector) Introspect(ctx context.Context, token string) (*satellitev1.IntrospectTokenResponse, error) {
	resp, err := s.Client.IntrospectToken(ctx, connect.NewRequest(&satellitev1.IntrospectTokenRequest{Token: token}))
	if err != nil {
		return nil, fmt.Errorf("introspect token: %w", err)
	}
	return resp.Msg, nil
}
