package pool

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/internal/peertoken"
	"github.com/orrery/orrery/services/satellite/internal/gateway"
)

const (
	teamAcme, teamGlobex = "team-acme", "team-globex"
	userAnn              = "user-ann"
	sessionVersion       = "2025-11-25"
	statelessToolsList   = `{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`
)

// controlPlane signs what the control plane signs for a pool, and answers introspections per satellite.
type controlPlane struct {
	public  ed25519.PublicKey
	private ed25519.PrivateKey
	poolURL string

	mu sync.Mutex
	// tokens[satellite][token] is what introspecting token at satellite answers.
	tokens map[string]map[string]*satellitev1.IntrospectTokenResponse
}

func newControlPlane(t testing.TB) *controlPlane {
	public, private, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &controlPlane{public: public, private: private, tokens: map[string]map[string]*satellitev1.IntrospectTokenResponse{}}
}

// identity is an active token of ann in a team, as introspection answers it.
func (cp *controlPlane) identity(teamID, slug string, expires time.Time) *satellitev1.IntrospectTokenResponse {
	return &satellitev1.IntrospectTokenResponse{
		Active: true, TeamId: teamID, TeamSlug: slug, UserId: userAnn, ClientId: "client-1",
		Audience: cp.poolURL + "/teams/" + slug + "/mcp", Scopes: []string{gateway.ScopeRead, gateway.ScopeExecute},
		ExpiresAt: timestamppb.New(expires),
	}
}

func (cp *controlPlane) sign(t testing.TB, purpose peertoken.Purpose, m proto.Message) string {
	token, err := peertoken.Sign(cp.private, purpose, m)
	if err != nil {
		t.Fatal(err)
	}
	return token
}

// place makes token at satellite answer with a placement on placed and a signed identity.
func (cp *controlPlane) place(t testing.TB, satellite, token string, info *satellitev1.IntrospectTokenResponse, placed ...*satellitev1.Peer) {
	resp := proto.Clone(info).(*satellitev1.IntrospectTokenResponse)
	if len(placed) > 0 {
		identity := proto.Clone(info).(*satellitev1.IntrospectTokenResponse)
		identity.ExpiresAt = timestamppb.New(time.Now().Add(2 * time.Minute))
		resp.Placement = placed
		resp.ForwardedIdentity = cp.sign(t, peertoken.ForwardedIdentity, identity)
	}
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if cp.tokens[satellite] == nil {
		cp.tokens[satellite] = map[string]*satellitev1.IntrospectTokenResponse{}
	}
	cp.tokens[satellite][token] = resp
}

type introspector struct {
	cp        *controlPlane
	satellite string
}

func (in introspector) Introspect(_ context.Context, token string) (*satellitev1.IntrospectTokenResponse, error) {
	in.cp.mu.Lock()
	defer in.cp.mu.Unlock()
	if r, ok := in.cp.tokens[in.satellite][token]; ok {
		return r, nil
	}
	return &satellitev1.IntrospectTokenResponse{}, nil
}

type issuer struct {
	cp        *controlPlane
	satellite string
	ttl       time.Duration
}

func (i issuer) GetPeerCredential(context.Context, *connect.Request[satellitev1.GetPeerCredentialRequest]) (*connect.Response[satellitev1.GetPeerCredentialResponse], error) {
	expires := time.Now().Add(i.ttl)
	token, err := peertoken.Sign(i.cp.private, peertoken.PeerCredential, &satellitev1.PeerCredential{SatelliteId: i.satellite, ExpiresAt: timestamppb.New(expires)})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&satellitev1.GetPeerCredentialResponse{
		Credential: token, ExpiresAt: timestamppb.New(expires), VerificationKeys: [][]byte{i.cp.public},
	}), nil
}

// backend serves one in-memory MCP server per instance, as the runtime serves processes.
type backend struct {
	gw    *gateway.Gateway
	mu    sync.Mutex
	insts map[string]gateway.Instance
	conns map[string]*mcp.ClientSession
}

func (b *backend) Instances(teamID, userID string) []gateway.Instance {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []gateway.Instance
	for _, in := range b.insts {
		if in.TeamID == teamID && in.UserID == userID {
			out = append(out, in)
		}
	}
	return out
}

