package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"google.golang.org/protobuf/types/known/timestamppb"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
)

// held counts what the gateway keeps for users and their sessions; all zero when nobody uses it.
type held struct {
	users, owners, byInstance, byUser, calls, progress, rounds, sessions int
}

func (g *Gateway) held() held {
	var h held
	g.mu.Lock()
	h.users = len(g.users)
	g.mu.Unlock()
	g.bridge.mu.Lock()
	h.owners, h.byInstance, h.byUser, h.calls = len(g.bridge.owners), len(g.bridge.byInstance), len(g.bridge.byUser), len(g.bridge.calls)
	g.bridge.mu.Unlock()
	g.progress.mu.Lock()
	h.progress = len(g.progress.routes)
	g.progress.mu.Unlock()
	g.inputs.mu.Lock()
	h.rounds = len(g.inputs.rounds)
	g.inputs.mu.Unlock()
	h.sessions = g.sessions.len()
	return h
}

// staticBackend lists fixed instances and has no sessions to them: enough for listing tools.
type staticBackend struct{ insts []Instance }

func (b staticBackend) Instances(teamID, userID string) []Instance {
	var out []Instance
	for _, inst := range b.insts {
		if inst.TeamID == teamID && inst.UserID == userID {
			out = append(out, inst)
		}
	}
	return out
}

func (staticBackend) Session(context.Context, string) (*mcp.ClientSession, error) {
	return nil, fmt.Errorf("no sessions here")
}

func (staticBackend) Subscribe() (<-chan struct{}, func()) { return make(chan struct{}), func() {} }

const statelessToolsList = `{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`

// TestIdleUserFreed runs the gateway on a fake clock: a user's server goes an idle period after the
// user's last session closed and last request ended, and not while a session is open.
func TestIdleUserFreed(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const idle = 10 * time.Minute
		intro := &fakeIntrospector{tokens: make(map[string]*satellitev1.IntrospectTokenResponse)}
		for token, user := range map[string]string{"ann": userAnn, "bob": userBob} {
			intro.set(token, &satellitev1.IntrospectTokenResponse{
				Active: true, TeamId: teamAcme, TeamSlug: "acme", UserId: user, ClientId: "client-1",
				Audience: "http://gateway.test/teams/acme/mcp", Scopes: []string{ScopeRead, ScopeExecute},
				ExpiresAt: timestamppb.New(time.Now().Add(24 * time.Hour)),
			})
		}
		echo := []*mcp.Tool{{Name: "echo", InputSchema: map[string]any{"type": "object"}}}
		gw, err := New(slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})), Config{
			PublicURL: "http://gateway.test",
			Backend: staticBackend{insts: []Instance{
				{ID: "alpha-ann", TeamID: teamAcme, UserID: userAnn, ServerSlug: "alpha", Prefix: "alpha", Online: true, Tools: echo},
				{ID: "alpha-bob", TeamID: teamAcme, UserID: userBob, ServerSlug: "alpha", Prefix: "alpha", Online: true, Tools: echo},
			}},
			Introspector:    intro,
			UserIdleTimeout: idle,
		})
		if err != nil {
			t.Fatal(err)
		}
		post := func(token, body string, header map[string]string) *httptest.ResponseRecorder {
			t.Helper()
			return serveRecorded(t, gw, http.MethodPost, token, body, header)
		}
		usersHeld := func(when string, want int) {
			t.Helper()
			synctest.Wait()
			if got := gw.held().users; got != want {
				t.Errorf("%s: %d users held, want %d", when, got, want)
			}
		}
		stateless := map[string]string{"Mcp-Protocol-Version": statelessVersion, "Mcp-Method": "tools/list"}

		// Ann opens a session and keeps it; Bob makes one stateless request.
		init := post("ann", initializeBody, nil)
		session := init.Header().Get("Mcp-Session-Id")
		if init.Code != http.StatusOK || session == "" {
			t.Fatalf("initialize: status %d, session %q", init.Code, session)
		}
		inSession := map[string]string{"Mcp-Session-Id": session, "Mcp-Protocol-Version": sessionVersion}
		if rec := post("ann", `{"jsonrpc":"2.0","method":"notifications/initialized"}`, inSession); rec.Code != http.StatusAccepted {
			t.Fatalf("initialized: status %d", rec.Code)
		}
		if rec := post("bob", statelessToolsList, stateless); !strings.Contains(rec.Body.String(), `"alpha__echo"`) {
			t.Fatalf("tools/list: %d %s", rec.Code, rec.Body)
		}
		usersHeld("after the requests", 2)

		time.Sleep(idle - time.Second)
		usersHeld("just before the idle period ends", 2)
		time.Sleep(2 * time.Second)
		usersHeld("after the idle period", 1) // Ann's open session keeps hers

		// Ann ends her session; her server goes an idle period later.
		if rec := serveRecorded(t, gw, http.MethodDelete, "ann", "", inSession); rec.Code != http.StatusNoContent {
			t.Fatalf("delete: status %d", rec.Code)
		}
		time.Sleep(idle - time.Second)
		usersHeld("just before the idle period after the session", 1)
		time.Sleep(2 * time.Second)
		usersHeld("an idle period after the session", 0)

		// Coming back rebuilds the server.
		if rec := post("ann", statelessToolsList, stateless); !strings.Contains(rec.Body.String(), `"alpha__echo"`) {
			t.Fatalf("tools/list after coming back: %d %s", rec.Code, rec.Body)
		}
		usersHeld("after coming back", 1)

		// A session abandoned without a DELETE is closed by the session timeout, and the server goes an
		// idle period after that.
		if init := post("ann", initializeBody, nil); init.Code != http.StatusOK {
			t.Fatalf("initialize: status %d", init.Code)
		}
		time.Sleep(DefaultSessionIdleTimeout + idle/2)
		usersHeld("while the abandoned session's idle period runs", 1)
		time.Sleep(idle)
		usersHeld("after the abandoned session's idle period", 0)
		if h := gw.held(); h != (held{}) {
			t.Errorf("held %+v", h)
		}
	})
}

