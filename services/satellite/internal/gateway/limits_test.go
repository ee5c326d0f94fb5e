package gateway

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// counts returns the sessions held by user and in all.
func (s *sessionSlots) counts(user string) (byUser, total int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byUser[user], s.held
}

// TestSessionSlotsPerTeam is a team admin who mints OAuth clients, each a user of its own, to get past
// the per-user limit: the team's limit stops them, other teams still get sessions, and a closed session
// gives its team's place back.
func TestSessionSlotsPerTeam(t *testing.T) {
	t.Parallel()
	s := newSessionSlots(2, 3, 10)
	var held []*slot
	for _, user := range []string{"client-1", "client-1", "client-2"} {
		sl, refused := s.take(user, "team-a")
		if refused != nil {
			t.Fatalf("session %d of team-a: %s", len(held)+1, refused.msg)
		}
		held = append(held, sl)
	}
	_, refused := s.take("client-3", "team-a")
	if refused == nil || refused.status != http.StatusTooManyRequests || !strings.Contains(refused.msg, "a team may hold 3") {
		t.Fatalf("a fourth session of team-a: %+v, want 429 naming the team's limit", refused)
	}
	if _, refused := s.take("bob", "team-b"); refused != nil {
		t.Fatalf("team-b refused while team-a is full: %s", refused.msg)
	}
	held[0].release()
	held[0].release() // a second release gives nothing back twice
	if _, refused := s.take("client-3", "team-a"); refused != nil {
		t.Fatalf("team-a refused after a session closed: %s", refused.msg)
	}
	if _, refused := s.take("client-4", "team-a"); refused == nil {
		t.Fatal("team-a got a fourth session after releasing one twice")
	}
}

// rpcError is the JSON-RPC error answer of a refused request.
type rpcError struct {
	ID    any `json:"id"`
	Error struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// refusal reads a refused request's answer, failing unless it is status with a JSON-RPC error.
func refusal(t *testing.T, resp *http.Response, status int) rpcError {
	t.Helper()
	data, _ := io.ReadAll(resp.Body)
	var e rpcError
	if resp.StatusCode != status || resp.Header.Get("Content-Type") != "application/json" || json.Unmarshal(data, &e) != nil ||
		e.Error.Code != codeSessionLimit {
		t.Fatalf("status %d, %s %s; want %d with a JSON-RPC error", resp.StatusCode, resp.Header.Get("Content-Type"), data, status)
	}
	return e
}

// TestSessionLimits fills a user's share of sessions and then the satellite's, with Streamable HTTP
// sessions and legacy SSE streams: the next session is refused with 429, or 503 once the satellite is
// full, in a JSON-RPC error naming the limit; stateless requests and requests in open sessions go on; and
// a session that ends gives its place back.
func TestSessionLimits(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{maxSessionsPerUser: 3, maxSessions: 5})
	acme := "/teams/acme/mcp"

	// Ann: two Streamable HTTP sessions and a legacy SSE stream are her three.
	first := b.openSession(t, "ann")
	b.openSession(t, "ann")
	b.openSSE(t, "ann")
	e := refusal(t, b.do(t, http.MethodPost, acme, "ann", initializeBody, nil), http.StatusTooManyRequests)
	if e.ID != float64(1) || !strings.Contains(e.Error.Message, "3") {
		t.Errorf("refusal %+v: want the request's id and the limit, 3", e)
	}
	refusal(t, b.do(t, http.MethodGet, "/teams/acme/sse", "ann", "", nil), http.StatusTooManyRequests)
	// Her sessions, and requests that hold no session, still work.
	list := `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`
	if resp := b.do(t, http.MethodPost, acme, "ann", list, map[string]string{"Mcp-Session-Id": first, "Mcp-Protocol-Version": sessionVersion}); resp.StatusCode != http.StatusOK {
		t.Errorf("a request in an open session: status %d", resp.StatusCode)
	}
	if resp := b.do(t, http.MethodPost, acme, "ann", statelessToolsList, map[string]string{"Mcp-Protocol-Version": statelessVersion, "Mcp-Method": "tools/list"}); resp.StatusCode != http.StatusOK {
		t.Errorf("a stateless request: status %d", resp.StatusCode)
	}
	// A POST without a session id that opened none, or whose session failed to initialize, keeps no place.
	if n, _ := b.gw.slots.counts(userAnn); n != 3 {
		t.Errorf("ann holds %d sessions, want 3", n)
	}

	// Bob takes the satellite's last two places; then the satellite is full for him and for cid.
	b.openSession(t, "bob")
	b.openSession(t, "bob")
	for _, token := range []string{"bob", "cid"} {
		slug := map[string]string{"bob": "acme", "cid": "globex"}[token]
		resp := b.do(t, http.MethodPost, "/teams/"+slug+"/mcp", token, initializeBody, nil)
		if resp.Header.Get("Retry-After") == "" {
			t.Errorf("%s: no Retry-After", token)
		}
		e := refusal(t, resp, http.StatusServiceUnavailable)
		// What the refusal says is the satellite's limit, nothing of whose sessions fill it.
		for _, leak := range []string{"ann", userAnn, "bob", userBob, "acme", teamAcme} {
			if strings.Contains(e.Error.Message, leak) {
				t.Errorf("refusal %q names %q", e.Error.Message, leak)
			}
		}
	}

	// Ann ends a session: her place is free again, and the satellite's.
	if resp := b.do(t, http.MethodDelete, acme, "ann", "", map[string]string{"Mcp-Session-Id": first, "Mcp-Protocol-Version": sessionVersion}); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE: status %d", resp.StatusCode)
	}
	settle(t, "the deleted session's place", func() bool { n, _ := b.gw.slots.counts(userAnn); return n == 2 })
	b.openSession(t, "ann")
	refusal(t, b.do(t, http.MethodPost, "/teams/globex/mcp", "cid", initializeBody, nil), http.StatusServiceUnavailable)
}