func (b *backend) Session(_ context.Context, id string) (*mcp.ClientSession, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if cs := b.conns[id]; cs != nil {
		return cs, nil
	}
	return nil, fmt.Errorf("instance %s is not running", id)
}

func (b *backend) Subscribe() (<-chan struct{}, func()) { return make(chan struct{}), func() {} }

// add runs server as an instance of ann's in team.
func (b *backend) add(t testing.TB, id, team string, server *mcp.Server) {
	ctx := t.Context()
	ct, st := mcp.NewInMemoryTransports()
	ss, err := server.Connect(ctx, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ss.Close() })
	client := mcp.NewClient(&mcp.Implementation{Name: "runtime"}, &mcp.ClientOptions{
		ProgressNotificationHandler: func(ctx context.Context, req *mcp.ProgressNotificationClientRequest) {
			b.gw.HandleProgress(ctx, req)
		},
		Capabilities: gateway.ClientCapabilities(),
	})
	client.AddReceivingMiddleware(b.gw.ClientMiddleware)
	cs, err := client.Connect(ctx, ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close() })
	tools, err := cs.ListTools(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.insts[id] = gateway.Instance{ID: id, InstallationID: "inst-" + id, TeamID: team, UserID: userAnn, ServerSlug: "alpha",
		Prefix: "alpha", Online: true, Status: "online", Tools: tools.Tools}
	b.conns[id] = cs
}

// downstream is an MCP server whose "echo" names the satellite it runs on, whose "tick" reports progress
// three times before it answers, and whose "slow" waits to be cancelled.
func downstream(satellite string, started, cancelled chan<- struct{}, acks <-chan struct{}) *mcp.Server {
	s := mcp.NewServer(&mcp.Implementation{Name: "alpha"}, nil)
	schema := map[string]any{"type": "object"}
	s.AddTool(&mcp.Tool{Name: "echo", InputSchema: schema}, func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "served by " + satellite}}}, nil
	})
	s.AddTool(&mcp.Tool{Name: "tick", InputSchema: schema}, func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		for i := range 3 {
			if tok := req.Params.GetProgressToken(); tok != nil {
				if err := req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: tok, Progress: float64(i + 1), Total: 3}); err != nil {
					return nil, err
				}
				// Each notification reaches the client before the next is sent: nothing is held back
				// until the result.
				select {
				case <-acks:
				case <-ctx.Done():
					return nil, ctx.Err()
				}
			}
		}
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "ticked"}}}, nil
	})
	s.AddTool(&mcp.Tool{Name: "slow", InputSchema: schema}, func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		started <- struct{}{}
		<-ctx.Done()
		cancelled <- struct{}{}
		return nil, ctx.Err()
	})
	return s
}

// satellite is one global satellite of a test pool: its gateway behind a Pool, on a public and an
// internal listener.
type satellite struct {
	id        string
	pool      *Pool
	gw        *gateway.Gateway
	public    *httptest.Server
	internal  *httptest.Server
	backend   *backend
	started   chan struct{}
	cancelled chan struct{}
	acks      chan struct{}
}

