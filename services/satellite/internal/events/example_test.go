package events_test

import (
	"context"
	"fmt"

	"connectrpc.com/connect"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/services/satellite/internal/events"
)

// printer stands in for the satellite's authenticated SatelliteService client.
type printer struct{}

func (printer) EmitEvents(_ context.Context, req *connect.Request[satellitev1.EmitEventsRequest]) (*connect.Response[satellitev1.EmitEventsResponse], error) {
	for _, ev := range req.Msg.GetEvents() {
		fmt.Println(ev.GetInstanceId(), ev.GetStatusChanged().GetStatus())
	}
	return connect.NewResponse(&satellitev1.EmitEventsResponse{Stored: uint32(len(req.Msg.GetEvents()))}), nil
}

// The MCP runtime emits an event for every status change; the batcher fills in id and time and sends it
// with its installation's other events.
func ExampleBatcher() {
	// Without Config.Dir the batcher holds events in memory only; the satellite sets it to its state
	// directory so that a crash loses none.
	b, err := events.New(nil, printer{}, events.Config{})
	if err != nil {
		fmt.Println(err)
		return
	}
	b.Emit(&satellitev1.Event{
		TeamId:         "6f1c8a52-3c1e-4a8e-9d0f-6a1f2b3c4d5e",
		InstallationId: "11111111-2222-4333-8444-555555555555",
		InstanceId:     "github-platform-ada-11111111-2222-4333-8444-555555555555",
		Payload: &satellitev1.Event_StatusChanged{StatusChanged: &satellitev1.StatusChanged{
			Status: satellitev1.InstanceStatus_INSTANCE_STATUS_ONLINE,
		}},
	})
	// Close flushes at once instead of waiting for the flush delay.
	if err := b.Close(context.Background()); err != nil {
		fmt.Println(err)
	}
	// Output:
	// github-platform-ada-11111111-2222-4333-8444-555555555555 INSTANCE_STATUS_ONLINE
}
