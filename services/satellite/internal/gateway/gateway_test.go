package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/types/known/timestamppb"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/services/satellite/internal/mcpruntime"
)

// Protocol versions the tests speak: the newest of the session era, and the stateless era.
const (
	sessionVersion   = "2025-11-25"
	statelessVersion = "2026-07-28"
)

const (
	teamAcme   = "11111111-1111-4111-8111-111111111111"
	teamGlobex = "22222222-2222-4222-8222-222222222222"
	userAnn    = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"
	userBob    = "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb"
	userCid    = "cccccccc-cccc-4ccc-8ccc-cccccccccccc"
)

// longTool is a downstream tool name that makes the public name too long.
var longTool = strings.Repeat("very_long_tool_name_", 4)

// fakeClock is the gateway's time in tests.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// fakeIntrospector answers from a table of tokens and counts calls.
type fakeIntrospector struct {
	mu     sync.Mutex
	tokens map[string]*satellitev1.IntrospectTokenResponse
	calls  atomic.Int64
}

func (f *fakeIntrospector) Introspect(_ context.Context, token string) (*satellitev1.IntrospectTokenResponse, error) {
	f.calls.Add(1)
	if token == "boom" {
		return nil, errors.New("control plane unreachable")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if r, ok := f.tokens[token]; ok {
		return r, nil
	}
	return &satellitev1.IntrospectTokenResponse{}, nil
}

func (f *fakeIntrospector) set(token string, r *satellitev1.IntrospectTokenResponse) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tokens[token] = r
}

// fakeSink collects events.
type fakeSink struct {
	mu     sync.Mutex
	events []*satellitev1.Event
}

func (s *fakeSink) Emit(ev *satellitev1.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, ev)
}

func (s *fakeSink) requestLogs() []*satellitev1.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*satellitev1.Event
	for _, ev := range s.events {
		if ev.GetRequestLog() != nil {
			out = append(out, ev)
		}
	}
	return out
}

// fakeBackend serves real SDK servers over in-memory transports, as the runtime serves processes.
type fakeBackend struct {
	gw *Gateway
	// rawCalls counts the calls sent through SessionRequest.
	rawCalls atomic.Int64

	mu    sync.Mutex
	insts map[string]*fakeInstance
	subs  map[int]chan struct{}
	next  int
}

type fakeInstance struct {
	inst    Instance
	server  *mcp.Server
	session *mcp.ClientSession
	broken  bool
	// starting, when set, is what Session answers: an instance that did not come online in time.
	starting error
}

func (b *fakeBackend) Instances(teamID, userID string) []Instance {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []Instance
	for _, fi := range b.insts {
		if fi.inst.TeamID == teamID && fi.inst.UserID == userID {
			out = append(out, fi.inst)
		}
	}
	return out
}

func (b *fakeBackend) Session(_ context.Context, id string) (*mcp.ClientSession, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	fi := b.insts[id]
	if fi == nil || fi.broken {
		return nil, fmt.Errorf("instance %s is not running", id)
	}
	if fi.starting != nil {
		return nil, fi.starting
	}
	return fi.session, nil
}

// SessionRequest stands in for the runtime's channel beside the SDK's client: a tools/call goes through
// the session's client, and its result comes back encoded, as the server would have written it.
func (b *fakeBackend) SessionRequest(ctx context.Context, _ string, session *mcp.ClientSession, method string, params json.RawMessage) (json.RawMessage, error) {
	if method != "tools/call" {
		return nil, ErrNoSessionRequest
	}
	b.rawCalls.Add(1)
	var p struct {
		Meta      mcp.Meta        `json:"_meta"`
		Name      string          `json:"name"`
		Arguments json.RawMessage `json:"arguments"`
	}
	if err := json.Unmarshal(params, &p); err != nil {
		return nil, err
	}
	res, err := session.CallTool(ctx, &mcp.CallToolParams{Meta: p.Meta, Name: p.Name, Arguments: p.Arguments})
	if err != nil {
		return nil, err
	}
	return json.Marshal(res)
}

func (b *fakeBackend) Subscribe() (<-chan struct{}, func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	ch := make(chan struct{}, 1)
	id := b.next
	b.next++
	b.subs[id] = ch
	return ch, func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		delete(b.subs, id)
	}
}

func (b *fakeBackend) signal() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, ch := range b.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// add connects to server and registers an instance with the features it reports.
func (b *fakeBackend) add(t testing.TB, inst Instance, server *mcp.Server) {
	t.Helper()
	ctx := t.Context()
	// Pipes in place of a process's stdin and stdout, with the runtime's transport for stdio servers.
	serverIn, clientOut := io.Pipe()
	clientIn, serverOut := io.Pipe()
	ss, err := server.Connect(ctx, &mcp.IOTransport{Reader: serverIn, Writer: serverOut}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ss.Close() })
	client := mcp.NewClient(&mcp.Implementation{Name: "runtime"}, &mcp.ClientOptions{
		ProgressNotificationHandler: func(ctx context.Context, req *mcp.ProgressNotificationClientRequest) {
			b.gw.HandleProgress(ctx, req)
		},
		Capabilities: ClientCapabilities(),
	})
	transport := mcpruntime.NewStdioTransport(client, clientIn, clientOut)
	client.AddReceivingMiddleware(b.gw.ClientMiddleware)
	cs, err := client.Connect(ctx, transport, &mcp.ClientSessionOptions{ProtocolVersion: sessionVersion})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close() })
	fi := &fakeInstance{inst: inst, server: server, session: cs}
	b.mu.Lock()
	b.insts[inst.ID] = fi
	b.mu.Unlock()
	b.rediscover(t, inst.ID)
}

