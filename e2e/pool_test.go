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
	first := sats[placements[0].GetSatelliteId()]
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
	e2e.WaitFor(t, onlineTimeout, "the team's tool through the pool URL", func() error { return echo(session, "ready") })
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

	// kill -9 the team's first satellite; the poolBalancer's health check takes it out.
	start := time.Now()
	first.Signal(t, syscall.SIGKILL)
	lb.remove(first.URL)
	var failover time.Duration
	for {
		session.Close()
		if session, err = connectMCP(ctx, tm.endpoint, tm.token); err == nil {
			if err = echo(session, "after the kill"); err == nil {
				failover = time.Since(start)
				break
			}
		}
		if time.Since(start) > 60*time.Second {
			t.Fatalf("no working session a minute after the kill: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("failover: %v from SIGKILL to a successful call on a new session", failover)
}
