//lint:file-ignore SA1019 sampling, roots and logging are deprecated only from the 2026-07-28 protocol on; the session era the tests speak still has them

package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// newAsker is a server whose tools ask their client: "sample", "elicit" and "roots" send the request of
// that name and return what came back (or the error as text), and "log" logs at debug, info and warning.
func newAsker() *mcp.Server {
	s := mcp.NewServer(&mcp.Implementation{Name: "asker"}, nil)
	tool := func(name string, f func(context.Context, *mcp.ServerSession) (string, error)) {
		s.AddTool(&mcp.Tool{Name: name, InputSchema: map[string]any{"type": "object"}}, func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			text, err := f(ctx, req.Session)
			if err != nil {
				text = "error: " + err.Error()
			}
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: text}}}, nil
		})
	}
	tool("sample", func(ctx context.Context, ss *mcp.ServerSession) (string, error) {
		res, err := ss.CreateMessage(ctx, &mcp.CreateMessageParams{MaxTokens: 10,
			Messages: []*mcp.SamplingMessage{{Role: "user", Content: &mcp.TextContent{Text: "hello"}}}})
		if err != nil {
			return "", err
		}
		return res.Model + ": " + res.Content.(*mcp.TextContent).Text, nil
	})
	tool("elicit", func(ctx context.Context, ss *mcp.ServerSession) (string, error) {
		res, err := ss.Elicit(ctx, &mcp.ElicitParams{Message: "name?", RequestedSchema: map[string]any{
			"type": "object", "properties": map[string]any{"name": map[string]any{"type": "string"}}}})
		if err != nil {
			return "", err
		}
		b, _ := json.Marshal(res.Content)
		return res.Action + " " + string(b), nil
	})
	tool("roots", func(ctx context.Context, ss *mcp.ServerSession) (string, error) {
		res, err := ss.ListRoots(ctx, nil)
		if err != nil {
			return "", err
		}
		var uris []string
		for _, r := range res.Roots {
			uris = append(uris, r.URI)
		}
		return strings.Join(uris, ","), nil
	})
	tool("log", func(ctx context.Context, ss *mcp.ServerSession) (string, error) {
		for _, level := range []mcp.LoggingLevel{"debug", "info", "warning"} {
			if err := ss.Log(ctx, &mcp.LoggingMessageParams{Level: level, Data: "at " + string(level)}); err != nil {
				return "", err
			}
		}
		return "logged", nil
	})
	return s
}

// askingClient is a client of the team endpoint that answers sampling, elicitation and roots (unless
// bare) and counts what it was asked and the log messages it got.
type askingClient struct {
	cs    *mcp.ClientSession
	asked atomic.Int64
	logs  chan string
	// beforeElicit, when set, runs before the client answers an elicitation.
	beforeElicit func()
}

func (b *bundle) askingClient(t *testing.T, o clientOptions, name string, bare bool) *askingClient {
	t.Helper()
	c := &askingClient{logs: make(chan string, 16)}
	copts := &mcp.ClientOptions{
		LoggingMessageHandler: func(_ context.Context, req *mcp.LoggingMessageRequest) {
			c.logs <- fmt.Sprint(req.Params.Data)
		},
	}
	if bare {
		copts.Capabilities = &mcp.ClientCapabilities{}
	} else {
		copts.CreateMessageHandler = func(_ context.Context, req *mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
			c.asked.Add(1)
			return &mcp.CreateMessageResult{Model: name, Role: "assistant",
				Content: &mcp.TextContent{Text: "re " + req.Params.Messages[0].Content.(*mcp.TextContent).Text}}, nil
		}
		copts.ElicitationHandler = func(context.Context, *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
			c.asked.Add(1)
			if c.beforeElicit != nil {
				c.beforeElicit()
			}
			return &mcp.ElicitResult{Action: "accept", Content: map[string]any{"name": name}}, nil
		}
	}
	client := mcp.NewClient(&mcp.Implementation{Name: name, Version: "1"}, copts)
	if !bare {
		client.AddRoots(&mcp.Root{URI: "file:///home/" + name})
	}
	var transport mcp.Transport = &mcp.StreamableClientTransport{Endpoint: b.url + "/teams/globex/mcp", HTTPClient: httpClient("cid")}
	if o.sse {
		transport = &mcp.SSEClientTransport{Endpoint: b.url + "/teams/globex/sse", HTTPClient: httpClient("cid")}
	}
	cs, err := client.Connect(t.Context(), transport, &mcp.ClientSessionOptions{ProtocolVersion: o.version})
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { cs.Close() })
	c.cs = cs
	return c
}