// rediscover lists the instance's features again, as the runtime does on list_changed, and signals.
func (b *fakeBackend) rediscover(t testing.TB, id string) {
	t.Helper()
	b.mu.Lock()
	fi := b.insts[id]
	b.mu.Unlock()
	ctx := t.Context()
	tools, err := fi.session.ListTools(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var resources []*mcp.Resource
	if r, err := fi.session.ListResources(ctx, nil); err == nil {
		resources = r.Resources
	}
	var templates []*mcp.ResourceTemplate
	if r, err := fi.session.ListResourceTemplates(ctx, nil); err == nil {
		templates = r.ResourceTemplates
	}
	var prompts []*mcp.Prompt
	if p, err := fi.session.ListPrompts(ctx, nil); err == nil {
		prompts = p.Prompts
	}
	b.update(id, func(inst *Instance) {
		inst.Tools, inst.Resources, inst.ResourceTemplates, inst.Prompts = tools.Tools, resources, templates, prompts
	})
}

func (b *fakeBackend) update(id string, f func(*Instance)) {
	b.mu.Lock()
	f(&b.insts[id].inst)
	b.mu.Unlock()
	b.signal()
}

// downstream is a real MCP server with raw tools: every tool echoes its raw arguments, "fail" reports
// a tool error, and "slow" reports progress and then waits to be cancelled.
type downstream struct {
	server *mcp.Server
	// started receives a value when "slow" starts, if nobody took the last one; cancelled when it is
	// cancelled.
	started, cancelled chan struct{}
}

func newDownstream(name string, tools ...string) *downstream {
	d := &downstream{
		server:    mcp.NewServer(&mcp.Implementation{Name: name}, nil),
		started:   make(chan struct{}, 1),
		cancelled: make(chan struct{}, 1),
	}
	for _, tool := range tools {
		d.addTool(tool)
	}
	return d
}

func (d *downstream) addTool(name string) {
	d.server.AddTool(&mcp.Tool{Name: name, InputSchema: map[string]any{"type": "object"}}, func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		switch req.Params.Name {
		case "fail":
			return &mcp.CallToolResult{IsError: true, Content: []mcp.Content{&mcp.TextContent{Text: "it failed"}}}, nil
		case "slow":
			select {
			case d.started <- struct{}{}:
			default:
			}
			if tok := req.Params.GetProgressToken(); tok != nil {
				req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: tok, Progress: 1, Total: 2, Message: "half"})
			}
			<-ctx.Done()
			d.cancelled <- struct{}{}
			return nil, ctx.Err()
		}
		return &mcp.CallToolResult{
			Content:           []mcp.Content{&mcp.TextContent{Text: string(req.Params.Arguments)}},
			StructuredContent: map[string]any{"tool": req.Params.Name},
		}, nil
	})
}

type bundle struct {
	url     string
	gw      *Gateway
	backend *fakeBackend
	intro   *fakeIntrospector
	events  *fakeSink
	clock   *fakeClock
	alpha   *downstream
}

type setupOptions struct {
	maxBody                         int64
	maxSessionsPerUser, maxSessions int
	// metrics, when set, receives the gateway's metrics.
	metrics *prometheus.Registry
	// tracer, when set, receives the gateway's spans.
	tracer trace.TracerProvider
	// allowedHosts is Config.AllowedHosts.
	allowedHosts []string
	// sdkOnly makes the backend no SessionRequester and leaves session-era calls to the SDK's server:
	// every call takes the SDK's client and server.
	sdkOnly bool
	// modern, when set, makes the backend a ModernBackend whose ModernSession it is.
	modern func(ctx context.Context, instanceID string) (*mcp.ClientSession, error)
}

// sdkOnlyBackend is the fake backend without its SessionRequest: calls take the SDK's client, and
// stateless calls the SDK's server.
type sdkOnlyBackend struct{ b *fakeBackend }

func (s sdkOnlyBackend) Instances(teamID, userID string) []Instance {
	return s.b.Instances(teamID, userID)
}
func (s sdkOnlyBackend) Session(ctx context.Context, id string) (*mcp.ClientSession, error) {
	return s.b.Session(ctx, id)
}
func (s sdkOnlyBackend) Subscribe() (<-chan struct{}, func()) { return s.b.Subscribe() }

// modernBackend is the fake backend with a 2026-07-28 lane.
type modernBackend struct {
	*fakeBackend
	modern func(ctx context.Context, instanceID string) (*mcp.ClientSession, error)
}

func (b modernBackend) ModernSession(ctx context.Context, instanceID string) (*mcp.ClientSession, error) {
	return b.modern(ctx, instanceID)
}

