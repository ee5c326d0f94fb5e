package events_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/gen/orrery/satellite/v1/satellitev1connect"
	"github.com/orrery/orrery/services/satellite/internal/backendtest"
	"github.com/orrery/orrery/services/satellite/internal/backoff"
	"github.com/orrery/orrery/services/satellite/internal/events"
)

const (
	teamA = "6f1c8a52-3c1e-4a8e-9d0f-6a1f2b3c4d5e"
	teamB = "0b7e9d1a-5f2c-4b3d-8e4f-1a2b3c4d5e6f"
	instA = "11111111-2222-4333-8444-555555555555"
	instB = "22222222-3333-4444-8555-666666666666"
)

func logEvent(team, installation string, n int) *satellitev1.Event {
	return &satellitev1.Event{
		TeamId:         team,
		InstallationId: installation,
		InstanceId:     "fs-" + team[:4] + "-" + installation,
		Payload: &satellitev1.Event_ServerLog{ServerLog: &satellitev1.ServerLog{
			Level:   satellitev1.LogLevel_LOG_LEVEL_INFO,
			Message: fmt.Sprintf("line %d", n),
		}},
	}
}

func message(ev *satellitev1.Event) string { return ev.GetServerLog().GetMessage() }

// recorder is an in-memory Sender, so the batcher's timers can run under synctest's fake clock.
type recorder struct {
	mu       sync.Mutex
	err      error
	reject   func(*satellitev1.Event) bool // events the control plane refuses as invalid
	maxBytes int                           // the largest request the control plane reads; 0: any
	batches  [][]*satellitev1.Event
	attempts []time.Time
}

func (r *recorder) EmitEvents(_ context.Context, req *connect.Request[satellitev1.EmitEventsRequest]) (*connect.Response[satellitev1.EmitEventsResponse], error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.attempts = append(r.attempts, time.Now())
	if r.err != nil {
		return nil, r.err
	}
	if size := proto.Size(req.Msg); r.maxBytes > 0 && size > r.maxBytes {
		return nil, connect.NewError(connect.CodeResourceExhausted,
			fmt.Errorf("message size %d is larger than configured max %d", size, r.maxBytes))
	}
	for _, ev := range req.Msg.GetEvents() {
		if r.reject != nil && r.reject(ev) {
			return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("event %s is invalid", ev.GetId()))
		}
	}
	r.batches = append(r.batches, req.Msg.GetEvents())
	return connect.NewResponse(&satellitev1.EmitEventsResponse{Stored: uint32(len(req.Msg.GetEvents()))}), nil
}

func (r *recorder) setErr(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.err = err
}

func (r *recorder) sent() [][]*satellitev1.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.batches)
}

func (r *recorder) attemptTimes() []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.attempts)
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

var unavailable = connect.NewError(connect.CodeUnavailable, errors.New("control plane is down"))

// almostOne pins backoff jitter so retry delays are their full, predictable length.
func almostOne() float64 { return 1 - 1e-12 }

func newBatcher(t *testing.T, sender events.Sender, cfg events.Config) *events.Batcher {
	t.Helper()
	b, err := events.New(testLogger(t), sender, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = b.Close(ctx)
	})
	return b
}

func TestFlushAtMaxBatch(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{}
		b := newBatcher(t, r, events.Config{})
		start := time.Now()
		for i := range 20 {
			b.Emit(logEvent(teamA, instA, i))
		}
		synctest.Wait()
		if got := r.sent(); len(got) != 1 || len(got[0]) != 20 {
			t.Fatalf("after 20 events: %d batches, want one of 20", len(got))
		}
		if elapsed := time.Since(start); elapsed != 0 {
			t.Errorf("full batch waited %v", elapsed)
		}

		// The 21st event starts a new batch that waits for the flush delay.
		b.Emit(logEvent(teamA, instA, 20))
		time.Sleep(events.DefaultFlushDelay - time.Nanosecond)
		synctest.Wait()
		if got := len(r.sent()); got != 1 {
			t.Fatalf("a lone event was sent before the flush delay: %d batches", got)
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		if got := r.sent(); len(got) != 2 || len(got[1]) != 1 || message(got[1][0]) != "line 20" {
			t.Fatalf("lone event not flushed after the delay: %v", got)
		}
	})
}

