package e2e_test

import (
	"bufio"
	"fmt"
	"maps"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect"

	"github.com/orrery/orrery/e2e"
	adminv1 "github.com/orrery/orrery/gen/orrery/admin/v1"
	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/internal/pgtest"
)

const (
	// idleWindowEnv overrides the measured window of BenchmarkIdleSatelliteRequestRate.
	idleWindowEnv = "ORRERY_BENCH_IDLE_WINDOW"
	// defaultIdleWindow sees every periodic call (25 s polls, 30 s heartbeats) at least twice.
	defaultIdleWindow = 65 * time.Second
	// idleWarmUp lets the start-up calls (register, first configuration, heartbeat and poll) finish before
	// the window opens.
	idleWarmUp = 5 * time.Second

	// rpcCountMetric is the request counter otelconnect keeps on the control plane: the count of its
	// rpc.server.call.duration histogram, one series per rpc_method and status code.
	rpcCountMetric = "rpc_server_call_duration_seconds_count"
	// satelliteService prefixes the rpc_method of the satellite's calls.
	satelliteService = "orrery.satellite.v1.SatelliteService/"
)

// BenchmarkIdleSatelliteRequestRate measures what one idle satellite costs the control plane: its requests
// per minute by procedure, counted by the control plane's own RPC metrics over a window of 65 s
// (ORRERY_BENCH_IDLE_WINDOW overrides it, e.g. 20s for a quick look). Long polls held for 25 s, carrying the
// heartbeats, should come to about 2.4 requests a minute and no Heartbeat calls. Then it shows that idle does
// not mean slow: immediate commands enqueued while the satellite idles in its held poll, timed from
// EnqueueCommand until the control plane has the satellite's result.
//
//	go test -run '^$' -bench IdleSatelliteRequestRate ./e2e/
func BenchmarkIdleSatelliteRequestRate(b *testing.B) {
	window := defaultIdleWindow
	if v := os.Getenv(idleWindowEnv); v != "" {
		var err error
		if window, err = time.ParseDuration(v); err != nil || window <= 0 {
			b.Fatalf("%s=%q: want a positive duration such as 65s", idleWindowEnv, v)
		}
	}
	cp := e2e.StartControlPlane(b, pgtest.NewDatabase(b))
	sat := e2e.StartSatellite(b, cp, e2e.SatelliteConfig{RegistrationToken: cp.RegistrationToken(b)})
	waitActive(b, cp, sat.URL)
	time.Sleep(idleWarmUp)

	total := make(map[string]float64)
	var elapsed time.Duration
	for b.Loop() {
		before := rpcCounts(b, cp)
		start := time.Now()
		time.Sleep(window)
		after := rpcCounts(b, cp)
		elapsed += time.Since(start)
		for method, n := range after {
			if strings.HasPrefix(method, satelliteService) {
				total[strings.TrimPrefix(method, satelliteService)] += n - before[method]
			}
		}
	}
	if sat.Exited() {
		b.Fatalf("satellite exited during the window")
	}

	perMinute := func(n float64) float64 { return n / elapsed.Minutes() }
	var sum float64
	var table strings.Builder
	tw := tabwriter.NewWriter(&table, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "procedure\trequests\tper minute\t\n")
	for _, method := range slices.Sorted(maps.Keys(total)) {
		if total[method] == 0 {
			continue
		}
		sum += total[method]
		fmt.Fprintf(tw, "%s\t%.0f\t%.2f\t\n", method, total[method], perMinute(total[method]))
	}
	fmt.Fprintf(tw, "total\t%.0f\t%.2f\t\n", sum, perMinute(sum))
	_ = tw.Flush()
	b.Logf("idle satellite over %v, counted by the control plane:\n%s", elapsed.Round(time.Millisecond), table.String())

	rounds := commandRoundTrips(b, cp, sat.URL, 5)
	b.Logf("immediate configure commands to the idle satellite, enqueue to result recorded: %v", rounds)
	slices.Sort(rounds)
	b.ReportMetric(float64(rounds[len(rounds)/2].Microseconds())/1000, "cmd-p50-ms")
	b.ReportMetric(float64(rounds[len(rounds)-1].Microseconds())/1000, "cmd-max-ms")

	b.ReportMetric(0, "ns/op") // the time of a sleep says nothing
	b.ReportMetric(perMinute(total["PollCommands"]), "polls/min")
	b.ReportMetric(perMinute(total["Heartbeat"]), "heartbeats/min")
	b.ReportMetric(perMinute(sum), "requests/min")
}

