package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"google.golang.org/protobuf/types/known/timestamppb"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/internal/mcptest"
	"github.com/orrery/orrery/services/satellite/internal/backendtest"
	"github.com/orrery/orrery/services/satellite/internal/gateway"
)

const poolSecret = "s3cret-of-acme-4b1d"

// poolMember is one satellite of the test pool, run in this process.
type poolMember struct {
	name     string
	id       string
	cfg      Config
	cancel   context.CancelFunc
	done     chan error
	internal string
}

// roundRobin is the test's load balancer: each request goes to the next satellite's public listener.
type roundRobin struct {
	mu      sync.Mutex
	targets []*url.URL
	next    int
}

func (lb *roundRobin) handler() http.Handler {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			lb.mu.Lock()
			target := lb.targets[lb.next%len(lb.targets)]
			lb.next++
			lb.mu.Unlock()
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host
		},
		FlushInterval: -1,
	}
}

// sessionRecorder adds the bearer token and remembers the session ids the endpoint answers with.
type sessionRecorder struct {
	token string
	mu    sync.Mutex
	ids   []string
}

func (s *sessionRecorder) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+s.token)
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err == nil && resp.Header.Get("Mcp-Session-Id") != "" {
		s.mu.Lock()
		s.ids = append(s.ids, resp.Header.Get("Mcp-Session-Id"))
		s.mu.Unlock()
	}
	return resp, err
}

func (s *sessionRecorder) last() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.ids) == 0 {
		return ""
	}
	return s.ids[len(s.ids)-1]
}

