package server_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/durationpb"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/gen/orrery/satellite/v1/satellitev1connect"
	"github.com/orrery/orrery/services/controlplane/internal/apikey"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// BenchmarkCommandDispatch measures command creation (an AdminService.EnqueueCommand call) to receipt by a
// satellite long-polling the other replica, over 1,000 commands one after another.
func BenchmarkCommandDispatch(b *testing.B) {
	const commands = 1000
	bundle := setupBench(b, 2)
	sat := bundle.benchSatellites(b, 1)[0]
	poller := bundle.connect(1, sat.id, sat.apiKey)

	received := make(chan string, 16)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			resp, err := poller.client.PollCommands(b.Context(), connect.NewRequest(&satellitev1.PollCommandsRequest{
				Wait: durationpb.New(25 * time.Second),
			}))
			if err != nil {
				return
			}
			for _, c := range resp.Msg.Commands {
				received <- c.Id
				go poller.client.ReportCommandResult(b.Context(), connect.NewRequest(&satellitev1.ReportCommandResultRequest{
					CommandId: c.Id, Result: satellitev1.CommandResult_COMMAND_RESULT_COMPLETED,
				}))
			}
		}
	}()
	defer close(done)

	latencies := make([]time.Duration, 0, commands)
	for b.Loop() {
		latencies = latencies[:0]
		for range commands {
			time.Sleep(2 * time.Millisecond) // let the poller return to its wait
			start := time.Now()
			cmd := bundle.enqueue(b, 0, sat.id, configure, immediate, 0)
			for id := range received {
				if id == cmd.Command.Id {
					break
				}
			}
			latencies = append(latencies, time.Since(start))
		}
	}
	slices.Sort(latencies)
	p50, p99 := latencies[len(latencies)/2], latencies[len(latencies)*99/100]
	b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(latencies[len(latencies)-1].Microseconds())/1000, "max-ms")
	b.Logf("dispatch latency over %d commands: p50 %v, p99 %v, max %v", commands, p50, p99, latencies[len(latencies)-1])
}

// BenchmarkHeartbeatPollThroughput measures authenticated Heartbeat + PollCommands requests per second from
// 1,000 simulated satellites, and counts the Argon2 runs in the measured steady state (want 0).
func BenchmarkHeartbeatPollThroughput(b *testing.B) {
	const (
		satellites = 1000
		workers    = 64
		duration   = 10 * time.Second
	)
	bundle := setupBench(b, 1)
	sats := bundle.benchSatellites(b, satellites)
	argon2Before, heldBefore := bundle.replicas[0].srv.Argon2Runs(), bundle.replicas[0].srv.HeldHeartbeats()
	if path := os.Getenv("ORRERY_BENCH_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			b.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}

	for b.Loop() {
		var requests, failures atomic.Int64
		var next atomic.Int64
		deadline := time.Now().Add(duration)
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for time.Now().Before(deadline) {
					s := sats[int(next.Add(1))%len(sats)]
					_, err := s.client.Heartbeat(b.Context(), connect.NewRequest(&satellitev1.HeartbeatRequest{
						System: &satellitev1.SystemMetrics{CpuPercent: 3, MemoryTotalBytes: 1 << 30},
					}))
					if err != nil {
						failures.Add(1)
					}
					// Held at most a millisecond, so it is served as a satellite's held poll is.
					_, err = s.client.PollCommands(b.Context(), connect.NewRequest(&satellitev1.PollCommandsRequest{Wait: durationpb.New(time.Millisecond)}))
					if err != nil {
						failures.Add(1)
					}
					requests.Add(2)
				}
			})
		}
		wg.Wait()
		rate := float64(requests.Load()) / duration.Seconds()
		argon2 := bundle.replicas[0].srv.Argon2Runs() - argon2Before
		b.ReportMetric(rate, "req/s")
		b.ReportMetric(float64(failures.Load()), "failures")
		b.ReportMetric(float64(argon2), "argon2-runs")
		b.ReportMetric(float64(bundle.replicas[0].srv.HeldHeartbeats()-heldBefore)/float64(requests.Load()/2), "held-heartbeat-share")
		b.Logf("%d satellites, %d workers: %.0f requests/s, %d failures, %d Argon2 runs in steady state",
			satellites, workers, rate, failures.Load(), argon2)
	}
}

func setupBench(b *testing.B, replicas int) *testBundle {
	b.Helper()
	return setup(b, setupOpts{replicas: replicas})
}

// benchSatellites registers n active satellites straight through the store. They share one secret and one
// stored hash, so one Argon2 hash serves them all, and the key cache, keyed by stored hash, verifies it once
// for all of them; each still authenticates by its own key id and row. Each sends a first heartbeat before
// measuring.
func (bundle *testBundle) benchSatellites(b *testing.B, n int) []*satellite {
	b.Helper()
	ctx := b.Context()
	shared, err := apikey.New()
	if err != nil {
		b.Fatal(err)
	}
	hash, err := apikey.Hash(ctx, shared)
	if err != nil {
		b.Fatal(err)
	}
	// Satellites reach a production control plane over TLS with HTTP/2; h2c is its loopback equivalent.
	protocols := new(http.Protocols)
	protocols.SetUnencryptedHTTP2(true)
	client := &http.Client{Transport: &http.Transport{Protocols: protocols}}
	sats := make([]*satellite, n)
	for i := range n {
		tok, err := bundle.store().CreateRegistrationToken(ctx, store.RegistrationToken{
			ID: uuid.New(), Name: "bench", Scope: store.ScopeGlobal, ExpiresAt: time.Now().Add(time.Hour),
		})
		if err != nil {
			b.Fatal(err)
		}
		key, _ := apikey.New()
		key.Secret = shared.Secret
		row, err := bundle.store().RegisterSatellite(ctx, tok.ID, store.NewSatellite{
			Name: fmt.Sprintf("bench-%04d", i), APIKeyID: key.ID,
			HashAPIKey: func(context.Context) (string, error) { return hash, nil },
		})
		if err != nil {
			b.Fatal(err)
		}
		sats[i] = &satellite{id: row.ID.String(), apiKey: key.String(), client: satellitev1connect.NewSatelliteServiceClient(
			client, bundle.replicas[0].url, connect.WithInterceptors(withBearer(key.String())))}
	}
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Go(func() {
			for j := i; j < n; j += 2 {
				if _, err := sats[j].client.Heartbeat(ctx, connect.NewRequest(&satellitev1.HeartbeatRequest{
					System: &satellitev1.SystemMetrics{},
				})); err != nil {
					b.Error(err)
				}
			}
		})
	}
	wg.Wait()
	return sats
}
