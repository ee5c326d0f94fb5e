package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"google.golang.org/protobuf/types/known/timestamppb"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/internal/mcptest"
	"github.com/orrery/orrery/services/satellite/internal/desired"
	"github.com/orrery/orrery/services/satellite/internal/gateway"
	"github.com/orrery/orrery/services/satellite/internal/heapfloor"
	"github.com/orrery/orrery/services/satellite/internal/mcpruntime"
	"github.com/orrery/orrery/services/satellite/internal/sandbox"
)

// The benchmarks below measure the satellite as it runs in production, minus the control plane: the real
// MCP runtime starting real server processes through the direct sandbox driver, the real gateway served
// over loopback HTTP, and Go SDK clients speaking Streamable HTTP to it with a bearer token. Only token
// introspection (cached for a minute in production anyway) and the event batcher are replaced by
// in-memory stand-ins. Each benchmark does a fixed amount of work per iteration, so that
// `-benchtime 1x` gives meaningful figures; ns/op is then the wall time of that whole workload.

const (
	benchTeamSlug = "bench"
	benchToken    = "bench-token"
	// benchWait bounds every wait for instances to come online.
	benchWait = 2 * time.Minute
)

// memIntrospector answers every introspection from memory with one active token.
type memIntrospector struct {
	resp *satellitev1.IntrospectTokenResponse
}

func (m memIntrospector) Introspect(context.Context, string) (*satellitev1.IntrospectTokenResponse, error) {
	return m.resp, nil
}

// countingSink stands in for the event batcher, whose Emit only queues the event.
type countingSink struct{ n atomic.Int64 }

func (s *countingSink) Emit(*satellitev1.Event) { s.n.Add(1) }

// benchSatellite is a satellite without its control plane: runtime, gateway and an HTTP server on
// loopback, wired as run does.
type benchSatellite struct {
	rt       *mcpruntime.Runtime
	gw       *gateway.Gateway
	view     *desired.View
	endpoint string // the team's Streamable HTTP URL
	teamID   string
	userID   string
	events   *countingSink
}

// gcFloor sets the satellite's default heap floor once for the process, as main does.
var gcFloor sync.Once

// startSatellite runs a satellite until the benchmark ends. Dormancy is off, so instances stay online.
func startSatellite(b *testing.B, options ...func(*gateway.Config)) *benchSatellite {
	b.Helper()
	gcFloor.Do(func() { heapfloor.Start(defaultGCHeapFloorMiB << 20) })
	logger := slog.New(slog.NewTextHandler(b.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	s := &benchSatellite{view: desired.New(), teamID: uuid.NewString(), userID: uuid.NewString(), events: &countingSink{}}
	var gw *gateway.Gateway
	rt, err := mcpruntime.New(logger, mcpruntime.Config{
		OnProgress: func(ctx context.Context, req *mcp.ProgressNotificationClientRequest) {
			gw.HandleProgress(ctx, req)
		},
		// As run wires them: what servers ask their client reaches the endpoint's clients.
		ClientMiddleware: func(next mcp.MethodHandler) mcp.MethodHandler {
			return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
				return gw.ClientMiddleware(next)(ctx, method, req)
			}
		},
		ClientCapabilities: gateway.ClientCapabilities(),
		Desired:            s.view,
		Events:             s.events,
		Driver:             sandbox.Direct{},
		WorkDir:            filepath.Join(b.TempDir(), "instances"),
		IdleTimeout:        -1,
		StartTimeout:       benchWait,
		StopGrace:          2 * time.Second,
	})
	if err != nil {
		b.Fatal(err)
	}
	s.rt = rt

	srv := httptest.NewUnstartedServer(nil)
	base := "http://" + srv.Listener.Addr().String()
	s.endpoint = base + "/teams/" + benchTeamSlug + "/mcp"
	gcfg := gateway.Config{
		PublicURL:           base,
		AuthorizationServer: "https://cp.example.com",
		Backend:             runtimeBackend{rt: rt},
		Introspector: memIntrospector{resp: &satellitev1.IntrospectTokenResponse{
			Active: true, TeamId: s.teamID, TeamSlug: benchTeamSlug, UserId: s.userID, UserSlug: "ada",
			ClientId: "bench-client", Audience: s.endpoint,
			Scopes:    []string{gateway.ScopeRead, gateway.ScopeExecute},
			ExpiresAt: timestamppb.New(time.Now().Add(24 * time.Hour)),
		}},
		Events: s.events,
	}
	for _, o := range options {
		o(&gcfg)
	}
	gw, err = gateway.New(logger, gcfg)
	if err != nil {
		b.Fatal(err)
	}
	s.gw = gw
	mux := http.NewServeMux()
	for _, pattern := range gateway.Patterns() {
		mux.Handle(pattern, gw)
	}
	srv.Config.Handler = mux
	srv.Start()

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := rt.Run(ctx); err != nil {
			b.Errorf("runtime: %v", err)
		}
	})
	wg.Go(func() {
		if err := gw.Run(ctx); err != nil {
			b.Errorf("gateway: %v", err)
		}
	})
	b.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
		cancel()
		wg.Wait()
	})
	return s
}

