package server_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	"github.com/orrery/orrery/gen/orrery/api/v1/apiv1connect"
	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// percentiles reports the p50 and p99 of samples under the names prefix-p50-ms and prefix-p99-ms.
func percentiles(b *testing.B, prefix string, samples []time.Duration) (p50, p99 time.Duration) {
	slices.Sort(samples)
	p50, p99 = samples[len(samples)/2], samples[len(samples)*99/100]
	b.ReportMetric(float64(p50.Microseconds())/1000, prefix+"-p50-ms")
	b.ReportMetric(float64(p99.Microseconds())/1000, prefix+"-p99-ms")
	return p50, p99
}

// BenchmarkInstanceReads measures ListInstances and GetInstanceStatus latency with 50 users of one team
// calling at once, each as fast as answers come: 45 team users (who see their own instance) and 5 team
// admins (who see all 50), each instance with a status history and discovered tools.
func BenchmarkInstanceReads(b *testing.B) {
	const (
		users             = 50
		admins            = 5
		callsPerUser      = 40
		eventsPerInstance = 5
	)
	bundle := setupBench(b, 1)
	ctx := b.Context()
	f := seedTeam(b, bundle, "bench")
	st := bundle.store()
	members := []store.User{f.alice, f.bob}
	for i := len(members); i < users; i++ {
		u, err := st.CreateUser(ctx, fmt.Sprintf("bench-u%02d", i), fmt.Sprintf("u%02d@bench.test", i), "User")
		if err != nil {
			b.Fatal(err)
		}
		role := store.RoleTeamUser
		if i >= users-admins {
			role = store.RoleTeamAdmin
		}
		if err := st.AddMember(ctx, f.team.ID, u.ID, role); err != nil {
			b.Fatal(err)
		}
		members = append(members, u)
	}
	sat := bundle.activeSatellite(b, f.team.ID.String())
	var events []*satellitev1.Event
	for _, u := range members {
		for range eventsPerInstance {
			events = append(events, statusEvent(f, u, satellitev1.InstanceStatus_INSTANCE_STATUS_ONLINE))
		}
		events = append(events, &satellitev1.Event{
			Id: uuid.NewString(), OccurredAt: timestamppb.Now(), TeamId: f.team.ID.String(),
			InstallationId: f.installation.ID.String(), InstanceId: f.instanceID(u),
			Payload: &satellitev1.Event_ToolsDiscovered{ToolsDiscovered: &satellitev1.ToolsDiscovered{Tools: []*satellitev1.Tool{
				{Name: "read_file"}, {Name: "write_file"}, {Name: "list_dir"},
			}}},
		})
	}
	emit(b, sat, events...)
	clients := make([]apiv1connect.InstanceServiceClient, users)
	for i, u := range members {
		clients[i] = bundle.instanceClient(0, bundle.apiToken(b, u.ID))
	}
	team, installation := f.team.ID.String(), f.installation.ID.String()

	for b.Loop() {
		var (
			mu          sync.Mutex
			list, get   []time.Duration
			wg          sync.WaitGroup
			failures    int
			start       = make(chan struct{})
			measureCall = func(samples *[]time.Duration, call func() error) {
				t0 := time.Now()
				err := call()
				d := time.Since(t0)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					failures++
					return
				}
				*samples = append(*samples, d)
			}
		)
		for i, c := range clients {
			instanceID := f.instanceID(members[i])
			wg.Go(func() {
				<-start
				for range callsPerUser {
					measureCall(&list, func() error {
						_, err := c.ListInstances(ctx, connect.NewRequest(&apiv1.ListInstancesRequest{
							TeamId: team, InstallationId: installation,
						}))
						return err
					})
					measureCall(&get, func() error {
						_, err := c.GetInstanceStatus(ctx, connect.NewRequest(&apiv1.GetInstanceStatusRequest{
							TeamId: team, InstanceId: instanceID,
						}))
						return err
					})
				}
			})
		}
		began := time.Now()
		close(start)
		wg.Wait()
		elapsed := time.Since(began)
		if failures > 0 {
			b.Fatalf("%d calls failed", failures)
		}
		listP50, listP99 := percentiles(b, "list", list)
		getP50, getP99 := percentiles(b, "get", get)
		rate := float64(len(list)+len(get)) / elapsed.Seconds()
		b.ReportMetric(rate, "req/s")
		b.Logf("%d concurrent users, %d calls each: ListInstances p50 %v p99 %v; GetInstanceStatus p50 %v p99 %v; %.0f requests/s",
			users, 2*callsPerUser, listP50, listP99, getP50, getP99, rate)
	}
}