func (c *askingClient) call(t *testing.T, tool string) string {
	t.Helper()
	// A request the bridge cannot deliver must fail, not hang: the deadline turns a hang into a failure.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	res, err := c.cs.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: map[string]any{}})
	if err != nil {
		t.Fatalf("call %s: %v", tool, err)
	}
	return callText(t, res)
}

// sessionEras are the eras in which a server may send requests of its own to the client.
var sessionEras = []struct {
	name string
	opts clientOptions
}{eras[0], eras[2]}

// expectAnswers checks that the asker's tools got this client's answers to their requests.
func (c *askingClient) expectAnswers(t *testing.T, name string) {
	t.Helper()
	for tool, want := range map[string]string{
		"asker__sample": name + ": re hello",
		"asker__elicit": `accept {"name":"` + name + `"}`,
		"asker__roots":  "file:///home/" + name,
	} {
		if got := c.call(t, tool); got != want {
			t.Errorf("%s = %q, want %q", tool, got, want)
		}
	}
}

func TestServerRequests(t *testing.T) {
	t.Parallel()
	for _, era := range sessionEras {
		t.Run(era.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, setupOptions{})
			b.addGlobex(t, "asker", newAsker())
			ann := b.askingClient(t, era.opts, "ann", false)
			ben := b.askingClient(t, era.opts, "ben", false)
			bare := b.askingClient(t, era.opts, "bare", true)

			served := b.gw.sessionCallsServed.Load()
			ann.expectAnswers(t, "ann")
			// The SDK's Streamable HTTP clients hold their GET stream, so their calls are served before the
			// SDK's server, and what the instance asks reaches them there.
			if n := b.gw.sessionCallsServed.Load() - served; !era.opts.sse && n != 3 {
				t.Errorf("%d of ann's 3 calls served before the SDK's server", n)
			}
			// Requests go only to the session whose call caused them.
			if n := ben.asked.Load(); n != 0 {
				t.Errorf("another session of the user was asked %d times", n)
			}
			if got := ben.call(t, "asker__sample"); got != "ben: re hello" {
				t.Errorf("ben's sample = %q", got)
			}
			// A client without the capability: the server gets the specified error (-32021) at once.
			for _, tool := range []string{"asker__sample", "asker__elicit", "asker__roots"} {
				if got := bare.call(t, tool); !strings.HasPrefix(got, "error: ") || !strings.Contains(got, "did not declare the capability") {
					t.Errorf("%s for a client without the capability = %q", tool, got)
				}
			}
		})
	}
}

// TestServerRequestsOfConcurrentSessions: two sessions of one user call a tool that elicits at the same
// time, on one instance. Each elicitation reaches the session whose call caused it, and each call gets its
// own session's answer: the second call waits for its turn rather than making the first one's request
// ambiguous.
func TestServerRequestsOfConcurrentSessions(t *testing.T) {
	t.Parallel()
	for _, era := range sessionEras {
		t.Run(era.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, setupOptions{})
			b.addGlobex(t, "asker", newAsker())
			ann := b.askingClient(t, era.opts, "ann", false)
			ben := b.askingClient(t, era.opts, "ben", false)
			// While Ann's call waits for her answer, Ben calls; Ann answers once his call waits for its turn.
			results := make(chan string, 1)
			ann.beforeElicit = func() {
				go func() {
					res, err := ben.cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "asker__elicit", Arguments: map[string]any{}})
					if err != nil {
						results <- err.Error()
						return
					}
					results <- callText(t, res)
				}()
				ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
				defer cancel()
				if err := b.gw.bridge.await(ctx, (*bridge).waiting); err != nil {
					t.Errorf("Ben's call never waited for its turn: %v", err)
				}
			}
			if got, want := ann.call(t, "asker__elicit"), `accept {"name":"ann"}`; got != want {
				t.Errorf("ann's call = %q, want %q", got, want)
			}
			if got, want := <-results, `accept {"name":"ben"}`; got != want {
				t.Errorf("ben's call = %q, want %q", got, want)
			}
			if a, n := ann.asked.Load(), ben.asked.Load(); a != 1 || n != 1 {
				t.Errorf("asked ann %d and ben %d times, want once each", a, n)
			}
		})
	}
}