// setup serves a gateway on loopback with instances for three users in two teams:
//   - ann in acme: "alpha" (echo, bad.name, the long tool, slow, fail; a resource and a prompt;
//     request logging on), "beta" (echo; request logging off), and "gamma", which is offline;
//   - bob in acme: "delta" (echo, broken instance "epsilon");
//   - cid in globex: "secretserver" (classified).
//
// Tokens: "ann", "bob", "cid" are valid for their team with both scopes; "ann-read" lacks execute.
func setup(t testing.TB, opts setupOptions) *bundle {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	base := "http://" + srv.Listener.Addr().String()
	b := &bundle{
		url:     base,
		backend: &fakeBackend{insts: make(map[string]*fakeInstance), subs: make(map[int]chan struct{})},
		intro:   &fakeIntrospector{tokens: make(map[string]*satellitev1.IntrospectTokenResponse)},
		events:  &fakeSink{},
		clock:   newFakeClock(),
	}
	var reg prometheus.Registerer
	if opts.metrics != nil {
		reg = opts.metrics
	}
	var backend Backend = b.backend
	if opts.sdkOnly {
		backend = sdkOnlyBackend{b.backend}
	}
	if opts.modern != nil {
		backend = modernBackend{fakeBackend: b.backend, modern: opts.modern}
	}
	gw, err := New(slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})), Config{
		PublicURL:           base,
		AuthorizationServer: "https://cp.example.com",
		Backend:             backend,
		Introspector:        b.intro,
		Events:              b.events,
		AllowedOrigins:      []string{"https://console.example.com"},
		AllowedHosts:        opts.allowedHosts,
		MaxBodyBytes:        opts.maxBody,
		MaxSessionsPerUser:  opts.maxSessionsPerUser,
		MaxSessions:         opts.maxSessions,
		Metrics:             reg,
		TracerProvider:      opts.tracer,
		Now:                 b.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	gw.sessionCallsToSDK = opts.sdkOnly
	b.gw = gw
	b.backend.gw = gw
	srv.Config.Handler = gw
	srv.Start()
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { gw.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	b.alpha = newDownstream("alpha", "echo", "bad.name", longTool, "slow", "fail")
	b.alpha.server.AddResource(&mcp.Resource{URI: "file:///readme", Name: "readme"}, func(context.Context, *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
		return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: "file:///readme", Text: "hello"}}}, nil
	})
	b.alpha.server.AddPrompt(&mcp.Prompt{Name: "greet"}, func(context.Context, *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
		return &mcp.GetPromptResult{Messages: []*mcp.PromptMessage{{Role: "user", Content: &mcp.TextContent{Text: "hi"}}}}, nil
	})
	inst := func(id, slug, team, user string, online, logging bool) Instance {
		return Instance{ID: id, InstallationID: "inst-" + id, TeamID: team, UserID: user, ServerSlug: slug, Prefix: slug,
			Online: online, Status: map[bool]string{true: "online", false: "error"}[online], RequestLoggingEnabled: logging}
	}
	b.backend.add(t, inst("alpha-1", "alpha", teamAcme, userAnn, true, true), b.alpha.server)
	b.backend.add(t, inst("beta-1", "beta", teamAcme, userAnn, true, false), newDownstream("beta", "echo").server)
	b.backend.add(t, inst("gamma-1", "gamma", teamAcme, userAnn, false, true), newDownstream("gamma", "echo").server)
	b.backend.add(t, inst("delta-1", "delta", teamAcme, userBob, true, true), newDownstream("delta", "echo").server)
	b.backend.add(t, inst("epsilon-1", "epsilon", teamAcme, userBob, true, true), newDownstream("epsilon", "echo").server)
	b.backend.insts["epsilon-1"].broken = true
	b.backend.add(t, inst("secret-1", "secretserver", teamGlobex, userCid, true, true), newDownstream("secretserver", "classified").server)

	b.token("ann", teamAcme, "acme", userAnn, ScopeRead, ScopeExecute)
	b.token("ann-read", teamAcme, "acme", userAnn, ScopeRead)
	b.token("bob", teamAcme, "acme", userBob, ScopeRead, ScopeExecute)
	b.token("cid", teamGlobex, "globex", userCid, ScopeRead, ScopeExecute)
	return b
}

func (b *bundle) token(token, teamID, slug, userID string, scopes ...string) {
	b.intro.set(token, &satellitev1.IntrospectTokenResponse{
		Active: true, TeamId: teamID, TeamSlug: slug, UserId: userID, ClientId: "client-1",
		Audience: b.url + "/teams/" + slug + "/mcp", Scopes: scopes,
		ExpiresAt: timestamppb.New(b.clock.Now().Add(time.Hour)),
	})
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// testClient carries the tests' requests, on a transport of its own: every httptest.Server that closes
// closes http.DefaultTransport's idle connections, which broke a request of a parallel test that had just
// taken one ("CloseIdleConnections called").
var testClient = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}

// bearer adds a bearer token to every request and sends it with base, or testClient's transport.
type bearer struct {
	token string
	base  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	if b.base != nil {
		return b.base.RoundTrip(r)
	}
	return testClient.Transport.RoundTrip(r)
}

func httpClient(token string) *http.Client { return &http.Client{Transport: bearer{token: token}} }

type clientOptions struct {
	version     string
	sse         bool
	listChanged chan struct{}
	progress    chan *mcp.ProgressNotificationParams
	// query is appended to the endpoint URL, such as "?tools=search".
	query string
}

// connect opens an SDK client session to a team endpoint.
func (b *bundle) connect(t *testing.T, token, slug string, o clientOptions) *mcp.ClientSession {
	t.Helper()
	copts := &mcp.ClientOptions{}
	if o.listChanged != nil {
		copts.ToolListChangedHandler = func(context.Context, *mcp.ToolListChangedRequest) {
			select {
			case o.listChanged <- struct{}{}:
			default:
			}
		}
	}
	if o.progress != nil {
		copts.ProgressNotificationHandler = func(_ context.Context, req *mcp.ProgressNotificationClientRequest) {
			o.progress <- req.Params
		}
	}
	return b.connectWith(t, token, slug, o, copts)
}