// serveRecorded sends one request to the gateway's team endpoint "acme" in process.
func serveRecorded(t *testing.T, h http.Handler, method, token, body string, header map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequestWithContext(t.Context(), method, "http://gateway.test/teams/acme/mcp", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Authorization", "Bearer "+token)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// lifecycleBundle serves a gateway on loopback to users who each have one instance of a real MCP
// server with a tool, a subscribable resource and logging.
type lifecycleBundle struct {
	url     string
	gw      *Gateway
	backend *fakeBackend
	intro   *fakeIntrospector
	tr      *http.Transport
	users   []string
	// subscribed counts the instances' subscriptions that were not ended.
	subscribed atomic.Int64
}

func setupUsers(t testing.TB, n int, userIdle time.Duration) *lifecycleBundle {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	b := &lifecycleBundle{
		url:     "http://" + srv.Listener.Addr().String(),
		backend: &fakeBackend{insts: make(map[string]*fakeInstance), subs: make(map[int]chan struct{})},
		intro:   &fakeIntrospector{tokens: make(map[string]*satellitev1.IntrospectTokenResponse)},
		tr:      &http.Transport{},
	}
	gw, err := New(nil, Config{
		PublicURL:       b.url,
		Backend:         b.backend,
		Introspector:    b.intro,
		UserIdleTimeout: userIdle,
	})
	if err != nil {
		t.Fatal(err)
	}
	b.gw, b.backend.gw = gw, gw
	srv.Config.Handler = gw
	srv.Start()
	t.Cleanup(srv.Close)
	t.Cleanup(b.tr.CloseIdleConnections)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { gw.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	downstream := mcp.NewServer(&mcp.Implementation{Name: "watch"}, &mcp.ServerOptions{
		SubscribeHandler:   func(context.Context, *mcp.SubscribeRequest) error { b.subscribed.Add(1); return nil },
		UnsubscribeHandler: func(context.Context, *mcp.UnsubscribeRequest) error { b.subscribed.Add(-1); return nil },
		//lint:ignore SA1019 the session era the tests speak still has logging
		Capabilities: &mcp.ServerCapabilities{Logging: &mcp.LoggingCapabilities{}, Tools: &mcp.ToolCapabilities{}},
	})
	downstream.AddTool(&mcp.Tool{Name: "echo", InputSchema: map[string]any{"type": "object"}}, func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "ok"}}}, nil
	})
	downstream.AddResource(&mcp.Resource{URI: "test://watched", Name: "watched"}, func(context.Context, *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
		return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: "test://watched", Text: "now"}}}, nil
	})
	for i := range n {
		user := fmt.Sprintf("00000000-0000-4000-8000-%012d", i)
		token := "token-" + user
		b.users = append(b.users, token)
		b.intro.set(token, &satellitev1.IntrospectTokenResponse{
			Active: true, TeamId: teamAcme, TeamSlug: "acme", UserId: user, ClientId: "client-1",
			Audience: b.url + "/teams/acme/mcp", Scopes: []string{ScopeRead, ScopeExecute},
			ExpiresAt: timestamppb.New(time.Now().Add(time.Hour)),
		})
		if tt, ok := t.(*testing.T); ok {
			b.backend.add(tt, Instance{ID: "watch-" + user, TeamID: teamAcme, UserID: user, ServerSlug: "watch",
				Prefix: "watch", Online: true, Status: "online"}, downstream)
		} else {
			b.backend.addStatic(Instance{ID: "watch-" + user, TeamID: teamAcme, UserID: user, ServerSlug: "watch",
				Prefix: "watch", Online: true, Status: "online",
				Tools: []*mcp.Tool{{Name: "echo", InputSchema: map[string]any{"type": "object"}}}})
		}
	}
	return b
}