func TestFlushDelayPerGroup(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{}
		b := newBatcher(t, r, events.Config{})
		start := time.Now()
		b.Emit(logEvent(teamA, instA, 1))
		time.Sleep(time.Second)
		b.Emit(logEvent(teamB, instB, 2))
		time.Sleep(time.Second)
		b.Emit(logEvent(teamA, instA, 3))

		// Group A is due 3 s after its first event, with both of its events; group B a second later.
		time.Sleep(time.Second)
		synctest.Wait()
		got := r.sent()
		if len(got) != 1 || len(got[0]) != 2 || message(got[0][0]) != "line 1" || message(got[0][1]) != "line 3" {
			t.Fatalf("at 3s: %v", got)
		}
		if at := r.attemptTimes()[0].Sub(start); at != 3*time.Second {
			t.Errorf("group A sent at %v, want 3s", at)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		got = r.sent()
		if len(got) != 2 || len(got[1]) != 1 || got[1][0].GetTeamId() != teamB {
			t.Fatalf("at 4s: %v", got)
		}
	})
}

func TestEmitFillsIDAndTime(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{}
		b := newBatcher(t, r, events.Config{NewID: func() string { return "00000000-0000-4000-8000-000000000001" }})
		withID := logEvent(teamA, instA, 1)
		withID.Id = "00000000-0000-4000-8000-000000000002"
		b.Emit(logEvent(teamA, instA, 0))
		b.Emit(withID)
		if err := b.Close(t.Context()); err != nil {
			t.Fatal(err)
		}
		got := r.sent()[0]
		if got[0].GetId() != "00000000-0000-4000-8000-000000000001" || !got[0].GetOccurredAt().AsTime().Equal(time.Now()) {
			t.Errorf("empty id and time not filled: %v", got[0])
		}
		if got[1].GetId() != withID.Id {
			t.Errorf("caller's id replaced: %v", got[1].GetId())
		}
	})
}

func TestKeepsEventsAcrossOutage(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{err: unavailable}
		b := newBatcher(t, r, events.Config{Backoff: backoff.Policy{Rand: almostOne}})
		var want []string
		for i := range 45 {
			team, inst := teamA, instA
			if i%3 == 1 {
				team, inst = teamB, instB
			}
			b.Emit(logEvent(team, inst, i))
			want = append(want, fmt.Sprintf("line %d", i))
		}
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		if len(r.sent()) != 0 {
			t.Fatal("sent while the control plane was down")
		}
		if st := b.Stats(); st.Buffered != 45 || st.Dropped != 0 {
			t.Fatalf("during the outage: %+v", st)
		}

		// Retries back off exponentially up to the cap, so an outage is not hammered.
		attempts := r.attemptTimes()
		var gaps []time.Duration
		for i := 1; i < len(attempts); i++ {
			gaps = append(gaps, attempts[i].Sub(attempts[i-1]).Round(time.Millisecond))
		}
		if len(gaps) < 6 || gaps[0] != 500*time.Millisecond || gaps[1] != time.Second || gaps[2] != 2*time.Second ||
			gaps[len(gaps)-1] != backoff.DefaultMax {
			t.Fatalf("retry gaps = %v", gaps)
		}

		r.setErr(nil)
		time.Sleep(backoff.DefaultMax)
		synctest.Wait()

		var got []string
		perGroup := map[string][]int{}
		ids := map[string]bool{}
		for _, batch := range r.sent() {
			for _, ev := range batch {
				if ids[ev.GetId()] {
					t.Errorf("event %s delivered twice", ev.GetId())
				}
				ids[ev.GetId()] = true
				got = append(got, message(ev))
				var n int
				fmt.Sscanf(message(ev), "line %d", &n)
				perGroup[ev.GetTeamId()] = append(perGroup[ev.GetTeamId()], n)
			}
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("delivered %d events, want all %d", len(got), len(want))
		}
		for team, ns := range perGroup {
			if !slices.IsSorted(ns) {
				t.Errorf("team %s events out of order: %v", team, ns)
			}
		}
		if st := b.Stats(); st.Buffered != 0 || st.Sent != 45 {
			t.Errorf("after the outage: %+v", st)
		}
	})
}

