package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
)

// BenchmarkElicitingCall measures what attributing a server's requests costs, with the go-sdk's
// conformance server as a stdio instance:
//
//   - session era, alone: one client calls test_elicitation, whose server asks the client by a request
//     of its own that the gateway routes to the calling session; against "own stdio", the same call by a
//     Go SDK client that runs the server itself;
//   - session era, two sessions: two clients of the user call it at once, again and again; the instance
//     serves one client session at a time, so a call may wait for the other's turn;
//   - 2026-07-28: a stateless client calls test_input_required_result_elicitation, which the instance's
//     second, 2026-07-28 connection carries: two round trips, the second with the answer; against own
//     stdio at 2026-07-28.
//
// Memory: the Go heap and stacks the modern lane adds (its client session and pipes), and the resident
// memory of its second server process; and the heap and stacks per session whose call waits for its
// turn, with 50 waiting.
func BenchmarkElicitingCall(b *testing.B) {
	const calls = 300
	server := buildConformanceServer(b)
	s := startSatellite(b)
	in := s.instance("conf", server)
	s.apply(b, in)
	s.waitOnline(b, in.GetId())
	ctx := b.Context()

	answering := func(name string) *mcp.ClientOptions {
		return &mcp.ClientOptions{ElicitationHandler: func(context.Context, *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
			return &mcp.ElicitResult{Action: "accept", Content: map[string]any{"username": name, "name": name}}, nil
		}}
	}
	ann := s.connect(b, sessionEra, answering("ann"))
	ben := s.connect(b, sessionEra, answering("ben"))
	stateless := s.connect(b, statelessEra, answering("ann"))
	own := connectStdioWith(b, sessionEra, answering("ann"), server)
	ownModern := connectStdioWith(b, statelessEra, answering("ann"), server)

	elicit := func(cs *mcp.ClientSession) error {
		return callExpect(ctx, cs, "conf__test_elicitation", map[string]any{"message": "who?"}, "action=accept")
	}
	ownElicit := func(cs *mcp.ClientSession) error {
		return callExpect(ctx, cs, "test_elicitation", map[string]any{"message": "who?"}, "action=accept")
	}
	rounds := func(cs *mcp.ClientSession, tool string) error {
		return callExpect(ctx, cs, tool, map[string]any{}, "Hello, ann!")
	}
	paths := []struct {
		name string
		call func() error
	}{
		{"endpoint, session era, alone", func() error { return elicit(ann) }},
		{"own stdio, session era", func() error { return ownElicit(own) }},
		{"endpoint, 2026-07-28 (2 round trips)", func() error { return rounds(stateless, "conf__test_input_required_result_elicitation") }},
		{"own stdio, 2026-07-28 (2 round trips)", func() error { return rounds(ownModern, "test_input_required_result_elicitation") }},
	}
	var samples [4][]time.Duration
	var pair []time.Duration
	for b.Loop() {
		for i := range samples {
			samples[i] = samples[i][:0]
		}
		for n := range calls {
			for k := range paths {
				i := (n + k) % len(paths)
				start := time.Now()
				if err := paths[i].call(); err != nil {
					b.Fatalf("%s: %v", paths[i].name, err)
				}
				samples[i] = append(samples[i], time.Since(start))
			}
		}
		// Two sessions at once: each call's latency, its wait for the other's turn included.
		pair = pair[:0]
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, cs := range []*mcp.ClientSession{ann, ben} {
			wg.Go(func() {
				for range calls {
					start := time.Now()
					if err := elicit(cs); err != nil {
						b.Errorf("two sessions: %v", err)
						return
					}
					mu.Lock()
					pair = append(pair, time.Since(start))
					mu.Unlock()
				}
			})
		}
		wg.Wait()
	}
	b.Logf("%-40s %10s %10s", fmt.Sprint(calls)+" calls each", "p50", "p99")
	var p50 [4]time.Duration
	for i, p := range paths {
		slices.Sort(samples[i])
		p50[i] = quantile(samples[i], 0.5)
		b.Logf("%-40s %10v %10v", p.name, p50[i].Round(time.Microsecond), quantile(samples[i], 0.99).Round(time.Microsecond))
	}
	slices.Sort(pair)
	b.Logf("%-40s %10v %10v", "endpoint, session era, two sessions", quantile(pair, 0.5).Round(time.Microsecond),
		quantile(pair, 0.99).Round(time.Microsecond))
	b.Logf("added by the endpoint at p50: session era %v, 2026-07-28 %v; waiting for the other session's turn: %v",
		(p50[0] - p50[1]).Round(time.Microsecond), (p50[2] - p50[3]).Round(time.Microsecond),
		(quantile(pair, 0.5) - p50[0]).Round(time.Microsecond))
	b.ReportMetric(micros(p50[0]), "session-p50-µs")
	b.ReportMetric(micros(p50[1]), "own-session-p50-µs")
	b.ReportMetric(micros(quantile(pair, 0.5)), "two-sessions-p50-µs")
	b.ReportMetric(micros(p50[2]), "modern-p50-µs")
	b.ReportMetric(micros(p50[3]), "own-modern-p50-µs")

	reportWaitingMemory(b, s)
	reportLaneMemory(b, s, server) // last: it replaces the configuration
}

