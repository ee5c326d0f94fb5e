//lint:file-ignore SA1019 sampling, roots and logging are deprecated only from the 2026-07-28 protocol on; the gateway forwards them for the session era, which still has them

package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"iter"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Methods an instance sends to its client that the bridge routes to the gateway's clients.
const (
	methodCreateMessage         = "sampling/createMessage"
	methodElicit                = "elicitation/create"
	methodListRoots             = "roots/list"
	notificationLog             = "notifications/message"
	notificationResourceUpdated = "notifications/resources/updated"
	notificationElicitComplete  = "notifications/elicitation/complete"
)

// ClientCapabilities returns the capabilities the runtime's client sessions declare to instances, so
// that instances send what ClientMiddleware bridges: sampling (with tools and context), form and URL
// elicitation, and roots. Whether a request then reaches a client depends on that client's own
// capabilities.
func ClientCapabilities() *mcp.ClientCapabilities {
	return &mcp.ClientCapabilities{
		RootsV2: &mcp.RootCapabilities{},
		Sampling: &mcp.SamplingCapabilities{
			Tools:   &mcp.SamplingToolsCapabilities{},
			Context: &mcp.SamplingContextCapabilities{},
		},
		Elicitation: &mcp.ElicitationCapabilities{
			Form: &mcp.FormElicitationCapabilities{},
			URL:  &mcp.URLElicitationCapabilities{},
		},
	}
}

// ClientMiddleware is receiving middleware for the runtime's client sessions to instances, which
// declare ClientCapabilities. It carries what an instance sends its client, besides responses and
// progress, to the gateway's clients:
//
//   - sampling/createMessage, elicitation/create and roots/list go to the client session whose request
//     the instance is serving, and the answer goes back; an instance that asks serves one client session
//     at a time (see begin and attribute), so that session is always known. An instance gets a JSON-RPC error instead when
//     it serves no request, or MissingRequiredClientCapability (-32021) when that client did not
//     declare the capability.
//   - notifications/message goes to the client session whose request the instance is serving, at that
//     session's log level; outside requests, to each of the user's sessions that set a level.
//   - notifications/resources/updated goes to the user's sessions subscribed to the resource.
//   - notifications/elicitation/complete goes where a log message would; a URL elicitation usually
//     completes after the call that started it, and clients ignore ids they do not know.
//
// Notifications go on to next as well, so the runtime still records them; everything else goes to next.
func (g *Gateway) ClientMiddleware(next mcp.MethodHandler) mcp.MethodHandler {
	return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
		cs, _ := req.GetSession().(*mcp.ClientSession)
		switch method {
		case methodCreateMessage, methodElicit, methodListRoots:
			// A request for a task of the tasks extension waits for the client's tasks/update.
			if res, err, ok := g.taskInput(ctx, cs, method, req.GetParams()); ok {
				return res, err
			}
			return g.bridge.serverRequest(ctx, cs, req.GetParams())
		case notificationLog:
			if p, ok := req.GetParams().(*mcp.LoggingMessageParams); ok {
				g.bridge.relayLog(cs, p)
			}
		case notificationResourceUpdated:
			if p, ok := req.GetParams().(*mcp.ResourceUpdatedNotificationParams); ok {
				g.bridge.relayUpdated(ctx, cs, p)
			}
		case notificationElicitComplete:
			if p, ok := req.GetParams().(*mcp.ElicitationCompleteParams); ok {
				g.bridge.relayElicitComplete(cs, p)
			}
		}
		return next(ctx, method, req)
	}
}

// pendingCall is a request of a client session that an instance is serving.
type pendingCall struct {
	ctx    context.Context
	caller *mcp.ServerSession
	// ask, when set, carries the instance's requests to the client instead: the client is of the
	// 2026-07-28 era, which gets them as input_required results. refuse then ends the client's request
	// with an error of the gateway's.
	ask    askFunc
	refuse refuseFunc
	// caps, when set, are the client's capabilities, for a caller that is no session of the SDK's: a
	// request of the 2026-07-28 era the gateway serves itself (see tasksext.go). Nothing but ask reaches
	// such a caller.
	caps *mcp.ClientCapabilities
}

// owner is the instance behind a downstream session, and the user whose aggregated server it feeds.
type owner struct {
	us         *userServer
	instanceID string
}

