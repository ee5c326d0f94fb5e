package gateway

import (
	"log/slog"
	"net/http"
	"runtime"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
)

// TestIdleSessionsClosedAndFreed opens sessions that are never used again, on a fake clock with a
// configured idle timeout: each stays open until the timeout, is closed by it, and once the user's server
// has gone too, the gateway holds nothing and the heap is back where it was after the same number of
// sessions came and went before.
//
// Not parallel: it measures the process's heap.
func TestIdleSessionsClosedAndFreed(t *testing.T) {
	const (
		sessions    = 200
		sessionIdle = 5 * time.Minute
		userIdle    = time.Minute
	)
	synctest.Test(t, func(t *testing.T) {
		intro := &fakeIntrospector{tokens: make(map[string]*satellitev1.IntrospectTokenResponse)}
		intro.set("ann", &satellitev1.IntrospectTokenResponse{
			Active: true, TeamId: teamAcme, TeamSlug: "acme", UserId: userAnn, ClientId: "client-1",
			Audience: "http://gateway.test/teams/acme/mcp", Scopes: []string{ScopeRead, ScopeExecute},
			ExpiresAt: timestamppb.New(time.Now().Add(24 * time.Hour)),
		})
		gw, err := New(slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})), Config{
			PublicURL:          "http://gateway.test",
			Backend:            staticBackend{},
			Introspector:       intro,
			MaxSessionsPerUser: sessions,
			SessionIdleTimeout: sessionIdle,
			UserIdleTimeout:    userIdle,
		})
		if err != nil {
			t.Fatal(err)
		}
		heap := func() int64 {
			synctest.Wait()
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			return int64(ms.HeapAlloc)
		}
		open := func(n int) {
			for range n {
				init := serveRecorded(t, gw, http.MethodPost, "ann", initializeBody, nil)
				id := init.Header().Get("Mcp-Session-Id")
				if init.Code != http.StatusOK || id == "" {
					t.Fatalf("initialize: status %d, session %q", init.Code, id)
				}
				h := map[string]string{"Mcp-Session-Id": id, "Mcp-Protocol-Version": sessionVersion}
				if rec := serveRecorded(t, gw, http.MethodPost, "ann", `{"jsonrpc":"2.0","method":"notifications/initialized"}`, h); rec.Code != http.StatusAccepted {
					t.Fatalf("initialized: status %d", rec.Code)
				}
			}
		}
		// As many sessions opened and left to expire first, so that what is built once, and the runtime's
		// descriptors of the goroutines that served them (it keeps them for reuse), are in the baseline.
		open(sessions)
		time.Sleep(sessionIdle + userIdle + time.Second)
		base := heap()

		open(sessions)
		grown := heap() - base
		if n, _ := gw.slots.counts(userAnn); n != sessions {
			t.Fatalf("%d sessions held, want %d", n, sessions)
		}
		t.Logf("%d idle sessions: heap %+d KiB, %.1f KiB each", sessions, grown>>10, float64(grown)/sessions/1024)

		time.Sleep(sessionIdle - time.Second)
		synctest.Wait()
		if n, _ := gw.slots.counts(userAnn); n != sessions {
			t.Errorf("just before the idle timeout: %d sessions held, want %d", n, sessions)
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if n, total := gw.slots.counts(userAnn); n != 0 || total != 0 {
			t.Errorf("after the idle timeout: %d sessions held, %d in all; want none", n, total)
		}
		time.Sleep(userIdle + time.Second)
		if h := gw.held(); h != (held{}) {
			t.Errorf("after the user's idle period the gateway holds %+v", h)
		}
		// What the sessions took is given back: a leak of even 1 KiB per session would show.
		if left := heap() - base; left > sessions<<10 {
			t.Errorf("%d KiB of the %d KiB the sessions took is still in use after they closed", left>>10, grown>>10)
		}
		runtime.KeepAlive(gw)
	})
}