// reportLaneMemory opens the modern lanes of fresh instances and reports what each adds: the satellite's
// heap and stacks, and the resident memory of the second server process.
func reportLaneMemory(b *testing.B, s *benchSatellite, server string) {
	const n = 5
	var ids []string
	var specs []*satellitev1.Instance
	for i := range n {
		in := s.instance(fmt.Sprintf("lane%d", i), server)
		specs = append(specs, in)
		ids = append(ids, in.GetId())
	}
	s.apply(b, specs...)
	s.waitOnline(b, ids...)
	before, _ := memNow()
	rssBefore := rssOf(b, server)
	for _, id := range ids {
		if cs, err := s.rt.ModernSession(b.Context(), id); err != nil || cs == nil {
			b.Fatalf("modern lane: %v, %v", cs, err)
		}
	}
	after, _ := memNow()
	rssAfter := rssOf(b, server)
	heap := float64(int64(after.HeapInuse)-int64(before.HeapInuse)+int64(after.StackInuse)-int64(before.StackInuse)) / n / 1024
	rss := float64(rssAfter-rssBefore) / n / 1024
	b.Logf("per modern lane (N=%d): satellite heap+stacks %.1f KiB; second server process %.0f KiB resident", n, heap, rss)
	b.ReportMetric(heap, "lane-satellite-KiB")
	b.ReportMetric(rss, "lane-process-KiB")
}

// reportWaitingMemory holds one session's call in its elicitation while 50 other sessions' calls wait for
// their turn, and reports the heap and stacks per waiting call beyond those sessions when idle.
func reportWaitingMemory(b *testing.B, s *benchSatellite) {
	const waiters = 50
	ctx, cancel := context.WithCancel(b.Context())
	defer cancel()
	release := make(chan struct{})
	holder := s.connect(b, sessionEra, &mcp.ClientOptions{ElicitationHandler: func(ctx context.Context, _ *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return &mcp.ElicitResult{Action: "accept", Content: map[string]any{"username": "holder"}}, nil
	}})
	sessions := make([]*mcp.ClientSession, waiters)
	for i := range sessions {
		sessions[i] = s.connect(b, sessionEra, &mcp.ClientOptions{ElicitationHandler: func(context.Context, *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
			return &mcp.ElicitResult{Action: "accept", Content: map[string]any{"username": "w"}}, nil
		}})
	}
	idle, _ := memNow()
	var wg sync.WaitGroup
	wg.Go(func() { _ = callExpect(ctx, holder, "conf__test_elicitation", map[string]any{"message": "hold"}, "") })
	// A pause, not a synchronization: the holder's call reaches its elicitation before the others start.
	time.Sleep(200 * time.Millisecond)
	for _, cs := range sessions {
		wg.Go(func() { _ = callExpect(ctx, cs, "conf__test_elicitation", map[string]any{"message": "wait"}, "") })
	}
	time.Sleep(time.Second) // let the 50 calls reach the gateway and wait
	waiting, _ := memNow()
	close(release)
	wg.Wait()
	per := float64(int64(waiting.HeapInuse)-int64(idle.HeapInuse)+int64(waiting.StackInuse)-int64(idle.StackInuse)) / waiters / 1024
	b.Logf("per call waiting for its turn (%d waiting): heap+stacks %.1f KiB, HTTP request and SDK state included", waiters, per)
	b.ReportMetric(per, "waiting-call-KiB")
}

// callExpect calls tool and checks that its first text content contains want.
func callExpect(ctx context.Context, cs *mcp.ClientSession, tool string, args map[string]any, want string) error {
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: args})
	if err != nil {
		return err
	}
	if len(res.Content) == 0 {
		return fmt.Errorf("%s: no content", tool)
	}
	text, _ := res.Content[0].(*mcp.TextContent)
	if text == nil || !strings.Contains(text.Text, want) {
		return fmt.Errorf("%s = %+v, want %q", tool, res.Content, want)
	}
	return nil
}

// rssOf sums the resident memory, in bytes, of the processes running command.
func rssOf(b *testing.B, command string) int64 {
	b.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		b.Fatal(err)
	}
	var total int64
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err != nil || exe != command {
			continue
		}
		status, err := os.ReadFile(filepath.Join("/proc", e.Name(), "status"))
		if err != nil {
			continue
		}
		for line := range strings.SplitSeq(string(status), "\n") {
			if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
				total += kb * 1024
			}
		}
	}
	return total
}