// connectWith opens a session of an SDK client with the given options to a team endpoint.
func (b *bundle) connectWith(t *testing.T, token, slug string, o clientOptions, copts *mcp.ClientOptions) *mcp.ClientSession {
	t.Helper()
	client := mcp.NewClient(&mcp.Implementation{Name: "test-client", Version: "1"}, copts)
	var transport mcp.Transport = &mcp.StreamableClientTransport{Endpoint: b.url + "/teams/" + slug + "/mcp" + o.query, HTTPClient: httpClient(token)}
	if o.sse {
		transport = &mcp.SSEClientTransport{Endpoint: b.url + "/teams/" + slug + "/sse" + o.query, HTTPClient: httpClient(token)}
	}
	cs, err := client.Connect(t.Context(), transport, &mcp.ClientSessionOptions{ProtocolVersion: o.version})
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

func toolNames(t *testing.T, cs *mcp.ClientSession) []string {
	t.Helper()
	res, err := cs.ListTools(t.Context(), nil)
	if err != nil {
		t.Fatalf("list tools: %v", err)
	}
	var names []string
	for _, tool := range res.Tools {
		names = append(names, tool.Name)
	}
	return names
}

func callText(t *testing.T, res *mcp.CallToolResult) string {
	t.Helper()
	if len(res.Content) != 1 {
		t.Fatalf("content = %v", res.Content)
	}
	return res.Content[0].(*mcp.TextContent).Text
}

var eras = []struct {
	name string
	opts clientOptions
}{
	{"session era", clientOptions{version: sessionVersion}},
	{"stateless era", clientOptions{version: statelessVersion}},
	{"legacy SSE", clientOptions{version: "2024-11-05", sse: true}},
}

func TestListAndCall(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{})
	longName := PublicName("alpha", longTool)
	want := []string{"alpha__bad_name", "alpha__echo", "alpha__fail", "alpha__slow", longName, "beta__echo"}
	slices.Sort(want)
	for _, era := range eras {
		t.Run(era.name, func(t *testing.T) {
			t.Parallel()
			cs := b.connect(t, "ann", "acme", era.opts)
			if got := cs.InitializeResult().ProtocolVersion; got != era.opts.version {
				t.Errorf("negotiated %s, want %s", got, era.opts.version)
			}
			if got := toolNames(t, cs); !slices.Equal(got, want) {
				t.Errorf("tools = %v, want %v", got, want)
			}
			// Key order, spacing of numbers and nesting must survive the trip.
			args := json.RawMessage(`{"z":1.50,"a":{"n":[true,null,"é"]},"m":"x"}`)
			res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "alpha__echo", Arguments: args})
			if err != nil {
				t.Fatal(err)
			}
			if got := callText(t, res); got != string(args) {
				t.Errorf("downstream saw %s, want %s", got, args)
			}
			if sc, _ := res.StructuredContent.(map[string]any); sc["tool"] != "echo" {
				t.Errorf("structured content = %v", res.StructuredContent)
			}
			res, err = cs.CallTool(t.Context(), &mcp.CallToolParams{Name: longName, Arguments: map[string]any{}})
			if err != nil {
				t.Fatal(err)
			}
			if sc, _ := res.StructuredContent.(map[string]any); sc["tool"] != longTool {
				t.Errorf("long tool routed to %v", res.StructuredContent)
			}
			res, err = cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "beta__echo", Arguments: map[string]any{"k": "v"}})
			if err != nil {
				t.Fatal(err)
			}
			if got := callText(t, res); got != `{"k":"v"}` {
				t.Errorf("beta saw %s", got)
			}

			resources, err := cs.ListResources(t.Context(), nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(resources.Resources) != 1 || resources.Resources[0].URI != "file:///readme" || resources.Resources[0].Name != "alpha__readme" {
				t.Errorf("resources = %+v", resources.Resources)
			}
			read, err := cs.ReadResource(t.Context(), &mcp.ReadResourceParams{URI: "file:///readme"})
			if err != nil || len(read.Contents) != 1 || read.Contents[0].Text != "hello" {
				t.Errorf("read = %+v, %v", read, err)
			}
			prompt, err := cs.GetPrompt(t.Context(), &mcp.GetPromptParams{Name: "alpha__greet"})
			if err != nil || len(prompt.Messages) != 1 {
				t.Errorf("prompt = %+v, %v", prompt, err)
			}
		})
	}
}

func TestBrokenInstanceDoesNotBreakOthers(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{})
	cs := b.connect(t, "bob", "acme", clientOptions{version: sessionVersion})
	if got, want := toolNames(t, cs), []string{"delta__echo", "epsilon__echo"}; !slices.Equal(got, want) {
		t.Fatalf("tools = %v, want %v", got, want)
	}
	if _, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "epsilon__echo"}); err == nil || strings.Contains(err.Error(), "not running") {
		t.Errorf("call to broken instance: %v, want a generic error", err)
	}
	if _, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "delta__echo"}); err != nil {
		t.Errorf("call to healthy instance after a failure: %v", err)
	}
}

func TestListChanged(t *testing.T) {
	t.Parallel()
	for _, era := range eras {
		t.Run(era.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, setupOptions{})
			o := era.opts
			o.listChanged = make(chan struct{}, 1)
			cs := b.connect(t, "ann", "acme", o)
			if got := toolNames(t, cs); slices.Contains(got, "alpha__added") {
				t.Fatalf("tools = %v before the change", got)
			}
			b.alpha.addTool("added")
			b.backend.rediscover(t, "alpha-1")
			select {
			case <-o.listChanged:
			case <-time.After(5 * time.Second):
				t.Fatal("no tools/list_changed after a tool was added")
			}
			if got := toolNames(t, cs); !slices.Contains(got, "alpha__added") {
				t.Errorf("tools = %v after the change", got)
			}

			// An instance that goes down is left out.
			b.backend.update("beta-1", func(inst *Instance) { inst.Online, inst.Status = false, "crashed" })
			select {
			case <-o.listChanged:
			case <-time.After(5 * time.Second):
				t.Fatal("no tools/list_changed after an instance went down")
			}
			if got := toolNames(t, cs); slices.Contains(got, "beta__echo") {
				t.Errorf("tools = %v after beta went down", got)
			}
		})
	}
}

func TestTeamIsolation(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{})
	ann := b.connect(t, "ann", "acme", clientOptions{version: sessionVersion})
	cid := b.connect(t, "cid", "globex", clientOptions{version: sessionVersion})
	annTools := toolNames(t, ann)
	cidTools := toolNames(t, cid)
	if !slices.Equal(cidTools, []string{"secretserver__classified"}) {
		t.Errorf("cid sees %v", cidTools)
	}
	for _, name := range annTools {
		if strings.Contains(name, "secret") {
			t.Errorf("ann sees %s", name)
		}
	}
	_, err := ann.CallTool(t.Context(), &mcp.CallToolParams{Name: "secretserver__classified"})
	if err == nil {
		t.Fatal("ann called globex's tool")
	}
	_, err2 := cid.CallTool(t.Context(), &mcp.CallToolParams{Name: "alpha__echo"})
	if err2 == nil {
		t.Fatal("cid called acme's tool")
	}
	for _, leak := range []string{"classified", "secret-1", teamGlobex} {
		if strings.Contains(strings.ReplaceAll(err.Error(), "secretserver__classified", ""), leak) {
			t.Errorf("error %q names %s", err, leak)
		}
	}
	for _, leak := range []string{"beta", "bad_name", "alpha-1", teamAcme} {
		if strings.Contains(err2.Error(), leak) {
			t.Errorf("error %q names %s", err2, leak)
		}
	}
	// A globex token is worthless at the acme endpoint, and the other way round.
	for _, tc := range []struct{ token, slug string }{{"cid", "acme"}, {"ann", "globex"}} {
		resp := b.do(t, http.MethodPost, "/teams/"+tc.slug+"/mcp", tc.token, initializeBody, nil)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s at %s: status %d", tc.token, tc.slug, resp.StatusCode)
		}
	}
	// Two users of one team see only their own instances.
	bob := b.connect(t, "bob", "acme", clientOptions{version: statelessVersion})
	if got := toolNames(t, bob); !slices.Equal(got, []string{"delta__echo", "epsilon__echo"}) {
		t.Errorf("bob sees %v", got)
	}
}