// TestServerRequestHeldUntilAttributable: the first request of an instance arrives while calls of two
// sessions are in progress, so it could be either's. It is held until the other session's call has ended,
// then goes to the one left; the instance takes turns from then on. A server that never asks is not held
// up: before its first request, calls of several sessions run at once.
func TestServerRequestHeldUntilAttributable(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{})
	server := newAsker()
	release := make(chan struct{})
	server.AddTool(&mcp.Tool{Name: "pause", InputSchema: map[string]any{"type": "object"}}, func(ctx context.Context, _ *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "resumed"}}}, nil
	})
	b.addGlobex(t, "asker", server)
	opts := clientOptions{version: sessionVersion}
	ann := b.askingClient(t, opts, "ann", false)
	ben := b.askingClient(t, opts, "ben", false)

	paused := make(chan string, 1)
	go func() { paused <- ben.call(t, "asker__pause") }()
	awaitBridge(t, b.gw.bridge, "Ben's call to reach the instance", (*bridge).serving)
	elicited := make(chan string, 1)
	go func() { elicited <- ann.call(t, "asker__elicit") }()
	awaitBridge(t, b.gw.bridge, "Ann's elicitation to be held", (*bridge).holding)
	close(release)
	if got := <-paused; got != "resumed" {
		t.Errorf("ben's pause = %q", got)
	}
	if got, want := <-elicited, `accept {"name":"ann"}`; got != want {
		t.Errorf("ann's call = %q, want %q", got, want)
	}
	if n := ben.asked.Load(); n != 0 {
		t.Errorf("ben was asked %d times", n)
	}
}

// awaitBridge waits until cond holds for b, failing the test after 5 seconds.
func awaitBridge(t *testing.T, b *bridge, what string, cond func(*bridge) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := b.await(ctx, cond); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

func TestServerRequestOutsideACall(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{})
	s := mcp.NewServer(&mcp.Implementation{Name: "eager"}, nil)
	b.addGlobex(t, "eager", s)
	b.askingClient(t, clientOptions{version: sessionVersion}, "ann", false)
	var ss *mcp.ServerSession
	for ss = range s.Sessions() {
	}
	// The gateway has not used the instance yet, and no call is running: nobody can be asked.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := ss.ListRoots(ctx, nil); err == nil || ctx.Err() != nil {
		t.Errorf("roots outside a call: %v", err)
	}
}

func TestLogging(t *testing.T) {
	t.Parallel()
	for _, era := range sessionEras {
		t.Run(era.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, setupOptions{})
			b.addGlobex(t, "asker", newAsker())
			ann := b.askingClient(t, era.opts, "ann", false)
			quiet := b.askingClient(t, era.opts, "quiet", false)
			if ann.cs.InitializeResult().Capabilities.Logging == nil {
				t.Error("logging capability not declared")
			}
			if err := ann.cs.SetLoggingLevel(t.Context(), &mcp.SetLoggingLevelParams{Level: "info"}); err != nil {
				t.Fatal(err)
			}
			if got := ann.call(t, "asker__log"); got != "logged" {
				t.Fatalf("log = %q", got)
			}
			// The two have been seen to arrive in either order over Streamable HTTP; which and how many matter.
			got := []string{receive(t, ann.logs), receive(t, ann.logs)}
			slices.Sort(got)
			if want := []string{"at info", "at warning"}; !slices.Equal(got, want) {
				t.Errorf("log messages %q, want %q", got, want)
			}
			select {
			case got := <-ann.logs:
				t.Errorf("log message %q below the session's level", got)
			case got := <-quiet.logs:
				t.Errorf("a session that set no level got %q", got)
			case <-time.After(100 * time.Millisecond):
			}
		})
	}
}