func newSatellite(t testing.TB, cp *controlPlane, id string) *satellite {
	s := &satellite{id: id, backend: &backend{insts: map[string]gateway.Instance{}, conns: map[string]*mcp.ClientSession{}},
		started: make(chan struct{}, 1), cancelled: make(chan struct{}, 1), acks: make(chan struct{}, 1)}
	s.public = httptest.NewUnstartedServer(nil)
	s.internal = httptest.NewUnstartedServer(nil)
	logger := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var err error
	s.pool, err = New(logger, Config{Local: localRef{s}, InternalURL: "http://" + s.internal.Listener.Addr().String(), MaxBodyBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	s.pool.SetSelf(id)
	s.gw, err = gateway.New(logger, gateway.Config{
		PublicURL:    "http://" + s.public.Listener.Addr().String(),
		Backend:      s.backend,
		Introspector: introspector{cp: cp, satellite: id},
		Forwarder:    s.pool,
		NewSessionID: s.pool.NewSessionID,
		MaxBodyBytes: 1 << 20,
	})
	if err != nil {
		t.Fatal(err)
	}
	s.backend.gw = s.gw
	s.public.Config.Handler = s.pool.Public()
	s.internal.Config.Handler = s.pool.Internal()
	s.public.Start()
	s.internal.Start()
	t.Cleanup(s.public.Close)
	t.Cleanup(s.internal.Close)
	if _, err := s.pool.refresh(t.Context(), issuer{cp: cp, satellite: id, ttl: time.Hour}); err != nil {
		t.Fatal(err)
	}
	return s
}

// localRef lets the pool reach the gateway built after it.
type localRef struct{ s *satellite }

func (l localRef) ServeHTTP(w http.ResponseWriter, r *http.Request) { l.s.gw.ServeHTTP(w, r) }
func (l localRef) SetPoolURL(u string)                              { l.s.gw.SetPoolURL(u) }
func (l localRef) OpenSessions() int                                { return l.s.gw.OpenSessions() }
func (l localRef) ForgetTokens()                                    { l.s.gw.ForgetTokens() }

func (s *satellite) peer() *satellitev1.Peer {
	return &satellitev1.Peer{SatelliteId: s.id, InternalUrl: s.pool.InternalURL()}
}

// fixture is a pool of two satellites: a serves no team, b serves acme. The pool URL is a's public URL,
// standing for the load balancer that happens to pick a.
type fixture struct {
	cp   *controlPlane
	a, b *satellite
}

func newFixture(t testing.TB) *fixture {
	cp := newControlPlane(t)
	f := &fixture{cp: cp}
	f.a = newSatellite(t, cp, "sat-a")
	f.b = newSatellite(t, cp, "sat-b")
	cp.poolURL = f.a.public.URL
	pool := &satellitev1.Pool{Url: cp.poolURL, Peers: []*satellitev1.Peer{f.a.peer(), f.b.peer()}}
	f.a.pool.SetPool(pool)
	f.b.pool.SetPool(pool)
	f.b.backend.add(t, "b-1", teamAcme, downstream("sat-b", f.b.started, f.b.cancelled, f.b.acks))
	ann := cp.identity(teamAcme, "acme", time.Now().Add(time.Hour))
	cp.place(t, "sat-a", "ann", ann, f.b.peer())
	cp.place(t, "sat-b", "ann", ann)
	return f
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

type bearer struct {
	token string
	base  http.RoundTripper
	// sessions records the session ids of responses.
	mu       sync.Mutex
	sessions []string
}

func (b *bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	base := b.base
	if base == nil {
		base = http.DefaultTransport
	}
	resp, err := base.RoundTrip(r)
	if err == nil && resp.Header.Get("Mcp-Session-Id") != "" {
		b.mu.Lock()
		b.sessions = append(b.sessions, resp.Header.Get("Mcp-Session-Id"))
		b.mu.Unlock()
	}
	return resp, err
}

func dial(t testing.TB, endpoint string, sse bool, rt *bearer, copts *mcp.ClientOptions) *mcp.ClientSession {
	client := mcp.NewClient(&mcp.Implementation{Name: "test-client", Version: "1"}, copts)
	var transport mcp.Transport = &mcp.StreamableClientTransport{Endpoint: endpoint + "/teams/acme/mcp", HTTPClient: &http.Client{Transport: rt}}
	if sse {
		transport = &mcp.SSEClientTransport{Endpoint: endpoint + "/teams/acme/sse", HTTPClient: &http.Client{Transport: rt}}
	}
	cs, err := client.Connect(context.Background(), transport, &mcp.ClientSessionOptions{ProtocolVersion: sessionVersion})
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

func callText(t testing.TB, cs *mcp.ClientSession, params *mcp.CallToolParams) string {
	res, err := cs.CallTool(context.Background(), params)
	if err != nil {
		t.Fatalf("call %s: %v", params.Name, err)
	}
	if len(res.Content) == 0 {
		t.Fatalf("call %s: no content", params.Name)
	}
	return res.Content[0].(*mcp.TextContent).Text
}

// TestForwardedByPlacement connects to a satellite that does not serve the team, on both transports:
// the session is opened at the satellite that does, its id names that satellite, and every later
// request of the session, arriving at the first, reaches it.
func TestForwardedByPlacement(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for _, sse := range []bool{false, true} {
		t.Run(fmt.Sprintf("sse=%v", sse), func(t *testing.T) {
			rt := &bearer{token: "ann"}
			cs := dial(t, f.a.public.URL, sse, rt, nil)
			if got := callText(t, cs, &mcp.CallToolParams{Name: "alpha__echo"}); got != "served by sat-b" {
				t.Fatalf("echo = %q, want it served by sat-b", got)
			}
			if !sse {
				rt.mu.Lock()
				sessions := rt.sessions
				rt.mu.Unlock()
				if len(sessions) == 0 || !strings.HasPrefix(sessions[0], "sat-b.") {
					t.Fatalf("session ids %q, want them to name sat-b", sessions)
				}
			}
			if n := f.a.gw.OpenSessions(); n != 0 {
				t.Errorf("sat-a holds %d sessions, want none", n)
			}
			if n := f.b.gw.OpenSessions(); n == 0 {
				t.Errorf("sat-b holds no session")
			}
		})
	}
}

// TestLegacyEndpointNamesOwner: the message endpoint of a legacy SSE stream carries its satellite's id.
func TestLegacyEndpointNamesOwner(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, f.a.public.URL+"/teams/acme/sse", nil)
	req.Header.Set("Authorization", "Bearer ann")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 512)
	n, _ := resp.Body.Read(buf)
	if got := string(buf[:n]); !strings.Contains(got, "event: endpoint\n") || !strings.Contains(got, "?sessionid=sat-b.") {
		t.Fatalf("first event %q, want an endpoint naming sat-b", got)
	}
}

// TestStatelessForwarded: a request of the stateless 2026-07-28 era, which holds no session, is forwarded
// by placement each time.
func TestStatelessForwarded(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, f.a.public.URL+"/teams/acme/mcp", strings.NewReader(statelessToolsList))
	req.Header.Set("Authorization", "Bearer ann")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Protocol-Version", "2026-07-28")
	req.Header.Set("Mcp-Method", "tools/list")
	req.Header.Set("Mcp-Method", "tools/list")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "alpha__echo") {
		t.Fatalf("status %d, body %s; want sat-b's tools", resp.StatusCode, body)
	}
}

