package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"testing"
	"testing/synctest"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"google.golang.org/protobuf/types/known/timestamppb"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
)

// annIntrospector knows one token, "ann", of ann in acme at http://gateway.test, for a day from now.
func annIntrospector() *fakeIntrospector {
	intro := &fakeIntrospector{tokens: make(map[string]*satellitev1.IntrospectTokenResponse)}
	intro.set("ann", &satellitev1.IntrospectTokenResponse{
		Active: true, TeamId: teamAcme, TeamSlug: "acme", UserId: userAnn, ClientId: "client-1",
		Audience: "http://gateway.test/teams/acme/mcp", Scopes: []string{ScopeRead, ScopeExecute},
		ExpiresAt: timestamppb.New(time.Now().Add(24 * time.Hour)),
	})
	return intro
}

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
		intro := annIntrospector()
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

// blockingBackend lists instances with tools, and a session to one is not ready until proceed lets it.
type blockingBackend struct {
	staticBackend
	proceed chan struct{}
}

func (b blockingBackend) Session(ctx context.Context, _ string) (*mcp.ClientSession, error) {
	select {
	case <-b.proceed:
		return nil, fmt.Errorf("no sessions here")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// TestIdleTimeoutWithCallsBeforeSDK: the gateway keeps the session idle timeout in the SDK's place, on a
// fake clock. A call served before the SDK is use, like any POST: the session stays open a whole
// timeout after it, and while a call runs longer than the timeout; it closes a timeout after the last.
func TestIdleTimeoutWithCallsBeforeSDK(t *testing.T) {
	const sessionIdle = 5 * time.Minute
	synctest.Test(t, func(t *testing.T) {
		intro := annIntrospector()
		backend := blockingBackend{proceed: make(chan struct{})}
		backend.insts = []Instance{{ID: "alpha-1", TeamID: teamAcme, UserID: userAnn, ServerSlug: "alpha", Prefix: "alpha", Online: true,
			Status: "online", Tools: []*mcp.Tool{{Name: "echo", InputSchema: map[string]any{"type": "object"}}}}}
		gw, err := New(slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelError})), Config{
			PublicURL:          "http://gateway.test",
			Backend:            backend,
			Introspector:       intro,
			SessionIdleTimeout: sessionIdle,
		})
		if err != nil {
			t.Fatal(err)
		}
		init := serveRecorded(t, gw, http.MethodPost, "ann", initializeBody, nil)
		h := map[string]string{"Mcp-Session-Id": init.Header().Get("Mcp-Session-Id"), "Mcp-Protocol-Version": sessionVersion}
		serveRecorded(t, gw, http.MethodPost, "ann", `{"jsonrpc":"2.0","method":"notifications/initialized"}`, h)
		open := func(when string, want int) {
			t.Helper()
			synctest.Wait()
			if n, _ := gw.slots.counts(userAnn); n != want {
				t.Errorf("%s: %d sessions open, want %d", when, n, want)
			}
		}
		const call = `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"alpha__echo","arguments":{}}}`

		time.Sleep(sessionIdle - time.Second)
		go func() { backend.proceed <- struct{}{} }()
		if rec := serveRecorded(t, gw, http.MethodPost, "ann", call, h); rec.Code != http.StatusOK || gw.sessionCallsServed.Load() != 1 {
			t.Fatalf("call: status %d, %d served before the SDK", rec.Code, gw.sessionCallsServed.Load())
		}
		time.Sleep(sessionIdle - time.Second)
		open("a timeout less a second after a call", 1)
		time.Sleep(2 * time.Second)
		open("a timeout and a second after the call", 0)

		// A call that runs longer than the timeout holds the session open until a timeout after it ends.
		init = serveRecorded(t, gw, http.MethodPost, "ann", initializeBody, nil)
		h["Mcp-Session-Id"] = init.Header().Get("Mcp-Session-Id")
		serveRecorded(t, gw, http.MethodPost, "ann", `{"jsonrpc":"2.0","method":"notifications/initialized"}`, h)
		done := make(chan struct{})
		go func() {
			serveRecorded(t, gw, http.MethodPost, "ann", call, h)
			close(done)
		}()
		time.Sleep(2 * sessionIdle)
		open("while a long call runs", 1)
		backend.proceed <- struct{}{}
		<-done
		if gw.sessionCallsServed.Load() != 2 {
			t.Fatalf("the long call was not served before the SDK")
		}
		time.Sleep(sessionIdle - time.Second)
		open("a timeout less a second after the long call", 1)
		time.Sleep(2 * time.Second)
		open("a timeout and a second after the long call", 0)
		if n := gw.sessions.len(); n != 0 {
			t.Errorf("%d sessions still indexed", n)
		}
	})
}