// bridge knows, for each downstream session the gateway uses, whose instance it is and which client
// requests it is serving right now.
type bridge struct {
	logger *slog.Logger

	mu         sync.Mutex
	calls      map[*mcp.ClientSession][]*pendingCall
	turns      map[*mcp.ClientSession]*turn
	owners     map[*mcp.ClientSession]owner
	byInstance map[string]*mcp.ClientSession   // the newest session of each instance
	byUser     map[*userServer]map[string]bool // the instances in byInstance, by the user they feed
	// updated is closed and replaced whenever a call starts, ends or waits for its turn, or a server
	// request waits to be attributed: who watches the bridge need not poll.
	updated chan struct{}
}

func newBridge(logger *slog.Logger) *bridge {
	return &bridge{
		logger:     logger,
		calls:      make(map[*mcp.ClientSession][]*pendingCall),
		turns:      make(map[*mcp.ClientSession]*turn),
		owners:     make(map[*mcp.ClientSession]owner),
		byInstance: make(map[string]*mcp.ClientSession),
		byUser:     make(map[*userServer]map[string]bool),
		updated:    make(chan struct{}),
	}
}

// own records that cs is the session of the user's instance. A session it replaces is forgotten, and
// own reports whether cs is new to the gateway: the instance restarted or woke up since the gateway last
// used it, or the gateway forgot the instance when it left the configuration and it came back.
func (b *bridge) own(cs *mcp.ClientSession, us *userServer, instanceID string) (fresh bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	old := b.byInstance[instanceID]
	if old != cs {
		delete(b.owners, old)
		delete(b.turns, old)
		fresh = true
	}
	b.byInstance[instanceID] = cs
	b.owners[cs] = owner{us: us, instanceID: instanceID}
	if b.byUser[us] == nil {
		b.byUser[us] = make(map[string]bool)
	}
	b.byUser[us][instanceID] = true
	return fresh
}

// sessionOf returns the session of the user's instance that the gateway last used, or nil.
func (b *bridge) sessionOf(us *userServer, instanceID string) *mcp.ClientSession {
	b.mu.Lock()
	defer b.mu.Unlock()
	cs := b.byInstance[instanceID]
	if cs == nil || b.owners[cs].us != us {
		return nil
	}
	return cs
}

// forget drops what the bridge knows of the user's instances, except those in keep: the user's server
// was freed, or the other instances left the runtime's configuration.
func (b *bridge) forget(us *userServer, keep map[string]bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for id := range b.byUser[us] {
		if keep[id] {
			continue
		}
		delete(b.byUser[us], id)
		if cs := b.byInstance[id]; cs != nil && b.owners[cs].us == us {
			delete(b.owners, cs)
			delete(b.turns, cs)
			delete(b.byInstance, id)
		}
	}
	if len(b.byUser[us]) == 0 {
		delete(b.byUser, us)
	}
}

// sessionsOf returns the sessions of the user whose instance cs is connected to, or none when the
// gateway has not used cs.
func (b *bridge) sessionsOf(cs *mcp.ClientSession) iter.Seq[*mcp.ServerSession] {
	b.mu.Lock()
	o, ok := b.owners[cs]
	b.mu.Unlock()
	if !ok {
		return func(func(*mcp.ServerSession) bool) {}
	}
	return o.us.allSessions()
}

// A server of the session era sends its requests to the client (sampling, elicitation, roots) on the
// connection alone: nothing on the wire says which of the calls in progress caused one. Once a downstream
// session has sent such a request, it serves the calls of one client session at a time, so that every
// later request can be attributed: calls of the same session run concurrently, a call of another session
// waits until they have ended, and once one waits, the holder's new calls queue behind it, so no session
// starves. A request that arrives while calls of several sessions are in progress (the first of a
// session, before it took turns) is held until the others' calls have ended, for attributeWait at most.
// Servers that never ask keep serving every session at once. Clients of the 2026-07-28 era reach servers
// that speak it on a lane of their own (ModernBackend), where results carry the input requests and
// nothing needs to wait.

// attributeWait bounds how long a server's request waits to be attributed, and a call waits for its turn.
// The first only runs out when calls of several sessions each wait for an answer to such a request, which
// none can get; the second when another session holds the turn, as an input round parked for its client
// does for up to inputWait.
const attributeWait = 30 * time.Second

// turn is what a downstream session serves now.
type turn struct {
	sessions map[*mcp.ServerSession]int // calls in progress, by client session
	asks     bool                       // the server has sent requests of its own: sessions take turns
	waiting  int                        // calls waiting for their turn
	held     int                        // server requests waiting to be attributed
	changed  chan struct{}              // closed and replaced whenever a call ends
}