// visit is one user coming, using the endpoint in the given era and leaving.
func (b *lifecycleBundle) visit(ctx context.Context, token string, o clientOptions, full bool) error {
	client := mcp.NewClient(&mcp.Implementation{Name: "visitor", Version: "1"}, nil)
	// Its own transport, so that the test can close the connections it opened.
	hc := &http.Client{Transport: bearer{token: token, base: b.tr}}
	var transport mcp.Transport = &mcp.StreamableClientTransport{Endpoint: b.url + "/teams/acme/mcp", HTTPClient: hc}
	if o.sse {
		transport = &mcp.SSEClientTransport{Endpoint: b.url + "/teams/acme/sse", HTTPClient: hc}
	}
	cs, err := client.Connect(ctx, transport, &mcp.ClientSessionOptions{ProtocolVersion: o.version})
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer cs.Close()
	tools, err := cs.ListTools(ctx, nil)
	if err != nil {
		return fmt.Errorf("list tools: %w", err)
	}
	if len(tools.Tools) != 1 || tools.Tools[0].Name != "watch__echo" {
		return fmt.Errorf("tools %v", tools.Tools)
	}
	if !full {
		return nil
	}
	if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "watch__echo"}); err != nil {
		return fmt.Errorf("call: %w", err)
	}
	if o.version == sessionVersion && !o.sse {
		//lint:ignore SA1019 the session era still has logging
		if err := cs.SetLoggingLevel(ctx, &mcp.SetLoggingLevelParams{Level: "debug"}); err != nil {
			return fmt.Errorf("set level: %w", err)
		}
		if err := cs.Subscribe(ctx, &mcp.SubscribeParams{URI: "test://watched"}); err != nil {
			return fmt.Errorf("subscribe: %w", err)
		}
	}
	return cs.Close()
}

// settle polls until cond holds, failing after a while.
func settle(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not settle", what)
		}
		runtime.Gosched()
		time.Sleep(time.Millisecond)
	}
}

