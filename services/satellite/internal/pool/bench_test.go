package pool

import (
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// BenchmarkToolCall times a tool call of an open Streamable HTTP session made at the satellite that owns
// it (direct) and at another satellite of the pool, which forwards it over the internal channel
// (forwarded). The difference is the cost of forwarding; p50 and p99 of the wall time are reported per
// call, and the CPU time the whole process (client, both satellites, the MCP server) spent per call.
//
//	go test -run '^$' -bench BenchmarkToolCall -benchtime 2000x ./services/satellite/internal/pool
func BenchmarkToolCall(b *testing.B) {
	for _, mode := range []string{"direct", "forwarded"} {
		b.Run(mode, func(b *testing.B) {
			f := newFixture(b)
			url := f.b.public.URL
			if mode == "forwarded" {
				url = f.a.public.URL
			}
			cs := dial(b, url, false, &bearer{token: "ann"}, nil)
			params := &mcp.CallToolParams{Name: "alpha__echo"}
			for range 50 { // warm the connections
				callText(b, cs, params)
			}
			durations := make([]time.Duration, 0, b.N)
			cpu0 := cpuTime()
			b.ResetTimer()
			for b.Loop() {
				start := time.Now()
				callText(b, cs, params)
				durations = append(durations, time.Since(start))
			}
			b.StopTimer()
			b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(len(durations)), "cpu-µs/op")
			slices.Sort(durations)
			b.ReportMetric(float64(durations[len(durations)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(durations[len(durations)*99/100].Microseconds()), "p99-µs")
		})
	}
}

// cpuTime is the CPU time the process has used, user and system: under a loaded machine a steadier
// measure of the work a call costs than its wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
