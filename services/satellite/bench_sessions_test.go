package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/timestamppb"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/services/satellite/internal/gateway"
)

// usersIntrospector answers for the tokens "user-N": each an active token of its own user in the
// benchmark's team.
type usersIntrospector struct {
	teamID, endpoint string
	users            sync.Map // token → user id
}

func (u *usersIntrospector) Introspect(_ context.Context, token string) (*satellitev1.IntrospectTokenResponse, error) {
	if !strings.HasPrefix(token, "user-") {
		return &satellitev1.IntrospectTokenResponse{}, nil
	}
	id, _ := u.users.LoadOrStore(token, uuid.NewString())
	return &satellitev1.IntrospectTokenResponse{
		Active: true, TeamId: u.teamID, TeamSlug: benchTeamSlug, UserId: id.(string), UserSlug: token,
		ClientId: "bench-client", Audience: u.endpoint,
		Scopes:    []string{gateway.ScopeRead, gateway.ScopeExecute},
		ExpiresAt: timestamppb.New(time.Now().Add(24 * time.Hour)),
	}, nil
}

// BenchmarkIdleSessions measures the satellite's memory per idle MCP session: 10,000 Streamable HTTP
// sessions of the session era on one team endpoint over loopback HTTP, 100 users with 100 sessions
// each, every one opened by initialize and notifications/initialized and then left idle, as clients
// that stay connected between uses leave them. The clients are plain HTTP requests that keep nothing
// but the session id, so the heap counted is the satellite's: the Go heap in use and goroutine stacks
// after a forced collection, before and after, divided by the sessions; the process's resident memory
// (VmRSS) likewise, once the runtime has returned what it freed. The users have
// no instances, so their aggregated servers are empty; that share (one server per user, 1/100 per
// session here) is in the figures.
//
// Then every session is left to the session idle timeout, set short here (the satellite's default is
// 30 minutes), and the users' servers to the user idle timeout: the benchmark waits until the
// satellite counts no open session and reports the heap left over the baseline, which is what the
// timeouts did not give back.
func BenchmarkIdleSessions(b *testing.B) {
	const (
		users        = 100
		perUser      = 100
		sessions     = users * perUser
		workers      = 8
		sessionIdle  = 90 * time.Second
		userIdle     = time.Second
		closeTimeout = 2 * time.Minute
	)
	registry := prometheus.NewRegistry()
	var intro *usersIntrospector
	s := startSatellite(b, func(c *gateway.Config) {
		intro = &usersIntrospector{teamID: uuid.NewString(), endpoint: c.Introspector.(memIntrospector).resp.GetAudience()}
		c.Introspector = intro
		c.MaxSessionsPerUser = perUser
		c.MaxSessionsPerTeam = sessions + 1 // and the warm-up session
		c.MaxSessions = sessions + 1
		c.SessionIdleTimeout = sessionIdle
		c.UserIdleTimeout = userIdle
		c.Metrics = registry
	})
	open := func() int {
		families, err := registry.Gather()
		if err != nil {
			b.Fatal(err)
		}
		for _, f := range families {
			if f.GetName() == "orrery_satellite_mcp_sessions_open" {
				return int(f.GetMetric()[0].GetGauge().GetValue())
			}
		}
		b.Fatal("no orrery_satellite_mcp_sessions_open metric")
		return 0
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConns: workers, MaxIdleConnsPerHost: workers}}
	post := func(ctx context.Context, token, session, body string) (string, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.endpoint, strings.NewReader(body))
		if err != nil {
			return "", err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		if session != "" {
			req.Header.Set("Mcp-Session-Id", session)
			req.Header.Set("Mcp-Protocol-Version", sessionEra)
		}
		resp, err := client.Do(req)
		if err != nil {
			return "", err
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 300 {
			return "", fmt.Errorf("status %d: %.200s", resp.StatusCode, data)
		}
		return resp.Header.Get("Mcp-Session-Id"), nil
	}
	initialize := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"` + sessionEra +
		`","capabilities":{},"clientInfo":{"name":"bench-idle","version":"1"}}}`
	initialized := `{"jsonrpc":"2.0","method":"notifications/initialized"}`

	// One user's session first, opened and closed, so that what is built once (codecs, pools, caches)
	// is not charged to the sessions measured.
	if id, err := post(b.Context(), "user-warm", "", initialize); err != nil || id == "" {
		b.Fatalf("warm-up initialize: %q %v", id, err)
	}

	var heap, stack, rss, goroutines, left, opened float64
	var openDuration, closeDuration time.Duration
	for b.Loop() {
		before, gBefore := memNow()
		rssBefore := residentBytes()
		start := time.Now()
		var next atomic.Int64
		var failed atomic.Value
		var wg sync.WaitGroup
		ids := make([]string, sessions) // what a client keeps: the ids, counted on the client's side
		for range workers {
			wg.Go(func() {
				for {
					i := int(next.Add(1)) - 1
					if i >= sessions {
						return
					}
					token := "user-" + strconv.Itoa(i%users)
					id, err := post(b.Context(), token, "", initialize)
					if err == nil {
						_, err = post(b.Context(), token, id, initialized)
					}
					if err != nil {
						failed.CompareAndSwap(nil, err)
						return
					}
					ids[i] = id
				}
			})
		}
		wg.Wait()
		openDuration = time.Since(start)
		if err, _ := failed.Load().(error); err != nil {
			b.Fatalf("opening a session: %v", err)
		}
		client.CloseIdleConnections()
		after, gAfter := memNow()
		rssAfter := residentBytes()
		opened = float64(open())
		heap = float64(int64(after.HeapInuse)-int64(before.HeapInuse)) / sessions
		stack = float64(int64(after.StackInuse)-int64(before.StackInuse)) / sessions
		goroutines = float64(gAfter-gBefore) / sessions
		rss = float64(rssAfter-rssBefore) / sessions
		if openDuration > sessionIdle {
			b.Fatalf("opening the sessions took %v, longer than their idle timeout %v: measure with a longer one", openDuration, sessionIdle)
		}

		// Nothing touches the sessions again: the idle timeouts close them and free the users' servers.
		start = time.Now()
		for open() > 0 {
			if time.Since(start) > closeTimeout {
				b.Fatalf("%d sessions still open %v after the last request; idle timeout %v", open(), closeTimeout, sessionIdle)
			}
			time.Sleep(100 * time.Millisecond) // a poll of a metric, not a synchronization
		}
		closeDuration = time.Since(start)
		time.Sleep(2 * userIdle)
		final, _ := memNow()
		left = float64(int64(final.HeapInuse)+int64(final.StackInuse)-int64(before.HeapInuse)-int64(before.StackInuse)) / sessions
		runtime.KeepAlive(ids)
	}
	b.Logf("%d idle sessions (%d users × %d), opened in %v by %d clients over loopback HTTP", sessions, users, perUser,
		openDuration.Round(time.Millisecond), workers)
	b.Logf("per session: heap in use %.1f KiB, goroutine stacks %.1f KiB, total %.1f KiB (target < 20 KiB), %.2f goroutines, "+
		"resident memory %.1f KiB", heap/1024, stack/1024, (heap+stack)/1024, goroutines, rss/1024)
	b.Logf("after the idle timeout (%v): all %d closed %v after the measurement; heap and stacks left over the baseline: %.2f KiB per session",
		sessionIdle, int(opened), closeDuration.Round(time.Millisecond), left/1024)
	b.ReportMetric(heap/1024, "heap-KiB/session")
	b.ReportMetric(stack/1024, "stack-KiB/session")
	b.ReportMetric((heap+stack)/1024, "total-KiB/session")
	b.ReportMetric(rss/1024, "rss-KiB/session")
	b.ReportMetric(goroutines, "goroutines/session")
	b.ReportMetric(left/1024, "left-KiB/session")
}

// residentBytes is the process's resident memory from /proc/self/status, or 0 where there is none, after
// the runtime has returned what it freed to the operating system: without that the figure holds the
// garbage of opening the sessions (up to the heap floor) until the scavenger gets to it.
func residentBytes() int64 {
	debug.FreeOSMemory()
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range bytes.Lines(data) {
		if rest, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
			kb, _ := strconv.ParseInt(string(bytes.TrimSuffix(bytes.TrimSpace(rest), []byte(" kB"))), 10, 64)
			return kb << 10
		}
	}
	return 0
}