// TestStreamingThroughProxy: progress notifications of a forwarded call reach the client before its
// result, and cancelling a forwarded call cancels it at the satellite that runs it.
func TestStreamingThroughProxy(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for _, sse := range []bool{false, true} {
		t.Run(fmt.Sprintf("sse=%v", sse), func(t *testing.T) {
			progress := make(chan float64, 10)
			cs := dial(t, f.a.public.URL, sse, &bearer{token: "ann"}, &mcp.ClientOptions{
				ProgressNotificationHandler: func(_ context.Context, req *mcp.ProgressNotificationClientRequest) {
					progress <- req.Params.Progress
					f.b.acks <- struct{}{}
				},
			})
			params := &mcp.CallToolParams{Name: "alpha__tick"}
			params.SetProgressToken("p1")
			if got := callText(t, cs, params); got != "ticked" {
				t.Fatalf("tick = %q", got)
			}
			for want := 1.0; want <= 3; want++ {
				select {
				case got := <-progress:
					if got != want {
						t.Fatalf("progress %v, want %v", got, want)
					}
				case <-time.After(5 * time.Second):
					t.Fatalf("progress %v never came", want)
				}
			}
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error, 1)
			go func() {
				_, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "alpha__slow"})
				done <- err
			}()
			select {
			case <-f.b.started:
			case <-time.After(10 * time.Second):
				t.Fatal("the slow call never reached sat-b")
			}
			cancel()
			select {
			case <-f.b.cancelled:
			case <-time.After(10 * time.Second):
				t.Fatal("the forwarded call was not cancelled downstream")
			}
			<-done
		})
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition never held")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestSessionOfGoneOwner: a session whose owner is not in the pool, or cannot be reached, is answered 404
// so the client opens a new one.
func TestSessionOfGoneOwner(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	rt := &bearer{token: "ann"}
	cs := dial(t, f.a.public.URL, false, rt, nil)
	callText(t, cs, &mcp.CallToolParams{Name: "alpha__echo"})
	post := func(session string) int {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, f.a.public.URL+"/teams/acme/mcp",
			strings.NewReader(`{"jsonrpc":"2.0","id":9,"method":"tools/list"}`))
		req.Header.Set("Authorization", "Bearer ann")
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Mcp-Session-Id", session)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := post("sat-gone.ABCDEF"); got != http.StatusNotFound {
		t.Errorf("session of a satellite not in the pool: status %d, want 404", got)
	}
	rt.mu.Lock()
	session := rt.sessions[0]
	rt.mu.Unlock()
	f.b.internal.CloseClientConnections()
	f.b.internal.Listener.Close()
	if got := post(session); got != http.StatusNotFound {
		t.Errorf("session of an unreachable satellite: status %d, want 404", got)
	}
}