// BenchmarkStreamFanOut measures how long a server-log line takes from a satellite's EmitEvents call on one
// replica to 10 StreamServerLogs clients of the other replica, over 200 lines sent one after another. The
// line is stored (committed) between the call's start and its answer, so the two bounds are reported:
// from the call's start (emit-…) and from its answer (answered-…, 0 when a client had it before the answer).
func BenchmarkStreamFanOut(b *testing.B) {
	const (
		lines    = 200
		watchers = 10
	)
	bundle := setupBench(b, 2)
	f := seedTeam(b, bundle, "fanout")
	sat := bundle.activeSatellite(b, f.team.ID.String()) // emits through replica 0
	admin, err := bundle.store().CreateUser(b.Context(), "fanout-admin", "admin@fanout.test", "Admin")
	if err != nil {
		b.Fatal(err)
	}
	if err := bundle.store().AddMember(b.Context(), f.team.ID, admin.ID, store.RoleTeamAdmin); err != nil {
		b.Fatal(err)
	}
	token := bundle.apiToken(b, admin.ID)

	type receipt struct {
		message string
		at      time.Time
	}
	received := make(chan receipt, watchers*lines)
	ctx, cancel := context.WithCancel(b.Context())
	defer cancel()
	var ready, done sync.WaitGroup
	for range watchers {
		stream, err := bundle.instanceClient(1, token).StreamServerLogs(ctx, connect.NewRequest(&apiv1.StreamServerLogsRequest{
			TeamId: f.team.ID.String(), InstallationId: f.installation.ID.String(),
		}))
		if err != nil {
			b.Fatal(err)
		}
		ready.Add(1)
		done.Go(func() {
			defer stream.Close()
			// The first line, sent before measuring, tells that the stream is open on the server.
			first := true
			defer func() {
				if first {
					ready.Done()
				}
			}()
			for stream.Receive() {
				at := time.Now()
				for _, l := range stream.Msg().Lines {
					if first {
						ready.Done()
						first = false
						continue
					}
					received <- receipt{l.Message, at}
				}
			}
		})
	}
	emit(b, sat, logEvent(f, f.alice, "warm-up"))
	ready.Wait()

	for b.Loop() {
		fromCall := make([]time.Duration, 0, lines*watchers)
		fromAnswer := make([]time.Duration, 0, lines*watchers)
		for i := range lines {
			message := fmt.Sprintf("line %d", i)
			start := time.Now()
			emit(b, sat, logEvent(f, f.alice, message))
			answered := time.Now()
			for got := 0; got < watchers; {
				r := <-received
				if r.message != message {
					b.Fatalf("received %q while waiting for %q", r.message, message)
				}
				fromCall = append(fromCall, r.at.Sub(start))
				fromAnswer = append(fromAnswer, max(0, r.at.Sub(answered)))
				got++
			}
		}
		emitP50, emitP99 := percentiles(b, "emit", fromCall)
		answeredP50, answeredP99 := percentiles(b, "answered", fromAnswer)
		b.Logf("%d lines to %d watchers on the other replica: from EmitEvents call p50 %v p99 %v; from its answer p50 %v p99 %v",
			lines, watchers, emitP50, emitP99, answeredP50, answeredP99)
	}
	cancel()
	done.Wait()
}