const initializeBody = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`

// do sends a raw request to the gateway.
func (b *bundle) do(t testing.TB, method, path, token, body string, header map[string]string) *http.Response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, b.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	if host := header["Host"]; host != "" {
		req.Host = host
	}
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// openSession initializes a session-era session with raw HTTP and returns its id.
func (b *bundle) openSession(t *testing.T, token string) string {
	t.Helper()
	resp := b.do(t, http.MethodPost, "/teams/acme/mcp", token, initializeBody, nil)
	io.Copy(io.Discard, resp.Body)
	id := resp.Header.Get("Mcp-Session-Id")
	if resp.StatusCode != http.StatusOK || id == "" {
		t.Fatalf("initialize: status %d, session %q", resp.StatusCode, id)
	}
	resp = b.do(t, http.MethodPost, "/teams/acme/mcp", token, `{"jsonrpc":"2.0","method":"notifications/initialized"}`,
		map[string]string{"Mcp-Session-Id": id, "Mcp-Protocol-Version": sessionVersion})
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("initialized: status %d", resp.StatusCode)
	}
	return id
}

func TestUnauthenticated(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{})
	sid := b.openSession(t, "ann")
	b.intro.set("foreign-audience", &satellitev1.IntrospectTokenResponse{
		Active: true, TeamId: teamAcme, TeamSlug: "acme", UserId: userAnn, Scopes: []string{ScopeRead, ScopeExecute},
		Audience: "https://elsewhere.example.com/teams/acme/mcp", ExpiresAt: timestamppb.New(b.clock.Now().Add(time.Hour)),
	})
	b.intro.set("expired", &satellitev1.IntrospectTokenResponse{
		Active: true, TeamId: teamAcme, TeamSlug: "acme", UserId: userAnn, Scopes: []string{ScopeRead, ScopeExecute},
		Audience: b.url + "/teams/acme/mcp", ExpiresAt: timestamppb.New(b.clock.Now().Add(-time.Second)),
	})
	b.intro.set("revoked", &satellitev1.IntrospectTokenResponse{Active: false})
	wantHeader := `Bearer resource_metadata="` + b.url + `/.well-known/oauth-protected-resource/teams/acme/mcp"`
	for _, method := range []string{http.MethodPost, http.MethodGet, http.MethodDelete} {
		for _, token := range []string{"", "unknown", "foreign-audience", "expired", "revoked"} {
			t.Run(method+"/"+token, func(t *testing.T) {
				t.Parallel()
				body := ""
				if method == http.MethodPost {
					body = `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`
				}
				resp := b.do(t, method, "/teams/acme/mcp", token, body, map[string]string{"Mcp-Session-Id": sid, "Mcp-Protocol-Version": sessionVersion})
				if resp.StatusCode != http.StatusUnauthorized {
					t.Errorf("status %d, want 401", resp.StatusCode)
				}
				if got := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(got, wantHeader) {
					t.Errorf("WWW-Authenticate = %q, want prefix %q", got, wantHeader)
				}
			})
		}
	}
	t.Run("SSE", func(t *testing.T) {
		t.Parallel()
		resp := b.do(t, http.MethodGet, "/teams/acme/sse", "", "", nil)
		if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), wantHeader) {
			t.Errorf("status %d, WWW-Authenticate %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
	})
	t.Run("insufficient scope", func(t *testing.T) {
		t.Parallel()
		resp := b.do(t, http.MethodPost, "/teams/acme/mcp", "ann-read",
			`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"alpha__echo","arguments":{}}}`,
			map[string]string{"Mcp-Protocol-Version": statelessVersion})
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("status %d, want 403", resp.StatusCode)
		}
		if got := resp.Header.Get("WWW-Authenticate"); !strings.Contains(got, `error="insufficient_scope"`) || !strings.Contains(got, ScopeExecute) {
			t.Errorf("WWW-Authenticate = %q", got)
		}
		// Listing is fine with mcp:read.
		cs := b.connect(t, "ann-read", "acme", clientOptions{version: sessionVersion})
		if len(toolNames(t, cs)) == 0 {
			t.Error("no tools with mcp:read")
		}
		if _, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "alpha__echo"}); err == nil {
			t.Error("call without mcp:tools:execute succeeded")
		}
	})
}

func TestSessionBoundToUser(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{})
	sid := b.openSession(t, "ann")
	h := map[string]string{"Mcp-Session-Id": sid, "Mcp-Protocol-Version": sessionVersion}
	list := `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`
	for _, method := range []string{http.MethodPost, http.MethodGet, http.MethodDelete} {
		body := ""
		if method == http.MethodPost {
			body = list
		}
		resp := b.do(t, method, "/teams/acme/mcp", "bob", body, h)
		if resp.StatusCode < 400 {
			t.Errorf("%s with bob's token on ann's session: status %d", method, resp.StatusCode)
		}
		data, _ := io.ReadAll(resp.Body)
		if bytes.Contains(data, []byte("alpha")) {
			t.Errorf("%s leaked ann's tools: %s", method, data)
		}
	}
	// The same user with a token of another team cannot use the session either.
	b.token("ann-globex", teamGlobex, "globex", userAnn, ScopeRead, ScopeExecute)
	if resp := b.do(t, http.MethodPost, "/teams/globex/mcp", "ann-globex", list, h); resp.StatusCode < 400 {
		t.Errorf("ann's globex token on her acme session: status %d", resp.StatusCode)
	}
	resp := b.do(t, http.MethodPost, "/teams/acme/mcp", "ann", list, h)
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !bytes.Contains(data, []byte("alpha__echo")) {
		t.Errorf("ann's own session: status %d, body %s", resp.StatusCode, data)
	}
	resp = b.do(t, http.MethodDelete, "/teams/acme/mcp", "ann", "", h)
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("ann's DELETE: status %d", resp.StatusCode)
	}
}

func TestOrigin(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{})
	for _, tc := range []struct {
		origin string
		want   int
	}{
		{"https://evil.example.com", http.StatusForbidden},
		{"null", http.StatusForbidden},
		{"https://console.example.com", http.StatusOK},
		{b.url, http.StatusOK},
		{"", http.StatusOK},
	} {
		h := map[string]string{}
		if tc.origin != "" {
			h["Origin"] = tc.origin
		}
		resp := b.do(t, http.MethodPost, "/teams/acme/mcp", "ann", initializeBody, h)
		if resp.StatusCode != tc.want {
			t.Errorf("Origin %q: status %d, want %d", tc.origin, resp.StatusCode, tc.want)
		}
	}
}

// TestAllowedHosts: behind a proxy that passes Host on, the hosts it is reached by are listed; requests
// addressed to any other host are refused, which is what stops a DNS-rebinding page whose name resolves
// to the satellite or its proxy, and a listed host's own origin is as good as the public one.
func TestAllowedHosts(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{allowedHosts: []string{"localhost:8080", "[::1]", "127.0.0.1"}})
	public := strings.TrimPrefix(b.url, "http://")
	for _, tc := range []struct {
		host, origin string
		want         int
	}{
		{public, "", http.StatusOK},
		{public, b.url, http.StatusOK},
		{"localhost:8080", "http://localhost:8080", http.StatusOK},
		{"localhost:8080", "https://localhost:8080", http.StatusOK},
		{"[::1]:1234", "http://[::1]:1234", http.StatusOK},
		{"127.0.0.1:5555", "", http.StatusOK},
		{public, "http://localhost:8080", http.StatusOK},
		{"evil.example.com", "http://evil.example.com", http.StatusForbidden},
		{"evil.example.com", "", http.StatusForbidden},
		{"localhost:9999", "http://localhost:9999", http.StatusForbidden},
		{"localhost:8080", "http://evil.example.com", http.StatusForbidden},
		{public, "http://localhost:8080/path", http.StatusForbidden},
		{public, "ftp://localhost:8080", http.StatusForbidden},
	} {
		h := map[string]string{"Host": tc.host}
		if tc.origin != "" {
			h["Origin"] = tc.origin
		}
		resp := b.do(t, http.MethodPost, "/teams/acme/mcp", "ann", initializeBody, h)
		if resp.StatusCode != tc.want {
			t.Errorf("Host %q, Origin %q: status %d, want %d", tc.host, tc.origin, resp.StatusCode, tc.want)
		}
	}
	// The public URL's host counts at any port, as a proxy passes it on (sat.example.com:443); a host
	// that only starts like it does not.
	public = hostName(public)
	proxied := setup(t, setupOptions{allowedHosts: []string{"localhost:8080"}})
	for host, want := range map[string]int{
		public + ":443":        http.StatusOK,
		public:                 http.StatusOK,
		public + "0:443":       http.StatusForbidden,
		"evil.example.com:443": http.StatusForbidden,
		public + ".evil.com":   http.StatusForbidden,
		"localhost:443":        http.StatusForbidden,
	} {
		if resp := proxied.do(t, http.MethodPost, "/teams/acme/mcp", "ann", initializeBody, map[string]string{"Host": host}); resp.StatusCode != want {
			t.Errorf("Host %q: status %d, want %d", host, resp.StatusCode, want)
		}
	}
	// Without the list, Host is not checked: a proxy that rewrites it needs nothing.
	plain := setup(t, setupOptions{})
	if resp := plain.do(t, http.MethodPost, "/teams/acme/mcp", "ann", initializeBody, map[string]string{"Host": "proxy.internal"}); resp.StatusCode != http.StatusOK {
		t.Errorf("without allowed hosts, a rewritten Host: status %d", resp.StatusCode)
	}
}

func TestBodyCap(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{maxBody: 2048})
	big := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"alpha__echo","arguments":{"x":"` + strings.Repeat("a", 4096) + `"}}}`
	resp := b.do(t, http.MethodPost, "/teams/acme/mcp", "ann", big, map[string]string{"Mcp-Protocol-Version": statelessVersion})
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("status %d, want 413", resp.StatusCode)
	}
	// Without a Content-Length the cap still holds.
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, b.url+"/teams/acme/mcp", io.MultiReader(strings.NewReader(big)))
	req.ContentLength = -1
	req.Header.Set("Authorization", "Bearer ann")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	chunked, err := testClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	chunked.Body.Close()
	if chunked.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("chunked: status %d, want 413", chunked.StatusCode)
	}
	if resp := b.do(t, http.MethodPost, "/teams/acme/mcp", "ann", initializeBody, nil); resp.StatusCode != http.StatusOK {
		t.Errorf("small body: status %d", resp.StatusCode)
	}
}