func (b *bridge) turnOf(cs *mcp.ClientSession) *turn {
	t := b.turns[cs]
	if t == nil {
		t = &turn{sessions: make(map[*mcp.ServerSession]int), changed: make(chan struct{})}
		b.turns[cs] = t
	}
	return t
}

// updatedLocked wakes whoever watches the bridge.
func (b *bridge) updatedLocked() {
	close(b.updated)
	b.updated = make(chan struct{})
}

// signal wakes whoever waits for t to change.
func (t *turn) signal() {
	close(t.changed)
	t.changed = make(chan struct{})
}

// mayStart says whether a call of caller may start on a downstream session in t's state.
func (t *turn) mayStart(caller *mcp.ServerSession) bool {
	switch {
	case !t.asks || len(t.sessions) == 0:
		return true
	default:
		return len(t.sessions) == 1 && t.sessions[caller] > 0 && t.waiting == 0
	}
}

// begin records that cs serves a request of caller, whose context is ctx, until the returned function
// is called. When cs takes turns, it waits for caller's, and fails when ctx ends first or after
// attributeWait (errTurnWait).
func (b *bridge) begin(ctx context.Context, cs *mcp.ClientSession, caller *mcp.ServerSession) (func(), error) {
	call := &pendingCall{ctx: ctx, caller: caller, ask: askFrom(ctx), refuse: refuseFrom(ctx), caps: capsFrom(ctx)}
	var turnCtx context.Context
	b.mu.Lock()
	t := b.turnOf(cs)
	for !t.mayStart(caller) {
		if turnCtx == nil {
			// A turn can be held for as long as an input round waits for its client (inputWait).
			var cancel context.CancelFunc
			turnCtx, cancel = context.WithTimeout(ctx, attributeWait)
			defer cancel()
		}
		t.waiting++
		b.updatedLocked()
		changed := t.changed
		b.mu.Unlock()
		select {
		case <-changed:
		case <-turnCtx.Done():
			b.mu.Lock()
			t.waiting--
			t.signal() // the holder's new calls queue behind waiters only
			b.updatedLocked()
			b.mu.Unlock()
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			return nil, errTurnWait
		}
		b.mu.Lock()
		t.waiting--
	}
	t.sessions[caller]++
	b.calls[cs] = append(b.calls[cs], call)
	b.updatedLocked()
	b.mu.Unlock()
	return func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		calls := slices.DeleteFunc(b.calls[cs], func(c *pendingCall) bool { return c == call })
		if len(calls) == 0 {
			delete(b.calls, cs)
		} else {
			b.calls[cs] = calls
		}
		if t.sessions[caller]--; t.sessions[caller] == 0 {
			delete(t.sessions, caller)
		}
		t.signal()
		b.updatedLocked()
		// A session that asks is remembered until the bridge forgets the session.
		if len(t.sessions) == 0 && t.waiting == 0 && !t.asks && b.turns[cs] == t {
			delete(b.turns, cs)
		}
	}, nil
}

// attribute returns the call a request of cs's server belongs to: the newest call cs serves, once all
// it serves come from one client session. From then on cs takes turns. A request it cannot attribute in
// time, or that the server gives up on, gets errAmbiguousCaller.
func (b *bridge) attribute(ctx context.Context, cs *mcp.ClientSession) (*pendingCall, error) {
	ctx, cancel := context.WithTimeout(ctx, attributeWait)
	defer cancel()
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.owners[cs]; !ok {
		// A session the gateway does not use serves no call, and gets no turns that nothing would forget:
		// such as an instance's 2026-07-28 lane, whose calls carry their input requests themselves.
		return nil, errNoCaller
	}
	t := b.turnOf(cs)
	t.asks = true
	for {
		call, err := b.callerLocked(cs)
		// The SDK's errors match any error of the same code. An expired wait still gets a last look.
		if err != errAmbiguousCaller || ctx.Err() != nil {
			return call, err
		}
		t.held++
		b.updatedLocked()
		changed := t.changed
		b.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
		}
		b.mu.Lock()
		t.held--
	}
}

var (
	// errTurnWait is what a call learns when another session of its user kept the instance for
	// attributeWait: worth a retry, as errStarting is.
	errTurnWait = &jsonrpc.Error{Code: jsonrpc.CodeInternalError,
		Message: "the MCP server behind this feature is busy with a request of another of your sessions; try again in a few seconds"}
	errNoCaller = &jsonrpc.Error{Code: jsonrpc.CodeInvalidRequest,
		Message: "no client request is in progress that this request could belong to"}
	errAmbiguousCaller = &jsonrpc.Error{Code: jsonrpc.CodeInvalidRequest,
		Message: "requests of several client sessions are in progress; this request cannot be attributed to one"}
)