// TestPublicListenerIgnoresIdentityHeaders: a valid credential and a valid signed identity sent to the
// public listener count for nothing: the request still needs a bearer token.
func TestPublicListenerIgnoresIdentityHeaders(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	identity := f.cp.sign(t, peertoken.ForwardedIdentity, f.cp.identity(teamAcme, "acme", time.Now().Add(time.Minute)))
	for _, sat := range []*satellite{f.a, f.b} {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, sat.public.URL+"/teams/acme/mcp", strings.NewReader(statelessToolsList))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Mcp-Protocol-Version", "2026-07-28")
		req.Header.Set("Mcp-Method", "tools/list")
		req.Header.Set("Mcp-Method", "tools/list")
		req.Header.Set(HeaderCredential, sat.pool.cred.Load().token)
		req.Header.Set(HeaderIdentity, identity)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s: status %d, want 401", sat.id, resp.StatusCode)
		}
	}
}

// TestInternalListenerRefusesForgeries sends requests to sat-b's internal listener with credentials and
// identities that are missing, forged, expired, or for another team.
func TestInternalListenerRefusesForgeries(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	forger := &controlPlane{private: otherKey, poolURL: f.cp.poolURL}
	now := time.Now()
	cred := func(cp *controlPlane, expires time.Time) string {
		return cp.sign(t, peertoken.PeerCredential, &satellitev1.PeerCredential{SatelliteId: "sat-a", ExpiresAt: timestamppb.New(expires)})
	}
	ident := func(cp *controlPlane, teamID, slug string, expires time.Time) string {
		return cp.sign(t, peertoken.ForwardedIdentity, f.cp.identity(teamID, slug, expires))
	}
	valid := cred(f.cp, now.Add(time.Minute))
	cases := []struct {
		name, path, credential, identity string
		want                             int
	}{
		{"no credential", "/teams/acme/mcp", "", ident(f.cp, teamAcme, "acme", now.Add(time.Minute)), http.StatusUnauthorized},
		{"forged credential", "/teams/acme/mcp", cred(forger, now.Add(time.Minute)), ident(f.cp, teamAcme, "acme", now.Add(time.Minute)), http.StatusUnauthorized},
		{"expired credential", "/teams/acme/mcp", cred(f.cp, now.Add(-time.Second)), ident(f.cp, teamAcme, "acme", now.Add(time.Minute)), http.StatusUnauthorized},
		{"identity as credential", "/teams/acme/mcp", ident(f.cp, teamAcme, "acme", now.Add(time.Minute)), "", http.StatusUnauthorized},
		{"forged identity", "/teams/acme/mcp", valid, ident(forger, teamAcme, "acme", now.Add(time.Minute)), http.StatusForbidden},
		{"expired identity", "/teams/acme/mcp", valid, ident(f.cp, teamAcme, "acme", now.Add(-time.Second)), http.StatusForbidden},
		{"credential as identity", "/teams/acme/mcp", valid, valid, http.StatusForbidden},
		{"identity of acme on globex", "/teams/globex/mcp", valid, ident(f.cp, teamAcme, "acme", now.Add(time.Minute)), http.StatusForbidden},
		{"no identity, no session", "/teams/acme/mcp", valid, "", http.StatusNotFound},
		{"valid", "/teams/acme/mcp", valid, ident(f.cp, teamAcme, "acme", now.Add(time.Minute)), http.StatusOK},
	}
	for _, c := range cases {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, f.b.internal.URL+c.path, strings.NewReader(statelessToolsList))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Mcp-Protocol-Version", "2026-07-28")
		req.Header.Set("Mcp-Method", "tools/list")
		req.Header.Set("Mcp-Method", "tools/list")
		if c.credential != "" {
			req.Header.Set(HeaderCredential, c.credential)
		}
		if c.identity != "" {
			req.Header.Set(HeaderIdentity, c.identity)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s: status %d (%s), want %d", c.name, resp.StatusCode, strings.TrimSpace(string(body)), c.want)
		}
	}
}