func TestOverflowDropsOldestAndReportsCount(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{err: unavailable}
		b := newBatcher(t, r, events.Config{BufferSize: 30})
		for i := range 20 {
			b.Emit(logEvent(teamA, instA, i))
		}
		synctest.Wait() // the first 20 are now in flight, failing
		for i := 20; i < 100; i++ {
			b.Emit(logEvent(teamA, instA, i))
		}
		if st := b.Stats(); st.Buffered != 30 || st.Dropped != 70 {
			t.Fatalf("full buffer: %+v, want 30 held and 70 dropped", st)
		}

		r.setErr(nil)
		time.Sleep(time.Minute)
		synctest.Wait()

		var kept []string
		var reports []*satellitev1.EventsDropped
		for _, batch := range r.sent() {
			for _, ev := range batch {
				if d := ev.GetEventsDropped(); d != nil {
					reports = append(reports, d)
					continue
				}
				kept = append(kept, message(ev))
			}
		}
		var want []string
		for _, i := range slices.Concat(seq(0, 20), seq(90, 100)) {
			want = append(want, fmt.Sprintf("line %d", i))
		}
		if !slices.Equal(kept, want) {
			t.Errorf("kept %v, want the in-flight batch and the newest 10", kept)
		}
		if len(reports) != 1 || reports[0].GetCount() != 70 || reports[0].GetReason() != events.ReasonBufferFull {
			t.Errorf("drop reports = %v, want one of 70 for a full buffer", reports)
		}
	})
}

func seq(from, to int) []int {
	var s []int
	for i := from; i < to; i++ {
		s = append(s, i)
	}
	return s
}

func TestRejectedBatchIsCountedAndReported(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		// One malformed event makes the control plane refuse its whole batch; retrying cannot help.
		r := &recorder{reject: func(ev *satellitev1.Event) bool { return message(ev) == "line 7" }}
		b := newBatcher(t, r, events.Config{})
		for i := range 20 {
			b.Emit(logEvent(teamA, instA, i))
		}
		synctest.Wait()
		b.Emit(logEvent(teamA, instA, 20))
		time.Sleep(events.DefaultFlushDelay)
		synctest.Wait()

		var dropped *satellitev1.EventsDropped
		for _, batch := range r.sent() {
			for _, ev := range batch {
				if d := ev.GetEventsDropped(); d != nil {
					dropped = d
				}
			}
		}
		if dropped.GetCount() != 20 || dropped.GetReason() != events.ReasonRejected {
			t.Fatalf("drop report = %v, want 20 rejected", dropped)
		}
		if st := b.Stats(); st.Dropped != 20 || st.Sent != 1 || st.Buffered != 0 {
			t.Errorf("stats = %+v", st)
		}
	})
}

func TestBatchesStayUnderMaxBatchBytes(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{maxBytes: 4096}
		b := newBatcher(t, r, events.Config{MaxBatchBytes: 2048})
		sized := func(n, size int) *satellitev1.Event {
			ev := logEvent(teamA, instA, n)
			ev.GetServerLog().Message = fmt.Sprintf("line %d ", n) + strings.Repeat("x", size)
			return ev
		}
		for i := range 10 {
			b.Emit(sized(i, 600))
		}
		time.Sleep(events.DefaultFlushDelay)
		synctest.Wait()
		var total int
		for _, batch := range r.sent() {
			size := proto.Size(&satellitev1.EmitEventsRequest{Events: batch})
			if len(batch) > 3 || size > 2048+64 {
				t.Errorf("a batch of %d events and %d bytes, want at most 2048 bytes of events", len(batch), size)
			}
			total += len(batch)
		}
		if total != 10 {
			t.Fatalf("sent %d events in %d batches, want 10", total, len(r.sent()))
		}

		// An event larger than any request the control plane reads goes alone, is refused, and is counted.
		b.Emit(sized(10, 5000))
		time.Sleep(events.DefaultFlushDelay)
		synctest.Wait()
		if st := b.Stats(); st.Dropped != 1 || st.Buffered != 0 {
			t.Fatalf("after an event too large to send: %+v, want it dropped", st)
		}
		var report *satellitev1.EventsDropped
		for _, batch := range r.sent() {
			for _, ev := range batch {
				if d := ev.GetEventsDropped(); d != nil {
					report = d
				}
			}
		}
		if report.GetCount() != 1 || report.GetReason() != events.ReasonRejected {
			t.Errorf("drop report %v, want one rejected", report)
		}
	})
}