func TestMetadata(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{})
	resp := b.do(t, http.MethodGet, "/.well-known/oauth-protected-resource/teams/acme/mcp", "", "", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	var md struct {
		Resource             string   `json:"resource"`
		AuthorizationServers []string `json:"authorization_servers"`
		ScopesSupported      []string `json:"scopes_supported"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&md); err != nil {
		t.Fatal(err)
	}
	if md.Resource != b.url+"/teams/acme/mcp" || !slices.Equal(md.AuthorizationServers, []string{"https://cp.example.com"}) ||
		!slices.Contains(md.ScopesSupported, ScopeExecute) {
		t.Errorf("metadata = %+v", md)
	}
}

func TestLegacySSESessionBound(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{})
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, b.url+"/teams/acme/sse", nil)
	req.Header.Set("Authorization", "Bearer ann")
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 512)
	n, _ := resp.Body.Read(buf)
	_, endpoint, ok := strings.Cut(string(buf[:n]), "data: ")
	if !ok {
		t.Fatalf("no endpoint event in %q", buf[:n])
	}
	endpoint = strings.TrimSpace(endpoint)
	if !strings.HasPrefix(endpoint, "/teams/acme/sse?sessionid=") {
		t.Fatalf("endpoint = %q", endpoint)
	}
	other := b.do(t, http.MethodPost, endpoint, "bob", initializeBody, nil)
	if other.StatusCode != http.StatusNotFound {
		t.Errorf("bob posting to ann's SSE session: status %d", other.StatusCode)
	}
	own := b.do(t, http.MethodPost, endpoint, "ann", initializeBody, nil)
	if own.StatusCode != http.StatusAccepted {
		t.Errorf("ann posting to her SSE session: status %d", own.StatusCode)
	}
}

func TestRequestLogs(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{})
	cs := b.connect(t, "ann", "acme", clientOptions{version: sessionVersion})
	for _, name := range []string{"alpha__echo", "beta__echo", "alpha__fail"} {
		if _, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: name, Arguments: map[string]any{"q": 1}}); err != nil {
			t.Fatal(err)
		}
	}
	logs := b.events.requestLogs()
	if len(logs) != 3 {
		t.Fatalf("%d request logs, want 3", len(logs))
	}
	byInstance := map[string][]*satellitev1.Event{}
	for _, ev := range logs {
		byInstance[ev.GetInstanceId()] = append(byInstance[ev.GetInstanceId()], ev)
	}
	echo := byInstance["alpha-1"][0].GetRequestLog()
	if ev := byInstance["alpha-1"][0]; ev.GetTeamId() != teamAcme || ev.GetInstallationId() != "inst-alpha-1" {
		t.Errorf("event = %v", ev)
	}
	if echo.GetUserId() != userAnn || echo.GetToolName() != "echo" || !echo.GetSuccess() || echo.GetDuration() == nil {
		t.Errorf("echo log = %v", echo)
	}
	if echo.GetRequest().GetStructValue().GetFields()["q"].GetNumberValue() != 1 || echo.GetResponse() == nil {
		t.Errorf("echo log bodies = %v / %v", echo.GetRequest(), echo.GetResponse())
	}
	fail := byInstance["alpha-1"][1].GetRequestLog()
	if fail.GetToolName() != "fail" || fail.GetSuccess() || fail.GetError() != "it failed" {
		t.Errorf("fail log = %v", fail)
	}
	beta := byInstance["beta-1"][0].GetRequestLog()
	if !beta.GetSuccess() || beta.GetRequest() != nil || beta.GetResponse() != nil {
		t.Errorf("beta log with request logging disabled = %v", beta)
	}
	// Sizes are counted for usage with or without bodies: the arguments as the client sent them.
	for _, rl := range []*satellitev1.RequestLog{echo, beta} {
		if rl.GetRequestBytes() != uint64(len(`{"q":1}`)) || rl.GetResponseBytes() == 0 {
			t.Errorf("%s log sizes = %d in, %d out; want 7 in and the result's size out", rl.GetToolName(),
				rl.GetRequestBytes(), rl.GetResponseBytes())
		}
	}
}

func TestProgressAndCancellation(t *testing.T) {
	t.Parallel()
	for _, era := range eras[:2] {
		t.Run(era.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, setupOptions{})
			o := era.opts
			o.progress = make(chan *mcp.ProgressNotificationParams, 4)
			cs := b.connect(t, "ann", "acme", o)
			params := &mcp.CallToolParams{Name: "alpha__slow", Arguments: map[string]any{}}
			progressAndCancellation(t, b, cs, o.progress, params)
		})
	}
}

// progressAndCancellation makes a call of alpha's slow tool with a progress token: the caller gets the
// tool's progress notification under its own token, and cancelling the call cancels the downstream one.
func progressAndCancellation(t *testing.T, b *bundle, cs *mcp.ClientSession, progress chan *mcp.ProgressNotificationParams, params *mcp.CallToolParams) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	params.SetProgressToken("caller-token")
	go func() {
		_, err := cs.CallTool(ctx, params)
		errc <- err
	}()
	select {
	case p := <-progress:
		if p.ProgressToken != "caller-token" || p.Progress != 1 || p.Message != "half" {
			t.Errorf("progress = %+v", p)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no progress notification")
	}
	cancel()
	select {
	case <-b.alpha.cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("downstream call not cancelled")
	}
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("call error = %v", err)
	}
}

// TestRevokedTokensAreRefusedAtOnce announces a cached token as revoked: the next request is refused
// without waiting for the cache entry to run out or asking the control plane again.
func TestRevokedTokensAreRefusedAtOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{})
	list := `{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`
	h := map[string]string{"Mcp-Protocol-Version": statelessVersion, "Mcp-Method": "tools/list"}
	if resp := b.do(t, http.MethodPost, "/teams/acme/mcp", "ann", list, h); resp.StatusCode != http.StatusOK {
		t.Fatalf("before revocation: status %d", resp.StatusCode)
	}
	ann := sha256.Sum256([]byte("ann"))
	n, err := b.gw.RevokeTokens([]string{hex.EncodeToString(ann[:]), "not-a-hash"})
	if n != 1 || err == nil || !strings.Contains(err.Error(), "not-a-hash") {
		t.Fatalf("RevokeTokens = %d, %v; want 1 and an error naming the malformed hash", n, err)
	}
	if resp := b.do(t, http.MethodPost, "/teams/acme/mcp", "ann", list, h); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("after revocation: status %d, want 401", resp.StatusCode)
	}
	if n := b.intro.calls.Load(); n != 1 {
		t.Errorf("%d introspections, want 1: a revoked token needs no asking", n)
	}
}

// openSessions counts the open sessions of every user that initialized.
func (g *Gateway) openSessions() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, us := range g.users {
		n += len(us.sessions)
	}
	return n
}

// TestRevocationClosesSessions opens a Streamable HTTP and a legacy SSE session with a token, then
// announces the token revoked: both sessions close, streams included, and the same client cannot go on.
func TestRevocationClosesSessions(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{})
	ctx := t.Context()
	// Clients of the stateless 2026-07-28 era hold no session; every request of theirs is checked anyway.
	streamable := b.connect(t, "ann", "acme", clientOptions{version: "2025-11-25"})
	legacy := b.connect(t, "ann", "acme", clientOptions{sse: true})
	for _, cs := range []*mcp.ClientSession{streamable, legacy} {
		if _, err := cs.ListTools(ctx, nil); err != nil {
			t.Fatal(err)
		}
	}
	if n := b.gw.openSessions(); n != 2 {
		t.Fatalf("%d open sessions, want 2", n)
	}
	ann := sha256.Sum256([]byte("ann"))
	if _, err := b.gw.RevokeTokens([]string{hex.EncodeToString(ann[:])}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for b.gw.openSessions() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := b.gw.openSessions(); n != 0 {
		t.Errorf("%d sessions still open after their token was revoked", n)
	}
	for name, cs := range map[string]*mcp.ClientSession{"streamable": streamable, "legacy SSE": legacy} {
		if _, err := cs.ListTools(ctx, nil); err == nil {
			t.Errorf("%s session still answers after its token was revoked", name)
		}
	}
}

func TestIntrospectionCache(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{})
	list := `{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`
	h := map[string]string{"Mcp-Protocol-Version": statelessVersion, "Mcp-Method": "tools/list"}
	for range 10 {
		if resp := b.do(t, http.MethodPost, "/teams/acme/mcp", "ann", list, h); resp.StatusCode != http.StatusOK {
			data, _ := io.ReadAll(resp.Body)
			t.Fatalf("status %d: %s", resp.StatusCode, data)
		}
	}
	if n := b.intro.calls.Load(); n != 1 {
		t.Errorf("%d introspections for 10 requests, want 1", n)
	}
	b.clock.Advance(61 * time.Second)
	b.do(t, http.MethodPost, "/teams/acme/mcp", "ann", list, h)
	if n := b.intro.calls.Load(); n != 2 {
		t.Errorf("%d introspections after the TTL, want 2", n)
	}

	// A token expiring sooner than the TTL is not trusted past its expiry, even from the cache.
	b.intro.set("short", &satellitev1.IntrospectTokenResponse{
		Active: true, TeamId: teamAcme, TeamSlug: "acme", UserId: userAnn, Scopes: []string{ScopeRead},
		Audience: b.url + "/teams/acme/mcp", ExpiresAt: timestamppb.New(b.clock.Now().Add(10 * time.Second)),
	})
	if resp := b.do(t, http.MethodPost, "/teams/acme/mcp", "short", list, h); resp.StatusCode != http.StatusOK {
		t.Fatalf("short-lived token: status %d", resp.StatusCode)
	}
	before := b.intro.calls.Load()
	b.clock.Advance(11 * time.Second)
	if resp := b.do(t, http.MethodPost, "/teams/acme/mcp", "short", list, h); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("expired token: status %d", resp.StatusCode)
	}
	if b.intro.calls.Load() != before+1 {
		t.Errorf("expired cache entry was reused")
	}
}

func TestVersionNegotiation(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{})
	for _, tc := range []struct{ asked, want string }{
		{"2030-01-01", sessionVersion},
		{"2025-03-26", "2025-03-26"},
		{"2024-11-05", "2024-11-05"},
	} {
		body := strings.Replace(initializeBody, sessionVersion, tc.asked, 1)
		resp := b.do(t, http.MethodPost, "/teams/acme/mcp", "ann", body, nil)
		data, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || !bytes.Contains(data, []byte(`"protocolVersion":"`+tc.want+`"`)) {
			t.Errorf("initialize asking %s: status %d, body %s", tc.asked, resp.StatusCode, data)
		}
	}
}

func TestResourceCollision(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{})
	for _, slug := range []string{"zulu", "able"} {
		d := newDownstream(slug, "echo")
		d.server.AddResource(&mcp.Resource{URI: "file:///shared", Name: "shared"}, func(context.Context, *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
			return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: "file:///shared", Text: slug}}}, nil
		})
		b.backend.add(t, Instance{ID: slug + "-1", InstallationID: "inst-" + slug, TeamID: teamGlobex, UserID: userCid,
			ServerSlug: slug, Prefix: slug, Online: true, Status: "online"}, d.server)
	}
	cs := b.connect(t, "cid", "globex", clientOptions{version: sessionVersion})
	res, err := cs.ListResources(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Resources) != 1 || res.Resources[0].Name != "able__shared" {
		t.Fatalf("resources = %+v", res.Resources)
	}
	read, err := cs.ReadResource(t.Context(), &mcp.ReadResourceParams{URI: "file:///shared"})
	if err != nil || read.Contents[0].Text != "able" {
		t.Errorf("read = %+v, %v", read, err)
	}
}

func TestIntrospectionFailure(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{})
	resp := b.do(t, http.MethodPost, "/teams/acme/mcp", "boom", initializeBody, nil)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("status %d, want 503", resp.StatusCode)
	}
	// Failures are not cached.
	b.do(t, http.MethodPost, "/teams/acme/mcp", "boom", initializeBody, nil)
	if n := b.intro.calls.Load(); n != 2 {
		t.Errorf("%d introspections, want 2", n)
	}
}

func TestCORSPreflight(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{})
	resp := b.do(t, http.MethodOptions, "/teams/acme/mcp", "", "", map[string]string{"Origin": "https://console.example.com"})
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "https://console.example.com" {
		t.Errorf("allowed preflight: status %d, headers %v", resp.StatusCode, resp.Header)
	}
	resp = b.do(t, http.MethodOptions, "/teams/acme/mcp", "", "", map[string]string{"Origin": "https://evil.example.com"})
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("foreign preflight: status %d, headers %v", resp.StatusCode, resp.Header)
	}
}

// TestStartingInstance calls a tool whose instance is still starting when the runtime gives up waiting:
// the client is told to try again, in words that do not name the instance, and the others still answer.
func TestStartingInstance(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{})
	b.backend.mu.Lock()
	b.backend.insts["beta-1"].starting = fmt.Errorf("%w: connecting after 30s (instance beta-acme-ann-1)", ErrInstanceStarting)
	b.backend.mu.Unlock()
	cs := b.connect(t, "ann", "acme", clientOptions{version: sessionVersion})
	_, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "beta__echo", Arguments: map[string]any{}})
	if err == nil || !strings.Contains(err.Error(), "still starting; try again") || strings.Contains(err.Error(), "beta-acme") {
		t.Errorf("call of a starting instance = %v, want a request to try again that names no instance", err)
	}
	if _, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "alpha__echo", Arguments: map[string]any{}}); err != nil {
		t.Errorf("call of another instance: %v", err)
	}
}