// instance is a stdio instance of the satellite's one user running command.
func (s *benchSatellite) instance(slug, command string, args ...string) *satellitev1.Instance {
	return &satellitev1.Instance{
		Id:             slug + "-" + benchTeamSlug + "-ada-" + uuid.NewString(),
		ContentHash:    "h1",
		InstallationId: uuid.NewString(),
		TeamId:         s.teamID,
		TeamSlug:       benchTeamSlug,
		UserId:         s.userID,
		UserSlug:       "ada",
		ServerSlug:     slug,
		ToolPrefix:     slug,
		ServerName:     slug,
		Transport:      satellitev1.Transport_TRANSPORT_STDIO,
		Command:        command,
		Args:           args,
	}
}

// apply makes instances the desired configuration.
func (s *benchSatellite) apply(b *testing.B, instances ...*satellitev1.Instance) {
	b.Helper()
	if _, err := s.view.Apply(instances); err != nil {
		b.Fatal(err)
	}
}

// waitUntil waits until cond holds for every instance in ids.
func (s *benchSatellite) waitUntil(b *testing.B, what string, cond func(mcpruntime.InstanceInfo, bool) bool, ids ...string) {
	b.Helper()
	changes, stop := s.rt.Subscribe("", "")
	defer stop()
	deadline := time.After(benchWait)
	for {
		done := true
		for _, id := range ids {
			if info, ok := s.rt.Instance(id); !cond(info, ok) {
				done = false
				break
			}
		}
		if done {
			return
		}
		select {
		case <-changes:
		case <-deadline:
			b.Fatalf("instances did not become %s within %v", what, benchWait)
		}
	}
}

func (s *benchSatellite) waitOnline(b *testing.B, ids ...string) {
	b.Helper()
	s.waitUntil(b, "online", func(info mcpruntime.InstanceInfo, ok bool) bool {
		if ok && info.Status == satellitev1.InstanceStatus_INSTANCE_STATUS_PERMANENTLY_FAILED {
			b.Fatalf("%s failed: %s", info.ID, info.Message)
		}
		return ok && info.Status == satellitev1.InstanceStatus_INSTANCE_STATUS_ONLINE
	}, ids...)
}

func (s *benchSatellite) waitGone(b *testing.B, ids ...string) {
	b.Helper()
	s.waitUntil(b, "removed", func(_ mcpruntime.InstanceInfo, ok bool) bool { return !ok }, ids...)
}

// bearer adds the token to every request.
type bearer struct {
	base http.RoundTripper
}

func (t bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+benchToken)
	return t.base.RoundTrip(r)
}

// benchHTTPClient keeps enough idle connections for concurrent clients, as separate MCP clients would.
var benchHTTPClient = &http.Client{Transport: bearer{base: &http.Transport{
	MaxIdleConns:        256,
	MaxIdleConnsPerHost: 256,
	IdleConnTimeout:     time.Minute,
}}}

// Protocol versions the benchmarks speak: the newest of the session era, which keeps one Mcp-Session-Id
// across requests, and the stateless era, the Go SDK client's default.
const (
	sessionEra   = "2025-11-25"
	statelessEra = "2026-07-28"
)

// connect opens a Go SDK client session to the team endpoint in protocol version, closed when the
// benchmark ends.
func (s *benchSatellite) connect(b *testing.B, version string, opts *mcp.ClientOptions) *mcp.ClientSession {
	b.Helper()
	client := mcp.NewClient(&mcp.Implementation{Name: "bench-client", Version: "1"}, opts)
	cs, err := client.Connect(b.Context(), &mcp.StreamableClientTransport{Endpoint: s.endpoint, HTTPClient: benchHTTPClient},
		&mcp.ClientSessionOptions{ProtocolVersion: version})
	if err != nil {
		b.Fatalf("connect to the endpoint: %v", err)
	}
	b.Cleanup(func() { cs.Close() })
	return cs
}

