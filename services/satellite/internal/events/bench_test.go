package events_test

import (
	"context"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/services/satellite/internal/events"
)

// discard is a control plane that accepts every batch at once.
type discard struct{}

func (discard) EmitEvents(context.Context, *connect.Request[satellitev1.EmitEventsRequest]) (*connect.Response[satellitev1.EmitEventsResponse], error) {
	return connect.NewResponse(&satellitev1.EmitEventsResponse{}), nil
}

// stalled is a control plane that never answers, so that nothing leaves the buffer while Emit is measured.
type stalled struct{}

func (stalled) EmitEvents(ctx context.Context, _ *connect.Request[satellitev1.EmitEventsRequest]) (*connect.Response[satellitev1.EmitEventsResponse], error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// requestLog is a tool call's log as the gateway emits it, with small bodies.
func requestLog() *satellitev1.Event {
	return &satellitev1.Event{
		TeamId: teamA, InstallationId: instA, InstanceId: "fs-" + instA,
		Payload: &satellitev1.Event_RequestLog{RequestLog: &satellitev1.RequestLog{
			UserId:   teamB,
			ToolName: "read_file",
			Duration: durationpb.New(12 * time.Millisecond),
			Success:  true,
			Request:  structpb.NewStringValue(`{"path":"/srv/data/report.csv"}`),
			Response: structpb.NewStringValue(`{"content":[{"type":"text","text":"id,name,amount\n1,ada,42\n"}]}`),
		}},
	}
}

// BenchmarkEmit measures what Emit costs its caller, the MCP runtime, with and without the disk queue. The
// control plane does not answer, so the sending goroutine does not compete for the lock, and the buffer holds
// every event, so none is dropped; with the disk queue, its commits run as they would.
func BenchmarkEmit(b *testing.B) {
	for _, bc := range []struct {
		name string
		dir  func() string
	}{
		{"memory", func() string { return "" }},
		{"disk", b.TempDir},
	} {
		b.Run(bc.name, func(b *testing.B) {
			batcher, err := events.New(nil, stalled{}, events.Config{Dir: bc.dir(), FlushDelay: time.Hour, BufferSize: b.N})
			if err != nil {
				b.Fatal(err)
			}
			evs := make([]*satellitev1.Event, b.N)
			for i := range evs {
				evs[i] = requestLog()
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				batcher.Emit(evs[i])
			}
			b.StopTimer()
			gone, cancel := context.WithCancel(context.Background())
			cancel()
			_ = batcher.Close(gone)
			if s := batcher.Stats(); s.Dropped != 0 {
				b.Fatalf("stats = %+v, want nothing dropped", s)
			}
		})
	}
}

// BenchmarkDiskThroughput measures events per second through the disk queue: with the control plane up,
// each event is written, delivered and removed; with it down, written only, as in an outage.
func BenchmarkDiskThroughput(b *testing.B) {
	for _, bc := range []struct {
		name   string
		sender events.Sender
	}{
		{"delivered", discard{}},
		{"outage", &recorder{err: unavailable}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			batcher, err := events.New(nil, bc.sender, events.Config{
				Dir:        b.TempDir(),
				FlushDelay: time.Millisecond,
				BufferSize: max(b.N, events.DefaultBufferSize),
			})
			if err != nil {
				b.Fatal(err)
			}
			evs := make([]*satellitev1.Event, b.N)
			for i := range evs {
				evs[i] = requestLog()
			}
			b.ResetTimer()
			start := time.Now()
			for i := range b.N {
				batcher.Emit(evs[i])
			}
			// Close returns once everything is delivered (or, in an outage, at once) and the last commit is
			// on disk.
			ctx := context.Background()
			if _, ok := bc.sender.(*recorder); ok {
				var cancel context.CancelFunc
				ctx, cancel = context.WithCancel(ctx)
				cancel()
			}
			_ = batcher.Close(ctx)
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
			if s := batcher.Stats(); s.Unsaved != 0 || s.Dropped != 0 {
				b.Fatalf("stats after close = %+v, want everything on disk and nothing dropped", s)
			}
		})
	}
}