// TestUsersComeAndGo has users come over real HTTP in every era, use tools, logging and subscriptions,
// and leave; afterwards the gateway keeps nothing for them and their goroutines are gone.
//
// Not parallel: it counts the process's goroutines, which other tests running at once would change.
func TestUsersComeAndGo(t *testing.T) {
	b := setupUsers(t, 12, 10*time.Millisecond)
	baseline := runtime.NumGoroutine()
	errs := make(chan error, len(b.users))
	for i, token := range b.users {
		go func() { errs <- b.visit(t.Context(), token, eras[i%len(eras)].opts, true) }()
	}
	for range b.users {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	settle(t, "the gateway's state", func() bool { return b.gw.held() == held{} })
	if n := b.subscribed.Load(); n != 0 {
		t.Errorf("%d subscriptions of instances left behind by closed sessions", n)
	}
	b.tr.CloseIdleConnections()
	const tolerance = 2
	settle(t, "the goroutine count", func() bool { return runtime.NumGoroutine() <= baseline+tolerance })

	// Users coming back get their tools again.
	for _, token := range b.users[:len(eras)] {
		if err := b.visit(t.Context(), token, eras[0].opts, true); err != nil {
			t.Error(err)
		}
	}
}

// remove takes an instance out of the configuration.
func (b *fakeBackend) remove(id string) {
	b.mu.Lock()
	delete(b.insts, id)
	b.mu.Unlock()
	b.signal()
}

// addStatic registers an instance with fixed features and no session, for benchmarks that only list.
func (b *fakeBackend) addStatic(inst Instance) {
	b.mu.Lock()
	b.insts[inst.ID] = &fakeInstance{inst: inst}
	b.mu.Unlock()
}

// BenchmarkIdleUsers measures what idle users cost: each of 1,000 users opens a session, lists tools and
// leaves. "kept" holds them as the gateway did before it freed idle users; "freed" waits until it freed
// them.
func BenchmarkIdleUsers(b *testing.B) {
	const users = 1000
	for _, bc := range []struct {
		name string
		idle time.Duration
	}{{"kept", 24 * time.Hour}, {"freed", time.Millisecond}} {
		b.Run(bc.name, func(b *testing.B) {
			for range b.N {
				lb := setupUsers(b, users, bc.idle)
				runtime.GC()
				var before runtime.MemStats
				runtime.ReadMemStats(&before)
				goroutines := runtime.NumGoroutine()
				for _, token := range lb.users {
					if err := lb.visit(b.Context(), token, eras[0].opts, false); err != nil {
						b.Fatal(err)
					}
				}
				if bc.idle < time.Hour {
					settle(b, "the gateway's state", func() bool { return lb.gw.held().users == 0 })
				}
				lb.tr.CloseIdleConnections()
				settle(b, "the goroutine count", func() bool { return runtime.NumGoroutine() <= goroutines+2 })
				runtime.GC()
				var after runtime.MemStats
				runtime.ReadMemStats(&after)
				b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/users, "heap-B/user")
				b.ReportMetric(float64(lb.gw.held().users), "users-held")
			}
		})
	}
}

// TestInstanceLeavesConfiguration checks that what the gateway keeps for an instance goes with it.
func TestInstanceLeavesConfiguration(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{})
	ann := b.connect(t, "ann", "acme", clientOptions{version: sessionVersion})
	if _, err := ann.CallTool(t.Context(), &mcp.CallToolParams{Name: "beta__echo"}); err != nil {
		t.Fatal(err)
	}
	known := func() bool {
		b.gw.bridge.mu.Lock()
		defer b.gw.bridge.mu.Unlock()
		return b.gw.bridge.byInstance["beta-1"] != nil
	}
	if !known() {
		t.Fatal("the bridge does not know the instance it called")
	}
	b.backend.remove("beta-1")
	settle(t, "forgetting the removed instance", func() bool { return !known() })
	if slices.Contains(toolNames(t, ann), "beta__echo") {
		t.Error("the removed instance's tool is still listed")
	}
}

// TestInstanceComesBack checks that an instance that left the configuration and came back gets the
// subscriptions of the sessions still open, as a restarted instance does.
func TestInstanceComesBack(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{})
	downstreamSubs := make(chan string, 4)
	s := newWatched(downstreamSubs)
	b.addGlobex(t, "watch", s) // as instance "watch-1"
	cid := b.connect(t, "cid", "globex", clientOptions{version: sessionVersion})
	if err := cid.Subscribe(t.Context(), &mcp.SubscribeParams{URI: "test://watched"}); err != nil {
		t.Fatal(err)
	}
	receive(t, downstreamSubs)

	b.backend.remove("watch-1")
	settle(t, "forgetting the removed instance", func() bool {
		b.gw.bridge.mu.Lock()
		defer b.gw.bridge.mu.Unlock()
		return b.gw.bridge.byInstance["watch-1"] == nil
	})
	b.addGlobex(t, "watch", s)
	settle(t, "listing the instance again", func() bool {
		_, err := cid.ReadResource(t.Context(), &mcp.ReadResourceParams{URI: "test://watched"})
		return err == nil
	})
	if got := receive(t, downstreamSubs); got != "subscribe test://watched" {
		t.Errorf("downstream got %q", got)
	}
}