// connectStdio starts command as its own process and opens a Go SDK client session to it over stdio.
func connectStdio(b *testing.B, command string, args ...string) *mcp.ClientSession {
	b.Helper()
	return connectStdioWith(b, "", nil, command, args...)
}

// connectStdioWith is connectStdio at a protocol version (empty: the SDK's newest) and with client options.
func connectStdioWith(b *testing.B, version string, opts *mcp.ClientOptions, command string, args ...string) *mcp.ClientSession {
	b.Helper()
	client := mcp.NewClient(&mcp.Implementation{Name: "bench-direct", Version: "1"}, opts)
	cmd := exec.Command(command, args...)
	cs, err := client.Connect(b.Context(), &mcp.CommandTransport{Command: cmd}, &mcp.ClientSessionOptions{ProtocolVersion: version})
	if err != nil {
		b.Fatalf("connect to %s over stdio: %v", command, err)
	}
	b.Cleanup(func() {
		// Close would wait up to 5s for server-everything to exit on its own; it does not hurry.
		_ = cmd.Process.Kill()
		_ = cs.Close()
	})
	return cs
}

// echo calls tool with a short message and checks the answer.
func echo(ctx context.Context, cs *mcp.ClientSession, tool string) error {
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: map[string]any{"message": "hello"}})
	if err != nil {
		return err
	}
	if res.IsError || len(res.Content) == 0 {
		return fmt.Errorf("%s answered %+v", tool, res)
	}
	return nil
}

// buildToolServer builds testdata/toolserver, a Go MCP server with 20 tools, once per benchmark.
func buildToolServer(b testing.TB) string {
	b.Helper()
	return goBuild(b, "toolserver", "./testdata/toolserver")
}

// buildConformanceServer builds the go-sdk's conformance server at the version in go.mod.
func buildConformanceServer(b testing.TB) string {
	b.Helper()
	return goBuild(b, "everything-server", "github.com/modelcontextprotocol/go-sdk/conformance/everything-server")
}

// goBuild builds the Go package pkg into a binary called name and returns its path.
func goBuild(b testing.TB, name, pkg string) string {
	b.Helper()
	bin := filepath.Join(b.TempDir(), name)
	if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
		b.Fatalf("build %s: %v\n%s", pkg, err, out)
	}
	return bin
}

// quantile returns the q-quantile of sorted samples (nearest rank).
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
func millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// window is the outcome of a throughput run: calls per second, and the CPU time the benchmark's own
// process (satellite and clients together) and the server process used meanwhile, per second of
// wall time.
type window struct {
	callsPerSecond float64
	selfCPU        float64 // cores busy in this process
	serverCPU      float64 // cores busy in the server process
	machineCPU     float64 // cores busy on the whole machine, other work included
}

// cpuPerCall is the CPU time one call cost this process and the server together: a figure that holds
// when other work shares the machine, unlike calls per second.
func (w window) cpuPerCall() time.Duration {
	if w.callsPerSecond == 0 {
		return 0
	}
	return time.Duration((w.selfCPU + w.serverCPU) / w.callsPerSecond * float64(time.Second))
}