// TestDrainingPeerIsPassedOver: a placement's draining satellite gets no new sessions; with none other
// placed, the request is refused for now rather than served where the team is not.
func TestDrainingPeerIsPassedOver(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	c := newSatellite(t, f.cp, "sat-c")
	c.backend.add(t, "c-1", teamAcme, downstream("sat-c", c.started, c.cancelled, c.acks))
	f.cp.place(t, "sat-c", "ann", f.cp.identity(teamAcme, "acme", time.Now().Add(time.Hour)))
	drainingB := &satellitev1.Peer{SatelliteId: "sat-b", InternalUrl: f.b.pool.InternalURL(), Draining: true}
	pool := &satellitev1.Pool{Url: f.cp.poolURL, Peers: []*satellitev1.Peer{f.a.peer(), drainingB, c.peer()}}
	for _, s := range []*satellite{f.a, f.b, c} {
		s.pool.SetPool(pool)
	}
	f.cp.place(t, "sat-a", "ann2", f.cp.identity(teamAcme, "acme", time.Now().Add(time.Hour)), f.b.peer(), c.peer())
	f.cp.place(t, "sat-c", "ann2", f.cp.identity(teamAcme, "acme", time.Now().Add(time.Hour)))
	cs := dial(t, f.a.public.URL, false, &bearer{token: "ann2"}, nil)
	if got := callText(t, cs, &mcp.CallToolParams{Name: "alpha__echo"}); got != "served by sat-c" {
		t.Fatalf("echo = %q, want sat-c to serve while sat-b drains", got)
	}
	f.cp.place(t, "sat-a", "ann3", f.cp.identity(teamAcme, "acme", time.Now().Add(time.Hour)), f.b.peer())
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, f.a.public.URL+"/teams/acme/mcp", strings.NewReader(statelessToolsList))
	req.Header.Set("Authorization", "Bearer ann3")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Protocol-Version", "2026-07-28")
	req.Header.Set("Mcp-Method", "tools/list")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("only a draining satellite placed: status %d, want 503", resp.StatusCode)
	}
}