// caller returns the newest request cs is serving, provided all the requests it serves come from one
// client session.
func (b *bridge) caller(cs *mcp.ClientSession) (*pendingCall, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.callerLocked(cs)
}

func (b *bridge) callerLocked(cs *mcp.ClientSession) (*pendingCall, error) {
	calls := b.calls[cs]
	if cs == nil || len(calls) == 0 {
		return nil, errNoCaller
	}
	for _, c := range calls {
		if c.caller != calls[0].caller || c.caller == nil {
			return nil, errAmbiguousCaller
		}
	}
	return calls[len(calls)-1], nil
}

// missingCapability is what an instance gets for a request its client did not declare the capability
// for: the error the 2026-07-28 era specifies (SEP-2575), which names the capability needed.
func missingCapability(what string, required *mcp.ClientCapabilities) error {
	data, err := json.Marshal(mcp.MissingRequiredClientCapabilityData{RequiredCapabilities: required})
	if err != nil {
		data = nil
	}
	return &jsonrpc.Error{Code: mcp.CodeMissingRequiredClientCapabilities,
		Message: "the client did not declare the capability for " + what, Data: data}
}

// serverRequest forwards a request of the instance behind cs to the client session it belongs to and
// returns that client's answer.
func (b *bridge) serverRequest(ctx context.Context, cs *mcp.ClientSession, params mcp.Params) (mcp.Result, error) {
	call, err := b.attribute(ctx, cs)
	if err != nil {
		return nil, err
	}
	// Sent under the call's context, the request travels on the stream of the call that caused it; it
	// ends when that call ends or when the instance cancels it.
	reqCtx, cancel := context.WithCancel(call.ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, cancel)
	defer stop()

	caps := call.caps
	if ip := call.caller.InitializeParams(); caps == nil && ip != nil {
		caps = ip.Capabilities
	}
	if caps == nil {
		caps = &mcp.ClientCapabilities{}
	}
	if err := supported(caps, params); err != nil {
		// A client of the 2026-07-28 era learns it from the answer to its own request, where the error is
		// specified; the instance gets it too, to end its work.
		if call.refuse != nil {
			call.refuse(err)
		}
		return nil, err
	}
	var res mcp.Result
	if ir, ok := params.(mcp.InputRequest); ok && call.ask != nil {
		res, err = call.ask(reqCtx, ir)
		if err != nil {
			return nil, b.clientError(ctx, err)
		}
		return res, nil
	}
	if call.caps != nil {
		return nil, errNoCaller // a caller of the gateway's own has nothing but ask
	}
	switch p := params.(type) {
	case *mcp.CreateMessageWithToolsParams:
		res, err = call.caller.CreateMessageWithTools(reqCtx, p)
	case *mcp.ElicitParams:
		res, err = call.caller.Elicit(reqCtx, p)
	case *mcp.ListRootsParams:
		res, err = call.caller.ListRoots(reqCtx, p)
	}
	if err != nil {
		return nil, b.clientError(ctx, err)
	}
	return res, nil
}

// supported checks that a client with caps can be asked a request with params.
func supported(caps *mcp.ClientCapabilities, params mcp.Params) error {
	switch p := params.(type) {
	case *mcp.CreateMessageWithToolsParams:
		switch {
		case caps.Sampling == nil:
			return missingCapability("sampling", &mcp.ClientCapabilities{Sampling: &mcp.SamplingCapabilities{}})
		case len(p.Tools) > 0 && caps.Sampling.Tools == nil:
			return missingCapability("sampling with tools",
				&mcp.ClientCapabilities{Sampling: &mcp.SamplingCapabilities{Tools: &mcp.SamplingToolsCapabilities{}}})
		}
	case *mcp.ElicitParams:
		e := caps.Elicitation
		switch {
		case e == nil:
			return missingCapability("elicitation", &mcp.ClientCapabilities{Elicitation: &mcp.ElicitationCapabilities{}})
		case p.Mode == "url" && e.URL == nil:
			return missingCapability("URL elicitation",
				&mcp.ClientCapabilities{Elicitation: &mcp.ElicitationCapabilities{URL: &mcp.URLElicitationCapabilities{}}})
		case p.Mode != "url" && e.Form == nil && e.URL != nil: // neither declared means form, as before modes
			return missingCapability("form elicitation",
				&mcp.ClientCapabilities{Elicitation: &mcp.ElicitationCapabilities{Form: &mcp.FormElicitationCapabilities{}}})
		}
	case *mcp.ListRootsParams:
		if caps.RootsV2 == nil {
			return missingCapability("roots", &mcp.ClientCapabilities{RootsV2: &mcp.RootCapabilities{}})
		}
	default:
		return &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: "unexpected parameters"}
	}
	return nil
}