// throughput calls tool through every session concurrently, one goroutine each, for d.
func throughput(b *testing.B, sessions []*mcp.ClientSession, tool string, d time.Duration, serverPid int) window {
	b.Helper()
	var calls atomic.Int64
	var failed atomic.Value
	self0, server0 := selfCPU(), cpuTime(serverPid)
	busy0, total0 := machineTicks()
	start := time.Now()
	end := start.Add(d)
	var wg sync.WaitGroup
	for _, cs := range sessions {
		wg.Go(func() {
			for time.Now().Before(end) {
				if err := echo(b.Context(), cs, tool); err != nil {
					failed.CompareAndSwap(nil, err)
					return
				}
				calls.Add(1)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err, _ := failed.Load().(error); err != nil {
		b.Fatalf("call during the throughput window: %v", err)
	}
	busy1, total1 := machineTicks()
	var machine float64
	if total1 > total0 {
		machine = float64(busy1-busy0) / float64(total1-total0) * float64(runtime.NumCPU())
	}
	return window{
		machineCPU:     machine,
		callsPerSecond: float64(calls.Load()) / elapsed.Seconds(),
		selfCPU:        float64(selfCPU()-self0) / float64(elapsed),
		serverCPU:      float64(cpuTime(serverPid)-server0) / float64(elapsed),
	}
}

// buildLoadGen builds testdata/mcpload, the load generator that runs endpoint clients in a process of
// their own.
func buildLoadGen(b testing.TB) string {
	b.Helper()
	return goBuild(b, "mcpload", "./testdata/mcpload")
}

// loadResult is what mcpload reports of its window.
type loadResult struct {
	Calls   int64         `json:"calls"`
	Elapsed time.Duration `json:"elapsed"`
	CPU     time.Duration `json:"cpu"`
	Error   string        `json:"error,omitempty"`
}

// externalThroughput calls tool through the endpoint from sessions client sessions of protocol version
// in a separate process (mcpload) for d. selfCPU is then the satellite's alone, without its clients',
// which clientCPU gives apart.
func (s *benchSatellite) externalThroughput(b *testing.B, loadgen, version, tool string, sessions int, d time.Duration,
	serverPid int) (w window, clientCPU float64) {
	b.Helper()
	cmd := exec.CommandContext(b.Context(), loadgen, "-url", s.endpoint, "-token", benchToken, "-version", version,
		"-sessions", strconv.Itoa(sessions), "-duration", d.String(), "-tool", tool)
	cmd.Stderr = b.Output()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer cmd.Wait() //nolint:errcheck // the result line says how it went
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() || lines.Text() != "ready" {
		b.Fatalf("load generator did not get ready: %q %v", lines.Text(), lines.Err())
	}
	self0, server0 := selfCPU(), cpuTime(serverPid)
	busy0, total0 := machineTicks()
	start := time.Now()
	if _, err := io.WriteString(stdin, "go\n"); err != nil {
		b.Fatal(err)
	}
	if !lines.Scan() {
		b.Fatalf("load generator ended without a result: %v", lines.Err())
	}
	elapsed := time.Since(start)
	self1, server1 := selfCPU(), cpuTime(serverPid)
	busy1, total1 := machineTicks()
	var r loadResult
	if err := json.Unmarshal(lines.Bytes(), &r); err != nil {
		b.Fatalf("load generator result %q: %v", lines.Text(), err)
	}
	if r.Error != "" {
		b.Fatalf("call during the throughput window: %s", r.Error)
	}
	if total1 > total0 {
		w.machineCPU = float64(busy1-busy0) / float64(total1-total0) * float64(runtime.NumCPU())
	}
	w.callsPerSecond = float64(r.Calls) / elapsed.Seconds()
	w.selfCPU = float64(self1-self0) / float64(elapsed)
	w.serverCPU = float64(server1-server0) / float64(elapsed)
	return w, float64(r.CPU) / float64(elapsed)
}

// selfCPU is the user and system CPU time this process has used, from getrusage.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuTime returns the user and system CPU time process pid has used, from /proc; zero where there is
// no /proc. It assumes the usual 100 clock ticks per second.
func cpuTime(pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The fields after the command name, which is in parentheses and may hold spaces: state is the
	// first, utime and stime the 12th and 13th.
	fields := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
	if len(fields) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// machineTicks returns the busy and total CPU ticks of the whole machine from /proc/stat; zeros where there
// is no /proc.
func machineTicks() (busy, total int64) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := bytes.Cut(data, []byte("\n"))
	fields := strings.Fields(string(line))
	for i, f := range fields[1:] {
		n, _ := strconv.ParseInt(f, 10, 64)
		total += n
		if i != 3 && i != 4 { // idle and iowait
			busy += n
		}
	}
	return busy, total
}

// BenchmarkEndpointEcho measures what the team endpoint adds to a tools/call: server-everything's echo
// tool called through the gateway (loopback HTTP, Streamable HTTP, one reused session, bearer token)
// against the same call sent straight to a stdio server, sequentially, then the CPU time a call costs
// and the calls per second that concurrent endpoint clients get through one satellite.
//
// "runtime session" is the runtime's own session to the very process the endpoint forwards to, so
// endpoint − runtime session is the endpoint's share alone; "own stdio" is a separate Go SDK client
// over CommandTransport to a second server-everything process, the baseline an MCP client would have
// running the server itself; "stateless era" is the endpoint again, spoken in the 2026-07-28 protocol,
// which has no session and so sets up a server session for every request. The four are called in turn,
// so machine noise hits them alike.
//
// CPU per call is what holds when other work shares the machine: the CPU time (rusage) of the satellite
// and of the server process over a throughput window, divided by the calls made. Through the endpoint
// the clients run in a process of their own (testdata/mcpload), so the satellite's figure is its own;
// on the runtime session the calling goroutines are part of the call, as the runtime's session is part
// of every endpoint call. The ratio endpoint / runtime session, for each era, is the gateway's cost
// relative to the call itself (targets: at most 2 in the session era, 2.5 in the stateless era). An
// in-process window, clients and satellite in one process as the first round measured it, is kept
// for comparison.
func BenchmarkEndpointEcho(b *testing.B) {
	const (
		warmup     = 200
		calls      = 2000
		clients    = 16
		tputWindow = 10 * time.Second
		toolName   = "everything__echo"
	)
	loadgen := buildLoadGen(b)
	s := startSatellite(b)
	command, args := mcptest.Everything(b)
	in := s.instance("everything", command, args...)
	s.apply(b, in)
	s.waitOnline(b, in.GetId())

	endpoint := s.connect(b, sessionEra, nil)
	stateless := s.connect(b, statelessEra, nil)
	runtimeSession, err := s.rt.Session(b.Context(), in.GetId())
	if err != nil {
		b.Fatal(err)
	}
	ownStdio := connectStdio(b, command, args...)
	paths := []struct {
		name string
		cs   *mcp.ClientSession
		tool string
	}{
		{"endpoint, session era (HTTP → gateway → stdio)", endpoint, toolName},
		{"runtime session (same process, stdio)", runtimeSession, "echo"},
		{"endpoint, stateless era (2026-07-28)", stateless, toolName},
		{"own stdio (CommandTransport, 2nd process)", ownStdio, "echo"},
	}
	sessions := []*mcp.ClientSession{endpoint}
	for len(sessions) < clients {
		sessions = append(sessions, s.connect(b, sessionEra, nil))
	}
	// The same concurrency on the runtime's shared session: what the stdio server itself sustains.
	direct := slices.Repeat([]*mcp.ClientSession{runtimeSession}, clients)
	ctx := b.Context()
	var samples [4][]time.Duration
	var tputInProc, tputDirect, tputSession, tputStateless window
	var clientSession, clientStateless float64
	info, _ := s.rt.Instance(in.GetId())
	for b.Loop() {
		for range warmup {
			for _, p := range paths {
				if err := echo(ctx, p.cs, p.tool); err != nil {
					b.Fatalf("%s: %v", p.name, err)
				}
			}
		}
		for i := range samples {
			samples[i] = make([]time.Duration, 0, calls)
		}
		for n := range calls {
			for k := range paths {
				i := (n + k) % len(paths) // rotate the order
				start := time.Now()
				if err := echo(ctx, paths[i].cs, paths[i].tool); err != nil {
					b.Fatalf("%s: %v", paths[i].name, err)
				}
				samples[i] = append(samples[i], time.Since(start))
			}
		}
		tputDirect = throughput(b, direct, "echo", tputWindow, info.Pid)
		tputSession, clientSession = s.externalThroughput(b, loadgen, sessionEra, toolName, clients, tputWindow, info.Pid)
		tputStateless, clientStateless = s.externalThroughput(b, loadgen, statelessEra, toolName, clients, tputWindow, info.Pid)
		tputInProc = throughput(b, sessions, toolName, tputWindow, info.Pid)
	}

	var p50, p99 [4]time.Duration
	b.Logf("%-46s %10s %10s %10s", "echo tools/call, "+fmt.Sprint(calls)+" sequential", "p50", "p99", "mean")
	for i, p := range paths {
		slices.Sort(samples[i])
		var sum time.Duration
		for _, d := range samples[i] {
			sum += d
		}
		p50[i], p99[i] = quantile(samples[i], 0.50), quantile(samples[i], 0.99)
		b.Logf("%-46s %10v %10v %10v", p.name, p50[i].Round(time.Microsecond), p99[i].Round(time.Microsecond),
			(sum / time.Duration(len(samples[i]))).Round(time.Microsecond))
	}
	added, addedStateless := p50[0]-p50[1], p50[2]-p50[1]
	b.Logf("added by the endpoint at p50 vs the runtime session: %v session era (target ≤ 250µs), %v stateless era; "+
		"%v vs own stdio", added.Round(time.Microsecond), addedStateless.Round(time.Microsecond), (p50[0] - p50[3]).Round(time.Microsecond))
	b.Logf("throughput, %d concurrent clients for %v each:", clients, tputWindow)
	b.Logf("%-50s %9s %12s %12s %12s %12s %10s", "", "calls/s", "Go proc", "server", "clients", "machine", "CPU/call")
	ratio := func(w window) float64 { return float64(w.cpuPerCall()) / float64(tputDirect.cpuPerCall()) }
	for _, w := range []struct {
		name    string
		w       window
		clients string
	}{
		{"runtime session alone, shared (the call itself)", tputDirect, "(in Go proc)"},
		{"endpoint, session era, clients in mcpload", tputSession, fmt.Sprintf("%.2f", clientSession)},
		{"endpoint, stateless era, clients in mcpload", tputStateless, fmt.Sprintf("%.2f", clientStateless)},
		{"endpoint, session era, clients in Go proc", tputInProc, "(in Go proc)"},
	} {
		b.Logf("%-50s %9.0f %12.2f %12.2f %12s %12.2f %10v", w.name, w.w.callsPerSecond, w.w.selfCPU, w.w.serverCPU,
			w.clients, w.w.machineCPU, w.w.cpuPerCall().Round(time.Microsecond))
	}
	b.Logf("(cores busy; Go proc = the benchmark process: the satellite, and the clients where noted; server = the "+
		"server-everything process; machine = all %d CPUs, other work included; CPU/call = (Go proc + server) / calls)",
		runtime.NumCPU())
	b.Logf("endpoint CPU per call / runtime session's: %.2f session era (target ≤ 2), %.2f stateless era (target ≤ 2.5), "+
		"%.2f session era with the clients in process", ratio(tputSession), ratio(tputStateless), ratio(tputInProc))

	b.ReportMetric(micros(p50[0]), "endpoint-p50-µs")
	b.ReportMetric(micros(p99[0]), "endpoint-p99-µs")
	b.ReportMetric(micros(p50[1]), "direct-p50-µs")
	b.ReportMetric(micros(p99[1]), "direct-p99-µs")
	b.ReportMetric(micros(p50[2]), "stateless-p50-µs")
	b.ReportMetric(micros(p50[3]), "ownstdio-p50-µs")
	b.ReportMetric(micros(p99[3]), "ownstdio-p99-µs")
	b.ReportMetric(micros(added), "added-p50-µs")
	b.ReportMetric(micros(addedStateless), "stateless-added-p50-µs")
	b.ReportMetric(tputSession.callsPerSecond, "endpoint-calls/s")
	b.ReportMetric(tputStateless.callsPerSecond, "stateless-calls/s")
	b.ReportMetric(tputDirect.callsPerSecond, "direct-calls/s")
	b.ReportMetric(micros(tputSession.cpuPerCall()), "endpoint-cpu-µs/call")
	b.ReportMetric(micros(tputStateless.cpuPerCall()), "stateless-cpu-µs/call")
	b.ReportMetric(micros(tputDirect.cpuPerCall()), "direct-cpu-µs/call")
	b.ReportMetric(micros(tputInProc.cpuPerCall()), "inproc-cpu-µs/call")
	b.ReportMetric(ratio(tputSession), "cpu-ratio-session")
	b.ReportMetric(ratio(tputStateless), "cpu-ratio-stateless")
	b.ReportMetric(ratio(tputInProc), "cpu-ratio-inproc")
	b.ReportMetric(tputSession.machineCPU, "machine-busy-cores")
}

// BenchmarkToolsList measures tools/list through the endpoint for a user with 20 instances of a Go MCP
// server with 20 tools each (400 tools), once all are discovered; a listing is answered from the
// gateway's aggregate without touching the servers. Three clients, called in turn:
//   - raw HTTP: a POST of the JSON-RPC request on a session-era session, reading the whole answer. This is
//     the satellite's own time (HTTP on loopback, token check, listing, JSON encoding), and the figure to
//     hold against the target;
//   - Go SDK client, session era and stateless era: what an application using the SDK sees; it includes
//     the client decoding and validating the 400 tools (a large share of the time, see the profile).
func BenchmarkToolsList(b *testing.B) {
	const (
		instances = 20
		tools     = 20
		total     = instances * tools
		warmup    = 50
		lists     = 1000
	)
	bin := buildToolServer(b)
	s := startSatellite(b)
	var ids []string
	var specs []*satellitev1.Instance
	for i := range instances {
		in := s.instance(fmt.Sprintf("tools%02d", i), bin)
		specs = append(specs, in)
		ids = append(ids, in.GetId())
	}
	s.apply(b, specs...)
	s.waitOnline(b, ids...)

	changed := make(chan struct{}, 1)
	cs := s.connect(b, sessionEra, &mcp.ClientOptions{ToolListChangedHandler: func(context.Context, *mcp.ToolListChangedRequest) {
		select {
		case changed <- struct{}{}:
		default:
		}
	}})
	stateless := s.connect(b, statelessEra, nil)
	ctx := b.Context()
	sdkList := func(cs *mcp.ClientSession) func() int {
		return func() int {
			n := 0
			for _, err := range cs.Tools(ctx, nil) {
				if err != nil {
					b.Fatalf("tools/list: %v", err)
				}
				n++
			}
			return n
		}
	}
	// The gateway aggregates asynchronously; wait for the whole catalogue.
	deadline := time.After(benchWait)
	for n := sdkList(cs)(); n != total; n = sdkList(cs)() {
		select {
		case <-changed:
		case <-deadline:
			b.Fatalf("the endpoint lists %d tools, want %d", n, total)
		}
	}
	var rawID atomic.Int64
	rawList := func() int {
		body := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/list","params":{}}`, 1_000_000+rawID.Add(1))
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.endpoint, strings.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Mcp-Session-Id", cs.ID())
		req.Header.Set("Mcp-Protocol-Version", sessionEra)
		resp, err := benchHTTPClient.Do(req)
		if err != nil {
			b.Fatalf("tools/list over HTTP: %v", err)
		}
		data, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("tools/list over HTTP: status %d, %v: %.200s", resp.StatusCode, err, data)
		}
		return bytes.Count(data, []byte(`"name":"tools`))
	}
	clients := []struct {
		name string
		list func() int
	}{
		{"raw HTTP, session era (satellite's time)", rawList},
		{"Go SDK client, session era", sdkList(cs)},
		{"Go SDK client, stateless era", sdkList(stateless)},
	}
	samples := make([][]time.Duration, len(clients))
	for b.Loop() {
		for range warmup {
			for _, c := range clients {
				c.list()
			}
		}
		for i := range samples {
			samples[i] = make([]time.Duration, 0, lists)
		}
		for n := range lists {
			for k := range clients {
				i := (n + k) % len(clients)
				start := time.Now()
				if got := clients[i].list(); got != total {
					b.Fatalf("%s listed %d tools, want %d", clients[i].name, got, total)
				}
				samples[i] = append(samples[i], time.Since(start))
			}
		}
	}
	b.Logf("%-44s %10s %10s", fmt.Sprintf("tools/list, %d×%d tools, %d sequential", instances, tools, lists), "p50", "p99")
	for i, c := range clients {
		slices.Sort(samples[i])
		b.Logf("%-44s %10v %10v", c.name, quantile(samples[i], 0.5).Round(time.Microsecond),
			quantile(samples[i], 0.99).Round(time.Microsecond))
	}
	b.Logf("target: p50 < 5ms")
	b.ReportMetric(millis(quantile(samples[0], 0.5)), "raw-p50-ms")
	b.ReportMetric(millis(quantile(samples[0], 0.99)), "raw-p99-ms")
	b.ReportMetric(millis(quantile(samples[1], 0.5)), "sdk-p50-ms")
	b.ReportMetric(millis(quantile(samples[1], 0.99)), "sdk-p99-ms")
	b.ReportMetric(millis(quantile(samples[2], 0.5)), "sdk-stateless-p50-ms")
}

// BenchmarkSpawnToOnline measures how long a local stdio server (server-everything under node, already
// installed) takes from entering the desired configuration to online: process start, initialize and
// discovery of tools, resources and prompts. Each spawn is a new instance; the previous one is removed
// first. For reference it also times a bare Go SDK client starting the same server over CommandTransport
// up to a completed initialize and tools/list.
func BenchmarkSpawnToOnline(b *testing.B) {
	const spawns = 10
	s := startSatellite(b)
	command, args := mcptest.Everything(b)
	var spawn, bare []time.Duration
	for b.Loop() {
		spawn, bare = spawn[:0], bare[:0]
		for range spawns {
			in := s.instance("everything", command, args...)
			start := time.Now()
			s.apply(b, in)
			s.waitOnline(b, in.GetId())
			spawn = append(spawn, time.Since(start))
			s.apply(b)
			s.waitGone(b, in.GetId())
		}
		for range spawns {
			start := time.Now()
			client := mcp.NewClient(&mcp.Implementation{Name: "bench-bare", Version: "1"}, nil)
			cmd := exec.Command(command, args...)
			cs, err := client.Connect(b.Context(), &mcp.CommandTransport{Command: cmd}, nil)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := cs.ListTools(b.Context(), nil); err != nil {
				b.Fatal(err)
			}
			bare = append(bare, time.Since(start))
			// Close would wait up to 5s for server-everything to exit on its own; it does not hurry.
			_ = cmd.Process.Kill()
			_ = cs.Close()
		}
	}
	slices.Sort(spawn)
	slices.Sort(bare)
	b.Logf("%-52s %10s %10s %10s", fmt.Sprintf("%d starts of server-everything (node, stdio)", spawns), "p50", "min", "max")
	b.Logf("%-52s %10v %10v %10v   (target p50 < 1s)", "runtime: desired → online (init + discovery)",
		quantile(spawn, 0.5).Round(time.Millisecond), spawn[0].Round(time.Millisecond), spawn[len(spawn)-1].Round(time.Millisecond))
	b.Logf("%-52s %10v %10v %10v", "bare SDK client: start → initialize + tools/list",
		quantile(bare, 0.5).Round(time.Millisecond), bare[0].Round(time.Millisecond), bare[len(bare)-1].Round(time.Millisecond))
	b.ReportMetric(millis(quantile(spawn, 0.5)), "spawn-p50-ms")
	b.ReportMetric(millis(spawn[len(spawn)-1]), "spawn-max-ms")
	b.ReportMetric(millis(quantile(bare, 0.5)), "bare-p50-ms")
}

// BenchmarkIdleInstanceMemory measures the satellite's own memory per idle online instance (dormancy
// off), the child process excluded: the Go heap in use and goroutine stacks after a forced GC, before and
// after 20 instances come online, divided by 20. It covers the runtime's per-instance state, its client
// session and pipes' goroutines, and the discovered catalogue, for a small Go server (20 tools) and for
// server-everything (its full catalogue of tools, resources and prompts). No endpoint client is
// connected, so the gateway's per-user aggregate is not included.
func BenchmarkIdleInstanceMemory(b *testing.B) {
	const n = 20
	bin := buildToolServer(b)
	command, args := mcptest.Everything(b)
	servers := []struct {
		name    string
		command string
		args    []string
	}{
		{"toolserver", bin, nil},
		{"everything", command, args},
	}
	for _, srv := range servers {
		b.Run(srv.name, func(b *testing.B) {
			s := startSatellite(b)
			// One instance up and down first, so that lazily built state (schema caches, pools) is
			// not charged to the instances measured.
			warm := s.instance(srv.name, srv.command, srv.args...)
			s.apply(b, warm)
			s.waitOnline(b, warm.GetId())
			s.apply(b)
			s.waitGone(b, warm.GetId())

			var heap, stack, goroutines float64
			for b.Loop() {
				before, gBefore := memNow()
				var specs []*satellitev1.Instance
				var ids []string
				for i := range n {
					in := s.instance(fmt.Sprintf("%s%02d", srv.name, i), srv.command, srv.args...)
					specs = append(specs, in)
					ids = append(ids, in.GetId())
				}
				s.apply(b, specs...)
				s.waitOnline(b, ids...)
				// Servers log and notify as they start; let that traffic drain so that its buffers are not
				// counted as idle state. A pause, not a synchronization: nothing waits on it for correctness.
				time.Sleep(time.Second)
				after, gAfter := memNow()
				heap = float64(int64(after.HeapInuse)-int64(before.HeapInuse)) / n
				stack = float64(int64(after.StackInuse)-int64(before.StackInuse)) / n
				goroutines = float64(gAfter-gBefore) / n

				b.StopTimer()
				s.apply(b)
				s.waitGone(b, ids...)
				b.StartTimer()
			}
			b.Logf("%-12s per idle instance (N=%d): heap in use %.1f KiB, goroutine stacks %.1f KiB, total %.1f KiB, %.1f goroutines",
				srv.name, n, heap/1024, stack/1024, (heap+stack)/1024, goroutines)
			b.ReportMetric(heap/1024, "heap-KiB/instance")
			b.ReportMetric(stack/1024, "stack-KiB/instance")
			b.ReportMetric((heap+stack)/1024, "total-KiB/instance")
			b.ReportMetric(goroutines, "goroutines/instance")
		})
	}
}

// memNow returns memory statistics after a full collection, and the number of goroutines.
func memNow() (runtime.MemStats, int) {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m, runtime.NumGoroutine()
}