func TestInputRequired(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{})
	b.addGlobex(t, "asker", newAsker())
	stateless := eras[1].opts

	// The SDK's client answers input_required results with its handlers and retries by itself.
	ann := b.askingClient(t, stateless, "ann", false)
	ann.expectAnswers(t, "ann")
	// A client without the capability: its own request fails with the specified error (SEP-2575), which
	// the stateless transport answers with 400.
	bare := b.askingClient(t, stateless, "bare", true)
	for _, tool := range []string{"asker__sample", "asker__elicit", "asker__roots"} {
		_, err := bare.cs.CallTool(t.Context(), &mcp.CallToolParams{Name: tool, Arguments: map[string]any{}})
		var jerr *jsonrpc.Error
		if !errors.As(err, &jerr) || jerr.Code != mcp.CodeMissingRequiredClientCapabilities {
			t.Errorf("%s for a client without the capability: %v, want error %d", tool, err, mcp.CodeMissingRequiredClientCapabilities)
		}
	}

	// By hand: the result carries the instance's request, and only a retry of the same user with the
	// request state and an answer continues the call.
	manual := b.connectWith(t, "cid", "globex", stateless, &mcp.ClientOptions{
		ElicitationHandler: func(context.Context, *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
			return nil, errors.New("not used")
		},
		MultiRoundTrip: &mcp.MultiRoundTripOptions{Disabled: true},
	})
	res, err := manual.CallTool(t.Context(), &mcp.CallToolParams{Name: "asker__elicit", Arguments: map[string]any{}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.InputRequests) != 1 || res.RequestState == "" {
		t.Fatalf("first round = %+v", res)
	}
	var key string
	for k, req := range res.InputRequests {
		if p, ok := req.(*mcp.ElicitParams); !ok || p.Message != "name?" {
			t.Errorf("input request %s = %#v", k, req)
		}
		key = k
	}
	b.token("bob-globex", teamGlobex, "globex", userBob, ScopeRead, ScopeExecute)
	other := b.connect(t, "bob-globex", "globex", stateless)
	retry := &mcp.CallToolParams{Name: "asker__elicit", Arguments: map[string]any{}, RequestState: res.RequestState,
		InputResponses: mcp.InputResponseMap{key: &mcp.ElicitResult{Action: "accept", Content: map[string]any{"name": "manual"}}}}
	if _, err := other.CallTool(t.Context(), retry); err == nil {
		t.Error("another user continued the call")
	}
	elsewhere := *retry
	elsewhere.Name = "asker__sample"
	if _, err := manual.CallTool(t.Context(), &elsewhere); err == nil {
		t.Error("the request state of one tool continued a call of another")
	}
	res, err = manual.CallTool(t.Context(), retry)
	if err != nil {
		t.Fatal(err)
	}
	if got := callText(t, res); got != `accept {"name":"manual"}` {
		t.Errorf("after the retry = %q", got)
	}
	if _, err := manual.CallTool(t.Context(), retry); err == nil {
		t.Error("a request state was used twice")
	}
}

// TestModernLaneUnavailable: when the instance's 2026-07-28 lane cannot be opened (a server that cannot
// run twice), clients of that era are still served, in rounds on the instance's session; an instance that
// is still starting tells them to retry.
func TestModernLaneUnavailable(t *testing.T) {
	t.Parallel()
	var laneErr atomic.Pointer[error]
	b := setup(t, setupOptions{modern: func(context.Context, string) (*mcp.ClientSession, error) {
		return nil, *laneErr.Load()
	}})
	b.addGlobex(t, "asker", newAsker())
	ann := b.askingClient(t, eras[1].opts, "ann", false)

	cannotRunTwice := errors.New("listen tcp :8080: bind: address already in use")
	laneErr.Store(&cannotRunTwice)
	ann.expectAnswers(t, "ann")

	starting := fmt.Errorf("%w: connecting", ErrInstanceStarting)
	laneErr.Store(&starting)
	_, err := ann.cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "asker__elicit", Arguments: map[string]any{}})
	if err == nil || !strings.Contains(err.Error(), errStarting.Message) {
		t.Errorf("call while the instance starts: %v, want %q", err, errStarting.Message)
	}
}