// rpcCounts reads the control plane's completed-request counts by rpc_method from /metrics, summed over
// status codes.
func rpcCounts(tb testing.TB, cp *e2e.ControlPlane) map[string]float64 {
	tb.Helper()
	resp, err := http.Get(cp.URL + "/metrics")
	if err != nil {
		tb.Fatalf("scrape metrics: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		tb.Fatalf("scrape metrics: %s", resp.Status)
	}
	counts := make(map[string]float64)
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		// rpc_server_call_duration_seconds_count{...,rpc_method="pkg.Service/Method",...} 12
		rest, ok := strings.CutPrefix(sc.Text(), rpcCountMetric+"{")
		if !ok {
			continue
		}
		labels, value, ok := strings.Cut(rest, "} ")
		if !ok {
			continue
		}
		_, method, ok := strings.Cut(labels, `rpc_method="`)
		if !ok {
			continue
		}
		method, _, _ = strings.Cut(method, `"`)
		n, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			tb.Fatalf("metrics line %q: %v", sc.Text(), err)
		}
		counts[method] += n
	}
	if err := sc.Err(); err != nil {
		tb.Fatalf("read metrics: %v", err)
	}
	if len(counts) == 0 {
		tb.Fatalf("no %s series with an rpc_method label in the control plane's /metrics: has otelconnect "+
			"renamed its metric?", rpcCountMetric)
	}
	return counts
}

// commandRoundTrips enqueues n immediate configure commands for the satellite at url, one at a time, each
// while it idles in a held poll, and returns how long each took from EnqueueCommand until the control plane
// recorded the satellite's result.
func commandRoundTrips(b *testing.B, cp *e2e.ControlPlane, url string, n int) []time.Duration {
	b.Helper()
	id := waitActive(b, cp, url).GetId()
	var rounds []time.Duration
	for range n {
		time.Sleep(time.Second) // back in its held poll after the last command's report
		start := time.Now()
		resp, err := cp.Admin().EnqueueCommand(b.Context(), connect.NewRequest(&adminv1.EnqueueCommandRequest{
			Target:   &adminv1.EnqueueCommandRequest_SatelliteId{SatelliteId: id},
			Priority: satellitev1.CommandPriority_COMMAND_PRIORITY_IMMEDIATE,
			Action: &adminv1.EnqueueCommandRequest_Configure{Configure: &satellitev1.ConfigureAction{
				Event: satellitev1.ConfigureEvent_CONFIGURE_EVENT_INSTALLATION_UPDATED,
			}},
		}))
		if err != nil {
			b.Fatalf("enqueue command: %v", err)
		}
		cmdID := resp.Msg.GetCommands()[0].GetCommand().GetId()
		for {
			list, err := cp.Admin().ListCommands(b.Context(), connect.NewRequest(&adminv1.ListCommandsRequest{SatelliteId: id}))
			if err != nil {
				b.Fatalf("list commands: %v", err)
			}
			i := slices.IndexFunc(list.Msg.GetCommands(), func(c *adminv1.AdminCommand) bool { return c.GetCommand().GetId() == cmdID })
			if i >= 0 && list.Msg.GetCommands()[i].GetState() == satellitev1.CommandState_COMMAND_STATE_COMPLETED {
				rounds = append(rounds, time.Since(start))
				break
			}
			if time.Since(start) > 30*time.Second {
				b.Fatalf("command %s not completed within 30 s", cmdID)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	return rounds
}