// TestSessionLimitsFailedStarts sends POSTs without a session id that leave no session behind: a ping,
// an initialize the SDK refuses, a body that is not JSON-RPC. None keeps a place.
func TestSessionLimitsFailedStarts(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{maxSessionsPerUser: 1})
	for _, body := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"ping"}`,
		`{"jsonrpc":"2.0","id":1,"method":"initialize","params":"nonsense"}`,
		`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`,
		`not json`,
	} {
		resp := b.do(t, http.MethodPost, "/teams/acme/mcp", "ann", body, nil)
		io.Copy(io.Discard, resp.Body)
		if n, total := b.gw.slots.counts(userAnn); n != 0 || total != 0 {
			t.Errorf("after %s (status %d): %d sessions held, want none", body, resp.StatusCode, n)
		}
	}
	b.openSession(t, "ann")
}

// TestSessionLimitsLegacySSEStreamEnd ends a legacy SSE stream from the client's side: its place is free.
func TestSessionLimitsLegacySSEStreamEnd(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{maxSessionsPerUser: 1})
	ctx, cancel := context.WithCancel(t.Context())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, b.url+"/teams/acme/sse", nil)
	req.Header.Set("Authorization", "Bearer ann")
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	readEndpoint(t, resp.Body)
	refusal(t, b.do(t, http.MethodPost, "/teams/acme/mcp", "ann", initializeBody, nil), http.StatusTooManyRequests)
	cancel()
	resp.Body.Close()
	settle(t, "the SSE stream's place", func() bool { n, _ := b.gw.slots.counts(userAnn); return n == 0 })
	b.openSession(t, "ann")
}

// TestSessionLimitIdleTimeout abandons a session without a DELETE: the session idle timeout closes it
// and its place is free for the next.
func TestSessionLimitIdleTimeout(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		intro := annIntrospector()
		gw, err := New(slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})), Config{
			PublicURL:          "http://gateway.test",
			Backend:            staticBackend{},
			Introspector:       intro,
			MaxSessionsPerUser: 1,
		})
		if err != nil {
			t.Fatal(err)
		}
		if rec := serveRecorded(t, gw, http.MethodPost, "ann", initializeBody, nil); rec.Code != http.StatusOK {
			t.Fatalf("initialize: status %d", rec.Code)
		}
		if rec := serveRecorded(t, gw, http.MethodPost, "ann", initializeBody, nil); rec.Code != http.StatusTooManyRequests {
			t.Fatalf("second initialize: status %d, want 429", rec.Code)
		}
		time.Sleep(DefaultSessionIdleTimeout - time.Second)
		synctest.Wait()
		if n, _ := gw.slots.counts(userAnn); n != 1 {
			t.Errorf("just before the idle timeout: %d sessions held, want 1", n)
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if n, _ := gw.slots.counts(userAnn); n != 0 {
			t.Errorf("after the idle timeout: %d sessions held, want 0", n)
		}
		rec := serveRecorded(t, gw, http.MethodPost, "ann", initializeBody, nil)
		if rec.Code != http.StatusOK {
			t.Fatalf("initialize after the idle timeout: status %d", rec.Code)
		}
		h := map[string]string{"Mcp-Session-Id": rec.Header().Get("Mcp-Session-Id"), "Mcp-Protocol-Version": sessionVersion}
		if rec := serveRecorded(t, gw, http.MethodDelete, "ann", "", h); rec.Code != http.StatusNoContent {
			t.Errorf("delete: status %d", rec.Code)
		}
		// The user's server goes after its own idle period; nothing is left running.
		time.Sleep(DefaultUserIdleTimeout + time.Second)
		synctest.Wait()
		if n, total := gw.slots.counts(userAnn); n != 0 || total != 0 {
			t.Errorf("at the end: %d sessions held, %d in all", n, total)
		}
	})
}

// TestSessionFlood is one token opening sessions as fast as it can, on both transports and from many
// connections at once: the cap holds exactly, and the gateway's memory and goroutines stay what the
// capped sessions need, not what the attempts would.
//
// Not parallel: it counts the process's goroutines and measures its heap.
func TestSessionFlood(t *testing.T) {
	const (
		limit    = 5
		attempts = 2000
		workers  = 8
	)
	b := setup(t, setupOptions{maxSessionsPerUser: limit})
	tr := &http.Transport{MaxIdleConnsPerHost: workers}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr}
	var mu sync.Mutex
	var sessions []string       // Streamable HTTP sessions opened
	var streams []io.ReadCloser // legacy SSE streams opened, kept open
	statuses := map[int]int{}
	send := func(method, path, body string) {
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, _ := http.NewRequestWithContext(t.Context(), method, b.url+path, rd)
		req.Header.Set("Authorization", "Bearer ann")
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		resp, err := client.Do(req)
		if err != nil {
			t.Error(err)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		statuses[resp.StatusCode]++
		if resp.StatusCode == http.StatusOK && method == http.MethodGet {
			streams = append(streams, resp.Body)
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if id := resp.Header.Get("Mcp-Session-Id"); id != "" {
			sessions = append(sessions, id)
		}
	}
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	goroutines0, heap0 := runtime.NumGoroutine(), heap()
	start := time.Now()

	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for n := next.Add(1); n <= attempts; n = next.Add(1) {
				// One in ten is a legacy SSE stream.
				if n%10 == 0 {
					send(http.MethodGet, "/teams/acme/sse", "")
				} else {
					send(http.MethodPost, "/teams/acme/mcp", initializeBody)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	tr.CloseIdleConnections()
	held, _ := b.gw.slots.counts(userAnn)
	goroutines, grown := runtime.NumGoroutine(), int64(heap())-int64(heap0)
	t.Logf("%d attempts in %v: statuses %v; %d sessions held; goroutines %d → %d; heap %+d KB",
		attempts, elapsed.Round(time.Millisecond), statuses, held, goroutines0, goroutines, grown>>10)

	if len(sessions)+len(streams) != limit || held != limit || statuses[http.StatusTooManyRequests] != attempts-limit {
		t.Errorf("%d sessions and %d streams opened, %d held, %d refused; want %d in all, %d, %d", len(sessions), len(streams),
			held, statuses[http.StatusTooManyRequests], limit, limit, attempts-limit)
	}
	// An open session holds a few goroutines and some 30 KB; the refused attempts hold nothing.
	if goroutines > goroutines0+10*limit {
		t.Errorf("goroutines grew from %d to %d", goroutines0, goroutines)
	}
	if grown > 4<<20 { // 2,000 sessions would take some 18 MB
		t.Errorf("the heap grew by %d KB", grown>>10)
	}
	// Ending the sessions and streams frees every place.
	for _, id := range sessions {
		resp := b.do(t, http.MethodDelete, "/teams/acme/mcp", "ann", "", map[string]string{"Mcp-Session-Id": id, "Mcp-Protocol-Version": sessionVersion})
		if resp.StatusCode != http.StatusNoContent {
			t.Errorf("DELETE %s: status %d", id, resp.StatusCode)
		}
	}
	for _, s := range streams {
		s.Close()
	}
	settle(t, "the flood's sessions", func() bool { n, total := b.gw.slots.counts(userAnn); return n == 0 && total == 0 })
}