// TestPoolOfThree runs three global satellites behind a round-robin load balancer with one public URL.
// acme is placed on one of them; clients of every transport reach it through whichever satellite the
// balancer picks. Then its satellite drains: open sessions go on, new ones open where acme moved. Then
// that satellite stops: the client's next request is answered 404 and it opens a new session elsewhere.
// acme's secret never reaches the satellite acme is not placed on.
func TestPoolOfThree(t *testing.T) {
	t.Parallel()
	srv := backendtest.New(t)
	srv.SetNextHeartbeat(50 * time.Millisecond)
	lb := &roundRobin{}
	lbServer := httptest.NewServer(lb.handler())
	t.Cleanup(func() {
		// Streams the satellites left open when they stopped would hold Close up.
		lbServer.CloseClientConnections()
		lbServer.Close()
	})
	srv.EnablePool(lbServer.URL)

	members := make([]*poolMember, 3)
	for i, name := range []string{"sat-a", "sat-b", "sat-c"} {
		token := fmt.Sprintf("orreg_pool-registration-%d", i)
		srv.AddToken(token, satellitev1.SatelliteType_SATELLITE_TYPE_GLOBAL, "")
		cfg := testConfig(t, srv)
		cfg.RegistrationToken, cfg.Name = token, name
		cfg.EventFlushDelay = 10 * time.Millisecond
		// Placement changes reach a satellite with the token's next introspection.
		cfg.TokenCacheTTL = 200 * time.Millisecond
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		cfg.internalListener = ln
		m := &poolMember{name: name, cfg: cfg, done: make(chan error, 1), internal: "http://" + ln.Addr().String()}
		var ctx context.Context
		ctx, m.cancel = context.WithCancel(context.Background())
		go func() { m.done <- run(ctx, cfg, testLogger(t).With("satellite", name)) }()
		t.Cleanup(func() { m.cancel(); <-m.done })
		lb.targets = append(lb.targets, &url.URL{Scheme: "http", Host: cfg.listener.Addr().String()})
		members[i] = m
	}
	// Each satellite's id, from the internal URL its heartbeats report.
	srv.Wait(t.Context(), "heartbeats with internal URLs", 30*time.Second, func() bool {
		hbs, senders := srv.Heartbeats(), srv.HeartbeatSenders()
		for i, hb := range hbs {
			for _, m := range members {
				if hb.GetInternalUrl() == m.internal {
					m.id = senders[i]
				}
			}
		}
		for _, m := range members {
			if m.id == "" {
				return false
			}
		}
		return true
	})
	a, b, c := members[0], members[1], members[2]
	for _, hb := range srv.Heartbeats() {
		if hb.GetInternalUrl() != "" && hb.GetCapacity() != 100 {
			t.Errorf("heartbeat capacity %d, want the default 100", hb.GetCapacity())
		}
	}

	command, args := mcptest.Everything(t)
	teamID, userID, installationID := uuid.NewString(), uuid.NewString(), uuid.NewString()
	instance := func(id string) *satellitev1.Instance {
		return &satellitev1.Instance{
			Id: id, ContentHash: "h1", InstallationId: installationID, TeamId: teamID, UserId: userID,
			ServerSlug: "everything", ToolPrefix: "everything", Transport: satellitev1.Transport_TRANSPORT_STDIO,
			Command: command, Args: args, Env: map[string]string{"ACME_API_KEY": poolSecret},
		}
	}
	srv.SetSatelliteConfiguration(b.id, instance("acme-on-b"))
	srv.SetPlacement("acme", b.id)
	srv.SetAccessToken("ann", &satellitev1.IntrospectTokenResponse{
		Active: true, TeamId: teamID, TeamSlug: "acme", UserId: userID, ClientId: "client-1",
		Audience: lbServer.URL + "/teams/acme/mcp", Scopes: []string{gateway.ScopeRead, gateway.ScopeExecute},
		ExpiresAt: timestamppb.New(time.Now().Add(time.Hour)),
	})
	srv.Reconfigure()
	waitOnline := func(m *poolMember) {
		srv.Wait(t.Context(), m.name+" serving acme", 60*time.Second, func() bool {
			hbs, senders := srv.Heartbeats(), srv.HeartbeatSenders()
			for i := len(hbs) - 1; i >= 0; i-- {
				if senders[i] == m.id {
					for _, p := range hbs[i].GetProcesses() {
						if p.GetStatus() == satellitev1.InstanceStatus_INSTANCE_STATUS_ONLINE {
							return true
						}
					}
					return false
				}
			}
			return false
		})
	}
	waitOnline(b)
	// Every satellite knows all three peers.
	for _, m := range members {
		srv.Wait(t.Context(), m.name+" hearing of its peers", 30*time.Second, func() bool {
			sent := srv.ConfigurationsSent(m.id)
			return len(sent) > 0 && len(sent[len(sent)-1].GetPool().GetPeers()) == 3
		})
	}
	// A configuration reaches the satellites a moment after it is sent; give the peers list time to apply
	// by making one more round of it.
	srv.Reconfigure()

	call := func(cs *mcp.ClientSession, msg string) error {
		res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "everything__echo", Arguments: map[string]any{"message": msg}})
		if err != nil {
			return err
		}
		if res.IsError || len(res.Content) == 0 || !strings.Contains(res.Content[0].(*mcp.TextContent).Text, msg) {
			return fmt.Errorf("echo %q answered %+v", msg, res.Content)
		}
		return nil
	}
	connectVia := func(sse bool, rec *sessionRecorder) (*mcp.ClientSession, error) {
		client := mcp.NewClient(&mcp.Implementation{Name: "pool-test", Version: "1"}, nil)
		var tr mcp.Transport = &mcp.StreamableClientTransport{Endpoint: lbServer.URL + "/teams/acme/mcp", HTTPClient: &http.Client{Transport: rec}}
		if sse {
			tr = &mcp.SSEClientTransport{Endpoint: lbServer.URL + "/teams/acme/sse", HTTPClient: &http.Client{Transport: rec}}
		}
		return client.Connect(t.Context(), tr, &mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
	}

	// Both session transports, every request through the next satellite in turn.
	sessions := map[bool]*mcp.ClientSession{}
	recorder := &sessionRecorder{token: "ann"}
	for _, sse := range []bool{false, true} {
		cs, err := connectVia(sse, recorder)
		if err != nil {
			t.Fatalf("connect (sse=%v): %v", sse, err)
		}
		t.Cleanup(func() { cs.Close() })
		for i := range 4 {
			if err := call(cs, fmt.Sprintf("hello %v %d", sse, i)); err != nil {
				t.Fatalf("sse=%v call %d: %v", sse, i, err)
			}
		}
		sessions[sse] = cs
	}
	if id := recorder.last(); !strings.HasPrefix(id, b.id+".") {
		t.Errorf("session id %q does not name %s, which serves acme", id, b.name)
	}
	// The stateless 2026-07-28 era: each request forwarded on its own.
	for i := range 3 {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, lbServer.URL+"/teams/acme/mcp",
			strings.NewReader(`{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`))
		req.Header.Set("Authorization", "Bearer ann")
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Mcp-Protocol-Version", "2026-07-28")
		req.Header.Set("Mcp-Method", "tools/list")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte("everything__echo")) {
			t.Fatalf("stateless tools/list %d: status %d, body %.300s", i, resp.StatusCode, body)
		}
	}

	// Drain b: acme moves to c. The open sessions stay on b and go on working; a new one opens on c.
	srv.SetSatelliteConfiguration(c.id, instance("acme-on-c"))
	srv.SetPlacement("acme", c.id)
	srv.SetPoolDraining(b.id, true)
	srv.Reconfigure()
	waitOnline(c)
	srv.Wait(t.Context(), "b reporting its open sessions", 10*time.Second, func() bool {
		hbs, senders := srv.Heartbeats(), srv.HeartbeatSenders()
		for i := len(hbs) - 1; i >= 0; i-- {
			if senders[i] == b.id {
				return hbs[i].GetOpenSessions() == 2
			}
		}
		return false
	})
	for _, sse := range []bool{false, true} {
		if err := call(sessions[sse], "still on b"); err != nil {
			t.Fatalf("open session (sse=%v) while b drains: %v", sse, err)
		}
	}
	// The token's introspection is cached at each satellite for up to a minute; a fresh token sees the
	// new placement at once, as it would once the cache runs out.
	srv.SetAccessToken("ann-2", &satellitev1.IntrospectTokenResponse{
		Active: true, TeamId: teamID, TeamSlug: "acme", UserId: userID, ClientId: "client-1",
		Audience: lbServer.URL + "/teams/acme/mcp", Scopes: []string{gateway.ScopeRead, gateway.ScopeExecute},
		ExpiresAt: timestamppb.New(time.Now().Add(time.Hour)),
	})
	rec2 := &sessionRecorder{token: "ann-2"}
	fresh, err := connectVia(false, rec2)
	if err != nil {
		t.Fatalf("connect while b drains: %v", err)
	}
	defer func() { fresh.Close() }()
	if err := call(fresh, "on c"); err != nil {
		t.Fatal(err)
	}
	if id := rec2.last(); !strings.HasPrefix(id, c.id+".") {
		t.Errorf("new session %q while b drains, want it on %s", id, c.name)
	}
	for _, cs := range sessions {
		cs.Close()
	}
	srv.Wait(t.Context(), "b drained", 10*time.Second, func() bool {
		hbs, senders := srv.Heartbeats(), srv.HeartbeatSenders()
		for i := len(hbs) - 1; i >= 0; i-- {
			if senders[i] == b.id {
				return hbs[i].GetOpenSessions() == 0
			}
		}
		return false
	})

	// b's drain ends and acme gets a second satellite: it is placed on c, then b. c stops, and the control
	// plane has yet to notice: the client's next request is answered 404, and the satellites pass over c,
	// which they cannot reach, for b, the next in the placement.
	srv.SetPoolDraining(b.id, false)
	srv.SetPlacement("acme", c.id, b.id)
	srv.Reconfigure()
	srv.Wait(t.Context(), "b undrained", 10*time.Second, func() bool {
		sent := srv.ConfigurationsSent(b.id)
		return len(sent) > 0 && !sent[len(sent)-1].GetPool().GetDraining()
	})
	time.Sleep(300 * time.Millisecond) // the token cache's TTL: the satellites see the new placement
	start := time.Now()
	// The balancer's health check takes c out at once.
	lb.mu.Lock()
	lb.targets = lb.targets[:2]
	lb.mu.Unlock()
	c.cancel() // the cleanup waits for it to stop
	if err := call(fresh, "after c stopped"); err == nil {
		t.Fatal("a session of a stopped satellite answered")
	}
	fresh.Close()
	var failover time.Duration
	for {
		cs, err := connectVia(false, rec2)
		if err == nil {
			if err = call(cs, "after failover"); err == nil {
				failover = time.Since(start)
				fresh = cs
				break
			}
			cs.Close()
		}
		if time.Since(start) > 30*time.Second {
			t.Fatalf("no working session 30s after c stopped: %v", err)
		}
		time.Sleep(10 * time.Millisecond) // a client's pause before it tries again
	}
	t.Logf("failover: %v from c stopping to a successful call on a new session", failover)
	if id := rec2.last(); !strings.HasPrefix(id, b.id+".") {
		t.Errorf("session after failover %q, want it on %s", id, b.name)
	}

	// a never served acme: no configuration sent to it named acme's secret, nor does its state directory.
	for _, resp := range srv.ConfigurationsSent(a.id) {
		if strings.Contains(resp.String(), poolSecret) {
			t.Errorf("a configuration sent to %s carries acme's secret", a.name)
		}
	}
	_ = filepath.WalkDir(a.cfg.StateDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if data, err := os.ReadFile(path); err == nil && bytes.Contains(data, []byte(poolSecret)) {
			t.Errorf("%s holds acme's secret in %s", a.name, path)
		}
		return nil
	})
}
