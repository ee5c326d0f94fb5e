package e2e_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/orrery/orrery/e2e"
	adminv1 "github.com/orrery/orrery/gen/orrery/admin/v1"
	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/internal/mcptest"
	"github.com/orrery/orrery/internal/pgtest"
)

// poolBalancer is the test's load balancer in front of the pool: round-robin over the satellites' public URLs.
type poolBalancer struct {
	mu      sync.Mutex
	targets []*url.URL
	next    int
}

func (lb *poolBalancer) add(rawURL string) {
	u, _ := url.Parse(rawURL)
	lb.mu.Lock()
	defer lb.mu.Unlock()
	lb.targets = append(lb.targets, u)
}

// remove takes a satellite out, as a health check would.
func (lb *poolBalancer) remove(rawURL string) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	lb.targets = slices.DeleteFunc(lb.targets, func(u *url.URL) bool { return u.String() == rawURL })
}

func (lb *poolBalancer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	(&httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			lb.mu.Lock()
			target := lb.targets[lb.next%len(lb.targets)]
			lb.next++
			lb.mu.Unlock()
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host
		},
		FlushInterval: -1,
	}).ServeHTTP(w, r)
}

// TestPoolBehindOneURL runs a control plane with a pool URL and three global satellites behind a
// round-robin poolBalancer at that URL. A team placed on two of them is reached through any of the three, on
// Streamable HTTP and legacy SSE; after its first satellite is killed with SIGKILL, the client opens a new
// session that the second serves, before the control plane has noticed anything.
func TestPoolBehindOneURL(t *testing.T) {
	t.Parallel()
	lb := &poolBalancer{}
	lbServer := httptest.NewServer(lb)
	t.Cleanup(func() {
		lbServer.CloseClientConnections()
		lbServer.Close()
	})
	cp := e2e.StartControlPlane(t, pgtest.NewDatabase(t), "ORRERY_POOL_URL="+lbServer.URL)
	sats := map[string]*e2e.Satellite{}
	for i := range 3 {
		sat := e2e.StartSatellite(t, cp, e2e.SatelliteConfig{
			Name: fmt.Sprintf("pool-%d", i), RegistrationToken: cp.RegistrationToken(t),
			Env: []string{"ORRERY_INTERNAL_LISTEN=127.0.0.1:0", "ORRERY_TOKEN_CACHE_TTL=200ms"},
		})
		var id string
		e2e.WaitFor(t, activeTimeout, "satellite "+sat.URL+" active", func() error {
			for _, s := range listSatellites(t, cp) {
				if s.GetUrl() == sat.URL && s.GetStatus() == satellitev1.SatelliteStatus_SATELLITE_STATUS_ACTIVE {
					id = s.GetId()
					return nil
				}
			}
			return fmt.Errorf("not active yet")
		})
		sats[id] = sat
		lb.add(sat.URL)
	}

	ctx := t.Context()
	conn, err := pgx.Connect(ctx, cp.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.WithoutCancel(ctx)) })
	command, args := mcptest.Everything(t)
	var catalogID string
	if err := conn.QueryRow(ctx, `insert into catalog_entries (slug, name, transport, command, args)
		values ('everything', 'everything', 'stdio', $1, $2) returning id`, command, args).Scan(&catalogID); err != nil {
		t.Fatal(err)
	}
	tm := seedTeam(t, conn, catalogID, "pooled", lbServer.URL)
	placed, err := cp.Admin().SetTeamReplicas(ctx, connect.NewRequest(&adminv1.SetTeamReplicasRequest{TeamId: tm.id, Replicas: 2}))
	if err != nil {
		t.Fatal(err)
	}
	placements := placed.Msg.GetPlacements()
	slices.SortFunc(placements, func(a, b *adminv1.Placement) int { return int(a.GetRank()) - int(b.GetRank()) })
	if len(placements) != 2 {
		t.Fatalf("placements %v, want two satellites", placements)
	}
	var first *e2e.Satellite
	for _, p := range placements {
		if _, err := cp.Admin().EnqueueCommand(ctx, connect.NewRequest(&adminv1.EnqueueCommandRequest{
			Target:   &adminv1.EnqueueCommandRequest_SatelliteId{SatelliteId: p.GetSatelliteId()},
			Action:   configure.Action,
			Priority: satellitev1.CommandPriority_COMMAND_PRIORITY_IMMEDIATE,
		})); err != nil {
			t.Fatal(err)
		}
	}

	echo := func(cs *mcp.ClientSession, msg string) error {
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "everything__echo", Arguments: map[string]any{"message": msg}})
		if err != nil {
			return err
		}
		if res.IsError || len(res.Content) == 0 || !strings.Contains(res.Content[0].(*mcp.TextContent).Text, msg) {
			return fmt.Errorf("echo %q answered %+v", msg, res.Content)
		}
		return nil
	}
	session, err := connectMCP(ctx, tm.endpoint, tm.token)
	if err != nil {
		t.Fatalf("connect through the pool URL: %v", err)
	}
	defer func() { session.Close() }()
	// Through every satellite in turn: each placed satellite serves what reaches it, once its instance runs.
	e2e.WaitFor(t, onlineTimeout, "the team's tool through the pool URL", func() error {
		for i := range 6 {
			if err := echo(session, fmt.Sprintf("ready %d", i)); err != nil {
				return err
			}
		}
		return nil
	})
	for i := range 6 {
		if err := echo(session, fmt.Sprintf("streamable %d", i)); err != nil {
			t.Fatalf("call %d through the pool URL: %v", i, err)
		}
	}
	legacy, err := mcp.NewClient(&mcp.Implementation{Name: "e2e-sse", Version: "1"}, nil).Connect(ctx,
		&mcp.SSEClientTransport{Endpoint: lbServer.URL + "/teams/pooled/sse", HTTPClient: &http.Client{Transport: bearerTransport{tm.token}}}, nil)
	if err != nil {
		t.Fatalf("legacy SSE through the pool URL: %v", err)
	}
	defer legacy.Close()
	for i := range 6 {
		if err := echo(legacy, fmt.Sprintf("sse %d", i)); err != nil {
			t.Fatalf("legacy call %d through the pool URL: %v", i, err)
		}
	}

	// A session of the 2025-11-25 era opens on the team's first satellite, its id says so.
	rec := &sessionIDs{token: tm.token}
	connectSession := func() (*mcp.ClientSession, error) {
		return mcp.NewClient(&mcp.Implementation{Name: "e2e-session", Version: "1"}, nil).Connect(ctx,
			&mcp.StreamableClientTransport{Endpoint: tm.endpoint, HTTPClient: &http.Client{Transport: rec}},
			&mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
	}
	old, err := connectSession()
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if err := echo(old, "session"); err != nil {
		t.Fatal(err)
	}
	// A placed satellite serves what reaches it; another forwards to the first placed.
	owner := func() string { id, _, _ := strings.Cut(rec.last(), "."); return id }
	placedOn := func(id string) bool {
		return slices.ContainsFunc(placements, func(p *adminv1.Placement) bool { return p.GetSatelliteId() == id })
	}
	drained := owner()
	if !placedOn(drained) {
		t.Fatalf("session %q, want it on a satellite the team is placed on", rec.last())
	}
	first = sats[drained]

	// Drain the session's satellite: the team moves at once, its open sessions go on there, and a new
	// session opens on a satellite that is not draining.
	if _, err := cp.Admin().DrainSatellite(ctx, connect.NewRequest(&adminv1.DrainSatelliteRequest{Id: drained})); err != nil {
		t.Fatal(err)
	}
	listed, err := cp.Admin().ListPlacements(ctx, connect.NewRequest(&adminv1.ListPlacementsRequest{Target: &adminv1.ListPlacementsRequest_TeamId{TeamId: tm.id}}))
	if err != nil {
		t.Fatal(err)
	}
	placements = listed.Msg.GetPlacements()
	slices.SortFunc(placements, func(a, b *adminv1.Placement) int { return int(a.GetRank()) - int(b.GetRank()) })
	if len(placements) != 2 || slices.ContainsFunc(placements, func(p *adminv1.Placement) bool { return sats[p.GetSatelliteId()] == first }) {
		t.Fatalf("placements after the drain %v, want two satellites other than the drained one", placements)
	}
	// Once the draining satellite has applied the configuration the drain sent it, the session is still
	// routed to it through every other and keeps its tools: a draining satellite keeps the teams it served
	// until its open sessions end.
	e2e.WaitFor(t, onlineTimeout, "the draining satellite's configure commands done", func() error {
		resp, err := cp.Admin().ListCommands(ctx, connect.NewRequest(&adminv1.ListCommandsRequest{SatelliteId: drained, PageSize: 500}))
		if err != nil {
			return err
		}
		for _, c := range resp.Msg.GetCommands() {
			if c.GetCommand().GetConfigure() != nil && c.GetState() != satellitev1.CommandState_COMMAND_STATE_COMPLETED {
				return fmt.Errorf("a configure command is %v", c.GetState())
			}
		}
		return nil
	})
	for i := range 4 {
		if err := echo(old, fmt.Sprintf("draining %d", i)); err != nil {
			t.Fatalf("call %d of the open session on the draining satellite: %v", i, err)
		}
	}
	e2e.WaitFor(t, onlineTimeout, "a new session on the team's new first satellite", func() error {
		cs, err := connectSession()
		if err != nil {
			return err
		}
		defer cs.Close()
		if err := echo(cs, "new session"); err != nil {
			return err
		}
		if !placedOn(owner()) {
			return fmt.Errorf("session %q, want it on a satellite the team is placed on now", rec.last())
		}
		return nil
	})
	old.Close()
	session.Close()
	legacy.Close()

	// kill -9 the satellite of a new session; the balancer's health check takes it out.
	if session, err = connectSession(); err != nil {
		t.Fatal(err)
	}
	killed := owner()
	first = sats[killed]
	start := time.Now()
	first.Signal(t, syscall.SIGKILL)
	lb.remove(first.URL)
	if err := echo(session, "after the kill"); err == nil {
		t.Fatal("a session of a killed satellite answered")
	}
	refused := time.Since(start)
	session.Close()
	var failover time.Duration
	for {
		cs, err := connectSession()
		if err == nil {
			if err = echo(cs, "after the kill"); err == nil {
				failover = time.Since(start)
				session = cs
				break
			}
			cs.Close()
		}
		if time.Since(start) > 60*time.Second {
			t.Fatalf("no working session a minute after the kill: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("failover: %v from SIGKILL to a successful call on a new session (the call on the old session failed after %v)", failover, refused)
	// Where the control plane places the team by now is its business (a drained satellite may be given it
	// back); the killed satellite it cannot be.
	if id := owner(); id == killed {
		t.Errorf("session after the kill %q is on the killed satellite", rec.last())
	}
	// Its sessions closed, the draining satellite reports drained with its next heartbeat.
	session.Close()
	e2e.WaitFor(t, onlineTimeout, "the draining satellite drained", func() error {
		for _, s := range listSatellites(t, cp) {
			if s.GetId() == drained && s.GetDrainedAt() != nil {
				return nil
			}
		}
		return fmt.Errorf("not drained yet")
	})
}

// sessionIDs adds a bearer token and remembers the session ids the endpoint answers with.
type sessionIDs struct {
	token string
	mu    sync.Mutex
	ids   []string
}

func (s *sessionIDs) RoundTrip(r *http.Request) (*http.Response, error) {
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

func (s *sessionIDs) last() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.ids) == 0 {
		return ""
	}
	return s.ids[len(s.ids)-1]
}