func TestCloseFlushesAtOnce(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{}
		b := newBatcher(t, r, events.Config{})
		b.Emit(logEvent(teamA, instA, 1))
		b.Emit(logEvent(teamB, instB, 2))
		start := time.Now()
		if err := b.Close(t.Context()); err != nil {
			t.Fatal(err)
		}
		if elapsed := time.Since(start); elapsed != 0 {
			t.Errorf("Close waited %v for the flush delay", elapsed)
		}
		if got := r.sent(); len(got) != 2 {
			t.Errorf("Close sent %d batches, want 2", len(got))
		}
	})
}

func TestCloseGivesUpAtDeadline(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{err: unavailable}
		b := newBatcher(t, r, events.Config{})
		b.Emit(logEvent(teamA, instA, 1))
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		start := time.Now()
		err := b.Close(ctx)
		if err == nil || !strings.Contains(err.Error(), "1 events undelivered") {
			t.Fatalf("Close = %v, want an error counting the undelivered event", err)
		}
		if elapsed := time.Since(start); elapsed != 5*time.Second {
			t.Errorf("Close took %v, want its 5s deadline", elapsed)
		}
		b.Emit(logEvent(teamA, instA, 2)) // after Close: dropped, no panic
		if st := b.Stats(); st.Dropped != 1 {
			t.Errorf("stats after Close = %+v", st)
		}
	})
}

// TestDeliversAcrossOutageOverHTTP runs the batcher against the fake control plane over real HTTP, which
// also checks every event, drop reports included, against the proto's validation rules.
func TestDeliversAcrossOutageOverHTTP(t *testing.T) {
	t.Parallel()
	srv := backendtest.New(t)
	key := srv.AddSatellite()
	client := satellitev1connect.NewSatelliteServiceClient(&http.Client{Timeout: 5 * time.Second}, srv.URL,
		connect.WithInterceptors(bearer(key)))
	srv.SetDown(true)

	b := newBatcher(t, client, events.Config{
		FlushDelay: 10 * time.Millisecond,
		BufferSize: 40,
		Backoff:    backoff.Policy{Min: time.Millisecond, Max: 10 * time.Millisecond},
	})
	for i := range 50 {
		team, inst := teamA, instA
		if i%2 == 1 {
			team, inst = teamB, instB
		}
		b.Emit(logEvent(team, inst, i))
	}
	srv.Wait(t.Context(), "retries during the outage", 5*time.Second, func() bool { return srv.Refused() >= 3 })
	srv.SetDown(false)
	// 40 events fit the buffer; the 10 that did not are counted in events_dropped events.
	count := func() (delivered int, dropped uint64) {
		for _, ev := range srv.Events() {
			if d := ev.GetEventsDropped(); d != nil {
				dropped += d.GetCount()
			} else {
				delivered++
			}
		}
		return delivered, dropped
	}
	srv.Wait(t.Context(), "the buffered events and the drop report", 5*time.Second, func() bool {
		delivered, dropped := count()
		return delivered == 40 && dropped == 10
	})

	last := map[string]int{}
	for _, ev := range srv.Events() {
		if ev.GetEventsDropped() != nil {
			continue
		}
		var n int
		fmt.Sscanf(message(ev), "line %d", &n)
		if prev, ok := last[ev.GetTeamId()]; ok && n <= prev {
			t.Errorf("team %s: line %d arrived after line %d", ev.GetTeamId(), n, prev)
		}
		last[ev.GetTeamId()] = n
	}
	if err := b.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func bearer(key string) connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			req.Header().Set("Authorization", "Bearer "+key)
			return next(ctx, req)
		}
	}
}