func TestLoggingStateless(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{})
	b.addGlobex(t, "asker", newAsker())
	ann := b.askingClient(t, eras[1].opts, "ann", false)
	// The 2026-07-28 era has no logging/setLevel: each request carries its level.
	res, err := ann.cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "asker__log", Arguments: map[string]any{},
		Meta: mcp.Meta{mcp.MetaKeyLogLevel: "warning"}})
	if err != nil || callText(t, res) != "logged" {
		t.Fatalf("log = %+v, %v", res, err)
	}
	if got := receive(t, ann.logs); got != "at warning" {
		t.Errorf("log message %q", got)
	}
	select {
	case got := <-ann.logs:
		t.Errorf("log message %q below the request's level", got)
	case <-time.After(100 * time.Millisecond):
	}
}

// TestTurnWaitBounded: a call waits for its turn at most attributeWait, however long another session of
// the user holds the instance, and then learns it may retry; once the turn is free, it goes.
func TestTurnWaitBounded(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		b := newBridge(slog.New(slog.DiscardHandler))
		cs := new(mcp.ClientSession)
		ann, ben := new(mcp.ServerSession), new(mcp.ServerSession)
		b.own(cs, new(userServer), "asker-1")
		annDone, err := b.begin(t.Context(), cs, ann)
		if err != nil {
			t.Fatal(err)
		}
		// The instance asks during Ann's call: from now on sessions take turns.
		if call, err := b.attribute(t.Context(), cs); err != nil || call.caller != ann {
			t.Fatalf("attribute = %v, %v; want Ann's call", call, err)
		}

		start := time.Now()
		if _, err := b.begin(t.Context(), cs, ben); err != errTurnWait {
			t.Errorf("Ben's call while Ann holds the turn: %v, want %v", err, errTurnWait)
		}
		if d := time.Since(start); d != attributeWait {
			t.Errorf("Ben's call waited %v, want %v", d, attributeWait)
		}
		// Ann's next call is not held up by a waiter that gave up.
		again, err := b.begin(t.Context(), cs, ann)
		if err != nil {
			t.Fatal(err)
		}
		again()
		annDone()
		benDone, err := b.begin(t.Context(), cs, ben)
		if err != nil {
			t.Fatalf("Ben's call once the turn is free: %v", err)
		}
		benDone()

		ctx, cancel := context.WithCancel(t.Context())
		annDone, _ = b.begin(t.Context(), cs, ann)
		defer annDone()
		cancel()
		if _, err := b.begin(ctx, cs, ben); !errors.Is(err, context.Canceled) {
			t.Errorf("Ben's cancelled call: %v, want context.Canceled", err)
		}
	})
}

// TestAttributeWaitBounded: a request that cannot be attributed gives up after attributeWait, also when a
// call ends just as the wait runs out and leaves it still ambiguous.
func TestAttributeWaitBounded(t *testing.T) {
	t.Parallel()
	for range 50 {
		synctest.Test(t, func(t *testing.T) {
			b := newBridge(slog.New(slog.DiscardHandler))
			cs := new(mcp.ClientSession)
			b.own(cs, new(userServer), "asker-1")
			for range 3 {
				done, err := b.begin(t.Context(), cs, new(mcp.ServerSession))
				if err != nil {
					t.Fatal(err)
				}
				defer done()
			}
			last, err := b.begin(t.Context(), cs, new(mcp.ServerSession))
			if err != nil {
				t.Fatal(err)
			}
			go func() {
				time.Sleep(attributeWait)
				last()
			}()
			start := time.Now()
			if _, err := b.attribute(t.Context(), cs); err != errAmbiguousCaller {
				t.Errorf("attribute = %v, want %v", err, errAmbiguousCaller)
			}
			if d := time.Since(start); d != attributeWait {
				t.Errorf("attribute waited %v, want %v", d, attributeWait)
			}
		})
	}
}

// TestAttributeUnknownSession: a request on a session the gateway does not use (an instance's
// 2026-07-28 lane, or one the gateway has not called yet) is refused at once and leaves nothing behind.
func TestAttributeUnknownSession(t *testing.T) {
	t.Parallel()
	b := newBridge(slog.New(slog.DiscardHandler))
	for range 3 {
		if _, err := b.attribute(t.Context(), new(mcp.ClientSession)); err != errNoCaller {
			t.Errorf("attribute = %v, want %v", err, errNoCaller)
		}
	}
	if n := len(b.turns); n != 0 {
		t.Errorf("the bridge keeps %d turns of sessions it does not use", n)
	}
}
