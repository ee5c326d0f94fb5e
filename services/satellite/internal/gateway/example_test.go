package gateway_test

import (
	"context"
	"net/http"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/services/satellite/internal/gateway"
)

// runtime stands in for the satellite's MCP runtime.
type runtime struct{}

func (runtime) Instances(teamID, userID string) []gateway.Instance { return nil }
func (runtime) Session(context.Context, string) (*mcp.ClientSession, error) {
	return nil, context.Canceled
}
func (runtime) Subscribe() (<-chan struct{}, func()) { return make(chan struct{}), func() {} }

// introspector stands in for the control plane's IntrospectToken RPC.
type introspector struct{}

func (introspector) Introspect(context.Context, string) (*satellitev1.IntrospectTokenResponse, error) {
	return &satellitev1.IntrospectTokenResponse{}, nil
}

func Example() {
	gw, err := gateway.New(nil, gateway.Config{
		PublicURL:           "https://satellite.example.com",
		AuthorizationServer: "https://orrery.example.com",
		Backend:             runtime{},
		Introspector:        introspector{},
	})
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go gw.Run(ctx) // keeps tool lists in step with the runtime

	mux := http.NewServeMux()
	for _, pattern := range gateway.Patterns() {
		mux.Handle(pattern, gw)
	}
	_ = &http.Server{Addr: ":8080", Handler: mux}
}