// TestPoolURLIsTheAudience: with a pool, the metadata and the audience tokens must name are the pool's.
func TestPoolURLIsTheAudience(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	resp, err := http.Get(f.b.public.URL + "/.well-known/oauth-protected-resource/teams/acme/mcp")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var md struct {
		Resource string `json:"resource"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&md); err != nil {
		t.Fatal(err)
	}
	if want := f.cp.poolURL + "/teams/acme/mcp"; md.Resource != want {
		t.Errorf("resource = %q, want %q", md.Resource, want)
	}
	// ann's token names the pool URL, so sat-b, reached directly, accepts it too.
	cs := dial(t, f.b.public.URL, false, &bearer{token: "ann"}, nil)
	callText(t, cs, &mcp.CallToolParams{Name: "alpha__echo"})
}

// TestCredentialRefresh: Run fetches a credential once the satellite is in a pool.
func TestCredentialRefresh(t *testing.T) {
	t.Parallel()
	cp := newControlPlane(t)
	s := newSatellite(t, cp, "sat-x")
	s.pool.cred.Store(nil)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.pool.Run(ctx, issuer{cp: cp, satellite: "sat-x", ttl: time.Hour}) }()
	s.pool.SetPool(&satellitev1.Pool{})
	waitFor(t, func() bool { return s.pool.cred.Load() != nil })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestPeersFresherThanConfiguration: a satellite whose configuration does not list a peer yet forwards to
// it on the word of a placement, routes its sessions, and refreshes its configuration for a session of a
// peer it has not heard of at all.
func TestPeersFresherThanConfiguration(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	stale := &satellitev1.Pool{Url: f.cp.poolURL, Peers: []*satellitev1.Peer{f.a.peer()}}
	f.a.pool.SetPool(stale)
	rt := &bearer{token: "ann"}
	cs := dial(t, f.a.public.URL, false, rt, nil)
	if got := callText(t, cs, &mcp.CallToolParams{Name: "alpha__echo"}); got != "served by sat-b" {
		t.Fatalf("echo = %q, want it served by sat-b", got)
	}

	// A third satellite knows nothing of b until it refreshes its configuration.
	c := newSatellite(t, f.cp, "sat-c")
	c.pool.SetPool(&satellitev1.Pool{Url: f.cp.poolURL, Peers: []*satellitev1.Peer{c.peer()}})
	var resyncs atomic.Int32
	c.pool.cfg.Resync = func(context.Context) error {
		resyncs.Add(1)
		c.pool.SetPool(&satellitev1.Pool{Url: f.cp.poolURL, Peers: []*satellitev1.Peer{f.a.peer(), f.b.peer(), c.peer()}})
		return nil
	}
	rt.mu.Lock()
	session := rt.sessions[0]
	rt.mu.Unlock()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, c.public.URL+"/teams/acme/mcp",
		strings.NewReader(`{"jsonrpc":"2.0","id":9,"method":"tools/list"}`))
	req.Header.Set("Authorization", "Bearer ann")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Session-Id", session)
	req.Header.Set("Mcp-Protocol-Version", sessionVersion)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "alpha__echo") {
		t.Fatalf("session of a peer c had not heard of: status %d, body %.200s", resp.StatusCode, body)
	}
	if n := resyncs.Load(); n != 1 {
		t.Errorf("%d configuration refreshes, want 1", n)
	}
}

// TestNewConfigurationDropsCachedIdentities: once a configuration moves a team away, a token checked
// before is checked again, and its next new session opens where the team is now.
func TestNewConfigurationDropsCachedIdentities(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	c := newSatellite(t, f.cp, "sat-c")
	c.backend.add(t, "c-1", teamAcme, downstream("sat-c", c.started, c.cancelled, c.acks))
	ann := f.cp.identity(teamAcme, "acme", time.Now().Add(time.Hour))
	f.cp.place(t, "sat-c", "ann", ann)
	pool := &satellitev1.Pool{Url: f.cp.poolURL, Peers: []*satellitev1.Peer{f.a.peer(), f.b.peer(), c.peer()}}
	for _, s := range []*satellite{f.a, f.b, c} {
		s.pool.SetPool(pool)
	}
	if got := callText(t, dial(t, f.b.public.URL, false, &bearer{token: "ann"}, nil), &mcp.CallToolParams{Name: "alpha__echo"}); got != "served by sat-b" {
		t.Fatalf("echo = %q, want sat-b", got)
	}
	// acme moves to c: sat-b's introspection now places it there, and sat-b gets a new configuration.
	f.cp.place(t, "sat-b", "ann", ann, c.peer())
	f.b.pool.SetPool(pool)
	if got := callText(t, dial(t, f.b.public.URL, false, &bearer{token: "ann"}, nil), &mcp.CallToolParams{Name: "alpha__echo"}); got != "served by sat-c" {
		t.Fatalf("echo after the move = %q, want sat-c", got)
	}
}

// TestMadeUpSessionOwnersCostOneRefresh: anyone can name a session owner; a stream of made-up ones costs at
// most one configuration refresh an interval and is answered "not found" without waiting.
func TestMadeUpSessionOwnersCostOneRefresh(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	var resyncs atomic.Int32
	f.a.pool.cfg.Resync = func(context.Context) error {
		resyncs.Add(1)
		return nil
	}
	for i := range 20 {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, f.a.public.URL+"/teams/acme/mcp",
			strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Mcp-Session-Id", fmt.Sprintf("made-up-%d.x", i))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("request %d: status %d, want 404", i, resp.StatusCode)
		}
	}
	if n := resyncs.Load(); n > 1 {
		t.Errorf("%d configuration refreshes for 20 made-up owners, want at most 1", n)
	}
}