// metaClientCapabilities is the _meta key of the 2026-07-28 era that carries a request's client
// capabilities.
const metaClientCapabilities = "io.modelcontextprotocol/clientCapabilities"

// callerCapabilities returns the caller's capabilities as the 2026-07-28 era writes them in _meta, where
// roots, unlike in the session era's initialize, is absent rather than empty when not declared.
func callerCapabilities(caller *mcp.ServerSession) map[string]any {
	caps := &mcp.ClientCapabilities{}
	if ip := caller.InitializeParams(); ip != nil && ip.Capabilities != nil {
		caps = ip.Capabilities
	}
	data, err := json.Marshal(caps)
	if err != nil {
		return nil
	}
	var out map[string]any
	if json.Unmarshal(data, &out) != nil {
		return nil
	}
	delete(out, "roots")
	if caps.RootsV2 != nil {
		out["roots"] = caps.RootsV2
	}
	return out
}

// clientError turns an error of a forwarded request into one for the instance: the client's own protocol
// errors pass through, anything else (a closed session, a cancelled call) is logged and reported generically.
func (b *bridge) clientError(ctx context.Context, err error) error {
	var jerr *jsonrpc.Error
	if errors.As(err, &jerr) {
		return jerr
	}
	if ctx.Err() == nil {
		b.logger.DebugContext(ctx, "forwarding a server request to the client failed", slog.Any("error", err))
	}
	return &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: "the client did not answer: " + err.Error()}
}

// relayLog passes an instance's log message on: to the client session whose request the instance serves
// or, outside requests, to every session of the user. Each session gets it only at its own log level.
// When requests of several sessions are in progress, the message cannot be attributed and stays in the
// server's log only.
func (b *bridge) relayLog(cs *mcp.ClientSession, p *mcp.LoggingMessageParams) {
	call, err := b.caller(cs)
	switch {
	case err == nil && call.caps != nil:
	case err == nil:
		_ = call.caller.Log(call.ctx, p)
	case err == errNoCaller:
		for ss := range b.sessionsOf(cs) {
			_ = ss.Log(context.Background(), p)
		}
	}
}

// relayElicitComplete passes on an instance's notice that a URL elicitation is complete, as relayLog does.
func (b *bridge) relayElicitComplete(cs *mcp.ClientSession, p *mcp.ElicitationCompleteParams) {
	call, err := b.caller(cs)
	switch {
	case err == nil && call.caps != nil:
	case err == nil:
		_ = call.caller.NotifyElicitationComplete(call.ctx, p)
	case err == errNoCaller:
		for ss := range b.sessionsOf(cs) {
			_ = ss.NotifyElicitationComplete(context.Background(), p)
		}
	}
}

// relayUpdated passes an instance's notice that a resource changed to the user's sessions subscribed to
// it, provided the resource is one the gateway routes to that instance.
func (b *bridge) relayUpdated(ctx context.Context, cs *mcp.ClientSession, p *mcp.ResourceUpdatedNotificationParams) {
	b.mu.Lock()
	o, ok := b.owners[cs]
	b.mu.Unlock()
	if !ok {
		return
	}
	if rt, ok := o.us.resourceRoute(p.URI); !ok || rt.inst.ID != o.instanceID {
		return
	}
	for _, s := range o.us.servers() {
		_ = s.ResourceUpdated(ctx, p)
	}
}

// open returns the session of rt's instance for a request of caller, ready for it: the user's log level
// is applied (and the user's subscriptions, if the instance has a new session), and what the instance
// sends its client while the request runs is routed to caller. Call the returned function when the
// request is done.
func (g *Gateway) open(ctx context.Context, us *userServer, rt route, caller *mcp.ServerSession) (*mcp.ClientSession, func(), error) {
	cs, err := g.cfg.Backend.Session(ctx, rt.inst.ID)
	if err != nil {
		return nil, nil, g.downstreamError(ctx, rt, err)
	}
	if g.bridge.own(cs, us, rt.inst.ID) {
		us.resubscribe(ctx, rt.inst.ID, cs)
	}
	us.applyLogLevel(ctx, rt.inst.ID, cs)
	done, err := g.bridge.begin(ctx, cs, caller)
	if err != nil {
		return nil, nil, err
	}
	return cs, done, nil
}
