package gateway

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/orrery/orrery/services/satellite/internal/toolsearch"
)

// userKey identifies an aggregated server: one per team and user.
type userKey struct{ teamID, userID string }

// route says where a public feature lives downstream.
type route struct {
	inst Instance
	// name is the feature's downstream name (for resources, its URI).
	name string
}

// userServer is the MCP server a user sees at a team endpoint. Its features mirror those of the user's
// online instances in the team; sync brings them in step, and the SDK tells connected clients.
type userServer struct {
	g      *Gateway
	key    userKey
	server *mcp.Server
	// search is the user's server in search mode: the same resources and prompts, and the meta-tools of
	// search.go instead of the tools.
	search *mcp.Server
	init   sync.Once

	// syncMu guards the registered features; lookups take it too, so they see one consistent sync.
	syncMu    sync.Mutex
	tools     map[string]registered // by public name
	resources map[string]registered // by URI
	templates map[string]registered // by URI template
	prompts   map[string]registered // by public name
	// listed are the tools registered on server, which search mode's index holds once it is used;
	// listedByFP keeps their definitions by fingerprint from one sync to the next.
	listed     []*mcp.Tool
	listedByFP map[string]*mcp.Tool
	index      *toolsearch.Index

	// bridge is what the user's sessions asked for beyond plain calls: log levels and subscriptions.
	bridge userBridge

	sseMu sync.Mutex
	sse   map[string]*mcp.SSEHandler // by principal binding

	// Guarded by g.mu; see acquire.
	refs     int                                 // requests, sessions and input rounds using the server
	idle     *time.Timer                         // runs while refs is 0
	gen      uint64                              // generation of idle
	sessions map[*mcp.ServerSession]*openSession // open sessions that initialized
}

func (g *Gateway) newUserServer(key userKey) *userServer {
	us := &userServer{
		g:         g,
		key:       key,
		tools:     make(map[string]registered),
		resources: make(map[string]registered),
		templates: make(map[string]registered),
		prompts:   make(map[string]registered),
		sse:       make(map[string]*mcp.SSEHandler),
		sessions:  make(map[*mcp.ServerSession]*openSession),
	}
	us.bridge.init()
	us.server = us.newServer(false)
	us.search = us.newServer(true)
	us.addMetaTools()
	return us
}

// newServer returns one of the user's MCP servers, without features: the search-mode one or the other.
func (us *userServer) newServer(search bool) *mcp.Server {
	g := us.g
	s := mcp.NewServer(g.serverInfo(), &mcp.ServerOptions{
		Logger:       g.logger,
		GetSessionID: g.cfg.NewSessionID,
		// Advertised even while the user has no online instance, so that clients listen for changes.
		// Completion, subscriptions and logging are forwarded to whichever instance a request concerns;
		// an instance without the feature answers with its own error.
		Capabilities: &mcp.ServerCapabilities{
			Tools:       &mcp.ToolCapabilities{ListChanged: true},
			Resources:   &mcp.ResourceCapabilities{ListChanged: true, Subscribe: true},
			Prompts:     &mcp.PromptCapabilities{ListChanged: true},
			Completions: &mcp.CompletionCapabilities{},
			//lint:ignore SA1019 logging is deprecated only from the 2026-07-28 protocol on; the session era still has it
			Logging: &mcp.LoggingCapabilities{},
		},
		CompletionHandler:  us.complete,
		SubscribeHandler:   us.subscribe,
		UnsubscribeHandler: us.unsubscribe,
	})
	s.AddReceivingMiddleware(us.sessionMiddleware(search), us.logLevelMiddleware, us.unknownToolMiddleware(search), us.stopMiddleware)
	return s
}

// sseHandler returns the legacy SSE handler of one principal binding, so that a session id is only
// found by the team, user and client that created it.
func (us *userServer) sseHandler(binding string) *mcp.SSEHandler {
	us.sseMu.Lock()
	defer us.sseMu.Unlock()
	h := us.sse[binding]
	if h == nil {
		// One handler for both tool modes: a session keeps the server of the GET that opened it, and its
		// message endpoint (which loses the endpoint URL's query) finds it by session id.
		h = mcp.NewSSEHandler(func(r *http.Request) *mcp.Server { return us.serverForMode(toolsModeFrom(r.Context())) }, &mcp.SSEOptions{
			DisableLocalhostProtection: true,
			MaxRequestBodyBytes:        us.g.cfg.MaxBodyBytes,
		})
		us.sse[binding] = h
	}
	return h
}

// instances returns the user's instances in the team whose features are offered, in (server slug, id)
// order: online ones, and those waiting for the user's account, with their tools only. It also returns
// the ids of all the user's instances in the team, offered or not.
func (us *userServer) instances() (online []Instance, all map[string]bool) {
	all = make(map[string]bool)
	for _, inst := range us.g.cfg.Backend.Instances(us.key.teamID, us.key.userID) {
		// The runtime is trusted, but a mix-up there must not leak another tenant's tools.
		if inst.TeamID != us.key.teamID || inst.UserID != us.key.userID {
			continue
		}
		all[inst.ID] = true
		switch {
		case inst.EmergencyStop != "":
		case inst.ConnectAccountURL != "":
			// Its tools are listed so that a call can say where to connect; nothing else of the server is
			// known to be the user's.
			inst.Resources, inst.ResourceTemplates, inst.Prompts = nil, nil, nil
			online = append(online, inst)
		case inst.Online:
			online = append(online, inst)
		}
	}
	slices.SortFunc(online, func(a, b Instance) int {
		return cmp.Or(cmp.Compare(a.ServerSlug, b.ServerSlug), cmp.Compare(a.ID, b.ID))
	})
	return online, all
}

// sync makes the server's features those of the user's online instances. Unchanged features are left
// alone, so clients are told only of real changes. What the gateway kept for instances that left the
// configuration is dropped.
func (us *userServer) sync() {
	us.syncMu.Lock()
	defer us.syncMu.Unlock()
	insts, all := us.instances()
	us.g.bridge.forget(us, all)
	us.bridge.mu.Lock()
	maps.DeleteFunc(us.bridge.applied, func(id string, _ appliedLevel) bool { return !all[id] })
	us.bridge.mu.Unlock()
	us.syncTools(insts)
	us.syncResources(insts)
	us.syncTemplates(insts)
	us.syncPrompts(insts)
}

// fingerprint identifies a feature's public description together with where it is routed.
func fingerprint(feature any, rt route) string {
	b, err := json.Marshal(feature)
	if err != nil {
		return ""
	}
	return fmt.Sprintf("%s\x00%s\x00%t\x00%s\x00%s", rt.inst.ID, rt.inst.InstallationID, rt.inst.RequestLoggingEnabled,
		rt.inst.ConnectAccountURL, b)
}

// safely runs an SDK registration, which panics on features it finds invalid.
func safely(f func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	f()
	return nil
}

func (us *userServer) syncTools(insts []Instance) {
	want := visibleTools(insts)
	reconcile(us, "tool", us.tools, want, us.server.RemoveTools, func(t *mcp.Tool, rt route) {
		us.server.AddTool(t, us.g.callTool(us, rt))
	})
	// A tool registered unchanged keeps the definition it had, the same pointer, which is how the search
	// index knows not to analyze it again (toolsearch.Index.Update); a changed one is a new definition.
	prev := us.listedByFP
	us.listedByFP = make(map[string]*mcp.Tool, len(us.tools))
	us.listed = us.listed[:0]
	for name, reg := range us.tools {
		def := prev[reg.fp]
		if def == nil {
			def = want[name].def
		}
		us.listedByFP[reg.fp] = def
		us.listed = append(us.listed, def)
	}
	us.indexTools()
}

// visibleTools decides the tools a user sees at the team endpoint, from the user's online instances: each
// tool its instance's selection offers, keyed by its public name, described as the selection says, and
// routed to its instance. It is the one place that decides: tools/list lists exactly these, and a call of
// any other name is answered as for an unknown tool. A tool left out takes no part in naming, so it
// cannot change the names of the others either.
func visibleTools(insts []Instance) map[string]feature[mcp.Tool] {
	var cands []nameCandidate
	var found []feature[mcp.Tool]
	for _, inst := range insts {
		for _, t := range inst.Tools {
			if t == nil || t.Name == "" || !inst.Selection.Offers(t.Name) {
				continue
			}
			cands = append(cands, nameCandidate{prefix: inst.Prefix, name: t.Name, instanceID: inst.ID})
			found = append(found, feature[mcp.Tool]{def: t, rt: route{inst: inst, name: t.Name}})
		}
	}
	want := make(map[string]feature[mcp.Tool], len(found))
	for i, name := range assignNames(cands) {
		t := *found[i].def
		t.Name = name
		t.Description = found[i].rt.inst.Selection.Description(found[i].rt.name, t.Description)
		if t.InputSchema == nil {
			t.InputSchema = map[string]any{"type": "object"}
		}
		want[name] = feature[mcp.Tool]{def: &t, rt: found[i].rt}
	}
	return want
}

func (us *userServer) syncResources(insts []Instance) {
	want := byURI(insts, func(inst Instance) []*mcp.Resource { return inst.Resources },
		func(r *mcp.Resource) (string, string) { return r.URI, r.Name }, func(r *mcp.Resource, name string) { r.Name = name })
	reconcile(us, "resource", us.resources, want, us.onBoth((*mcp.Server).RemoveResources), func(r *mcp.Resource, rt route) {
		for _, s := range us.servers() {
			s.AddResource(r, us.g.readResource(us, rt))
		}
	})
}

// syncTemplates registers the instances' resource templates like resources, by URI template. A read of a
// URI that no listed resource has but a template matches goes to the template's instance.
func (us *userServer) syncTemplates(insts []Instance) {
	want := byURI(insts, func(inst Instance) []*mcp.ResourceTemplate { return inst.ResourceTemplates },
		func(t *mcp.ResourceTemplate) (string, string) { return t.URITemplate, t.Name },
		func(t *mcp.ResourceTemplate, name string) { t.Name = name })
	reconcile(us, "resource template", us.templates, want, us.onBoth((*mcp.Server).RemoveResourceTemplates), func(t *mcp.ResourceTemplate, rt route) {
		for _, s := range us.servers() {
			s.AddResourceTemplate(t, us.g.readResource(us, rt))
		}
	})
}

// byURI collects the features that instances offer under a URI (resources) or URI template, keyed by it.
// URIs stay as they are, because clients and models quote them, and names get the instance's prefix.
// Instances are in (slug, id) order, so the same instance wins a shared URI every time; the others' copy
// is left out. ident returns a feature's URI and name; rename sets its public name on a copy.
func byURI[T any](insts []Instance, list func(Instance) []*T, ident func(*T) (uri, name string), rename func(*T, string)) map[string]feature[T] {
	var cands []nameCandidate
	var found []feature[T]
	seen := map[string]bool{}
	for _, inst := range insts {
		for _, f := range list(inst) {
			if f == nil {
				continue
			}
			uri, name := ident(f)
			if uri == "" || seen[uri] {
				continue
			}
			seen[uri] = true
			cands = append(cands, nameCandidate{prefix: inst.Prefix, name: cmp.Or(name, uri), instanceID: inst.ID})
			found = append(found, feature[T]{def: f, rt: route{inst: inst, name: uri}})
		}
	}
	want := make(map[string]feature[T], len(found))
	for i, name := range assignNames(cands) {
		f := *found[i].def
		rename(&f, name)
		want[found[i].rt.name] = feature[T]{def: &f, rt: found[i].rt}
	}
	return want
}

func (us *userServer) syncPrompts(insts []Instance) {
	var cands []nameCandidate
	var found []feature[mcp.Prompt]
	for _, inst := range insts {
		for _, p := range inst.Prompts {
			if p == nil || p.Name == "" {
				continue
			}
			cands = append(cands, nameCandidate{prefix: inst.Prefix, name: p.Name, instanceID: inst.ID})
			found = append(found, feature[mcp.Prompt]{def: p, rt: route{inst: inst, name: p.Name}})
		}
	}
	want := make(map[string]feature[mcp.Prompt], len(found))
	for i, name := range assignNames(cands) {
		p := *found[i].def
		p.Name = name
		want[name] = feature[mcp.Prompt]{def: &p, rt: found[i].rt}
	}
	reconcile(us, "prompt", us.prompts, want, us.onBoth((*mcp.Server).RemovePrompts), func(p *mcp.Prompt, rt route) {
		for _, s := range us.servers() {
			s.AddPrompt(p, us.g.getPrompt(us, rt))
		}
	})
}

// onBoth returns a removal that applies to the user's servers of both tool modes.
func (us *userServer) onBoth(remove func(*mcp.Server, ...string)) func(...string) {
	return func(keys ...string) {
		for _, s := range us.servers() {
			remove(s, keys...)
		}
	}
}

// feature is one tool, resource or prompt to register under its public name, and where calls to it go.
type feature[T any] struct {
	def *T
	rt  route
}

// registered is a feature registered on a user's server: the fingerprint it was registered with, and
// where requests about it go.
type registered struct {
	fp string
	rt route
}

// reconcile brings the features registered on a user's server, have, to want: it removes what want lacks
// and registers what is new or changed, so clients see list_changed only for real changes. A feature the
// SDK refuses is logged and left out; the others still register.
func reconcile[T any](us *userServer, kind string, have map[string]registered, want map[string]feature[T],
	remove func(...string), add func(*T, route)) {
	var gone []string
	for key := range have {
		if _, ok := want[key]; !ok {
			gone = append(gone, key)
			delete(have, key)
		}
	}
	if len(gone) > 0 {
		remove(gone...)
	}
	for _, key := range slices.Sorted(maps.Keys(want)) {
		f := want[key]
		fp := fingerprint(f.def, f.rt)
		if have[key].fp == fp {
			continue
		}
		if err := safely(func() { add(f.def, f.rt) }); err != nil {
			us.g.logger.Warn(kind+" left out", slog.String("instance_id", f.rt.inst.ID), slog.String("name", f.rt.name),
				slog.Any("error", err))
			if _, had := have[key]; had {
				remove(key)
				delete(have, key)
			}
			continue
		}
		have[key] = registered{fp: fp, rt: f.rt}
	}
}

// errUnavailable is what a caller learns when an instance cannot serve; details go to the log only.
var errUnavailable = &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: "the MCP server behind this feature is unavailable"}

// ErrInstanceStarting, wrapped in an error of Backend.Session, says that the instance did not come online
// within the time a call waits for it, and is still starting.
var ErrInstanceStarting = errors.New("MCP server instance is still starting")

// errStarting is what a caller learns when the instance is still starting: worth a retry, unlike
// errUnavailable.
var errStarting = &jsonrpc.Error{Code: jsonrpc.CodeInternalError,
	Message: "the MCP server behind this feature is still starting; try again in a few seconds"}

// downstreamError turns an error of a downstream call into one for the caller. Protocol errors of the
// caller's own instance pass through; anything else is logged and reported generically.
func (g *Gateway) downstreamError(ctx context.Context, rt route, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return ctxErr
	}
	var jerr *jsonrpc.Error
	if errors.As(err, &jerr) {
		return jerr
	}
	if errors.Is(err, ErrInstanceStarting) {
		g.logger.InfoContext(ctx, "call gave up waiting for its instance to start", slog.String("instance_id", rt.inst.ID),
			slog.Any("error", err))
		return errStarting
	}
	g.logger.WarnContext(ctx, "downstream call failed", slog.String("instance_id", rt.inst.ID), slog.Any("error", err))
	return errUnavailable
}

// forwardMeta copies a request's _meta for the downstream request, without the keys that describe the
// caller's own protocol session and without its progress token, which the caller handles separately.
func forwardMeta(m mcp.Meta) mcp.Meta {
	var out mcp.Meta
	for k, v := range m {
		if k == "progressToken" || strings.HasPrefix(k, "io.modelcontextprotocol/") {
			continue
		}
		if out == nil {
			out = make(mcp.Meta)
		}
		out[k] = v
	}
	return out
}

func (g *Gateway) readResource(us *userServer, rt route) mcp.ResourceHandler {
	return func(ctx context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
		return forward(ctx, g, us, rt, req.Session, req.Params.RequestState, req.Params.InputResponses,
			func(ctx context.Context, down lane) (*mcp.ReadResourceResult, error) {
				sess, done, err := down.open(ctx)
				if err != nil {
					return nil, err
				}
				defer done()
				params := &mcp.ReadResourceParams{Meta: down.meta(req.Params.Meta), URI: req.Params.URI}
				if down.modern {
					params.RequestState, params.InputResponses = req.Params.RequestState, req.Params.InputResponses
				}
				res, err := sess.ReadResource(ctx, params)
				if err != nil {
					return nil, g.downstreamError(ctx, rt, err)
				}
				return res, nil
			},
			func(in *inputRequired) *mcp.ReadResourceResult {
				return &mcp.ReadResourceResult{InputRequests: in.requests, RequestState: in.state}
			})
	}
}

func (g *Gateway) getPrompt(us *userServer, rt route) mcp.PromptHandler {
	return func(ctx context.Context, req *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
		return forward(ctx, g, us, rt, req.Session, req.Params.RequestState, req.Params.InputResponses,
			func(ctx context.Context, down lane) (*mcp.GetPromptResult, error) {
				sess, done, err := down.open(ctx)
				if err != nil {
					return nil, err
				}
				defer done()
				params := &mcp.GetPromptParams{Meta: down.meta(req.Params.Meta), Name: rt.name, Arguments: req.Params.Arguments}
				if down.modern {
					params.RequestState, params.InputResponses = req.Params.RequestState, req.Params.InputResponses
				}
				res, err := sess.GetPrompt(ctx, params)
				if err != nil {
					return nil, g.downstreamError(ctx, rt, err)
				}
				return res, nil
			},
			func(in *inputRequired) *mcp.GetPromptResult {
				return &mcp.GetPromptResult{InputRequests: in.requests, RequestState: in.state}
			})
	}
}

// callTool forwards a tools/call to the instance that owns the tool: the arguments go as received and
// the result comes back as the instance sent it.
func (g *Gateway) callTool(us *userServer, rt route) mcp.ToolHandler {
	return func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		return g.serveCall(ctx, us, rt, req)
	}
}

// serveCall serves a tools/call of rt's tool: the policies, the call, its request log, metrics and span.
func (g *Gateway) serveCall(ctx context.Context, us *userServer, rt route, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	start := time.Now()
	ctx, span := g.startCallSpan(ctx, req, rt)
	set, pc := g.policyCall(ctx, us, req, rt)
	// A call's policies are checked once, when it starts; a round that continues it (a requestState
	// the gateway issued) was checked then.
	if pc != nil && req.Params.RequestState == "" {
		if denial := set.Check(ctx, pc, g.limiter); denial != nil {
			res := g.refuse(ctx, us, rt, denial)
			d := time.Since(start)
			g.logCall(us, rt, req.Params.Arguments, res, nil, d, traceIDOf(ctx), callLog{denial: denial, redact: redactions(ctx, set, pc, rt)})
			g.metrics.observeCall(rt, outcomePolicyDenied, d)
			endCallSpan(span, outcomePolicyDenied)
			return res, nil
		}
	}
	var res *mcp.CallToolResult
	var err error
	if rt.inst.ConnectAccountURL != "" {
		// Without the user's account the server would only refuse: the user learns where to connect it.
		res = connectAccount(rt.inst)
	} else {
		res, err = forward(ctx, g, us, rt, req.Session, req.Params.RequestState, req.Params.InputResponses,
			func(ctx context.Context, down lane) (*mcp.CallToolResult, error) {
				return g.forwardCall(ctx, down, req, rt)
			},
			func(in *inputRequired) *mcp.CallToolResult {
				return &mcp.CallToolResult{InputRequests: in.requests, RequestState: in.state}
			})
	}
	if err != nil {
		// A call that an emergency stop or a lost account cut short, or that raced it, says so.
		if stop := us.refusalOf(func(inst Instance) bool { return inst.ID == rt.inst.ID }); stop != nil {
			res, err = stop, nil
		}
	}
	outcome := outcomeInputRequired
	if res == nil || res.InputRequests == nil {
		d := time.Since(start)
		outcome = callOutcome(ctx, res, err)
		encoded := g.logCall(us, rt, req.Params.Arguments, res, err, d, traceIDOf(ctx), callLog{redact: redactions(ctx, set, pc, rt)})
		if out, ok := ctx.Value(encodedResultKey{}).(*encodedResult); ok {
			out.res, out.json = res, encoded
		}
		g.metrics.observeCall(rt, outcome, d)
	}
	endCallSpan(span, outcome)
	return res, err
}

// lane is the connection a request goes to the instance on.
type lane struct {
	// open returns the session, ready for the request, and a function to call when the request is done.
	open func(context.Context) (*mcp.ClientSession, func(), error)
	// modern says the session is in the 2026-07-28 era: the caller's capabilities, input responses and
	// request state go along, and input_required results come back as they are.
	modern bool
	caller *mcp.ServerSession
}

// meta is the downstream request's _meta, from the caller's.
func (d lane) meta(m mcp.Meta) mcp.Meta {
	out := forwardMeta(m)
	if !d.modern {
		return out
	}
	// The instance must see what the caller can answer, not what the runtime's client could.
	if caps := callerCapabilities(d.caller); caps != nil {
		if out == nil {
			out = make(mcp.Meta)
		}
		out[metaClientCapabilities] = caps
	}
	return out
}

// forward runs call, a request to rt's instance for caller. A client of the 2026-07-28 era is served on
// the instance's modern lane when the server speaks that era, where input requests travel in results;
// otherwise on the instance's session, as rounds (see roundTrip), and a round that needs the client's
// input ends in the result inputResult makes.
func forward[R mcp.Result](ctx context.Context, g *Gateway, us *userServer, rt route, caller *mcp.ServerSession,
	state string, responses mcp.InputResponseMap, call func(context.Context, lane) (R, error), inputResult func(*inputRequired) R) (R, error) {
	session := lane{caller: caller, open: func(ctx context.Context) (*mcp.ClientSession, func(), error) {
		return g.open(ctx, us, rt, caller)
	}}
	if !usesInputRequired(caller) && !servedInRounds(ctx) {
		return call(ctx, session)
	}
	var zero R
	if lanes, ok := g.cfg.Backend.(ModernBackend); ok && !g.inputs.owns(state) {
		cs, err := lanes.ModernSession(ctx, rt.inst.ID)
		switch {
		case err != nil && (ctx.Err() != nil || errors.Is(err, ErrInstanceStarting)):
			return zero, g.downstreamError(ctx, rt, err)
		case err != nil:
			// A server that cannot run twice (a fixed port, a lock file, one session allowed) still serves
			// the caller: on the instance's session, in rounds.
			g.logger.WarnContext(ctx, "the 2026-07-28 lane is unavailable; serving the call in rounds",
				slog.String("instance_id", rt.inst.ID), slog.Any("error", err))
		case cs != nil:
			return call(ctx, lane{caller: caller, modern: true, open: func(context.Context) (*mcp.ClientSession, func(), error) {
				return cs, func() {}, nil
			}})
		}
	}
	res, in, err := g.roundTrip(ctx, us, rt, state, responses, func(ctx context.Context) (mcp.Result, error) { return call(ctx, session) })
	switch {
	case err != nil:
		return zero, err
	case in != nil:
		return inputResult(in), nil
	}
	return res.(R), nil
}

func (g *Gateway) forwardCall(ctx context.Context, down lane, req *mcp.CallToolRequest, rt route) (*mcp.CallToolResult, error) {
	sess, done, err := down.open(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	params := &mcp.CallToolParams{Meta: withTraceContext(ctx, down.meta(req.Params.Meta)), Name: rt.name}
	if len(req.Params.Arguments) > 0 {
		params.Arguments = req.Params.Arguments
	}
	if down.modern {
		params.RequestState, params.InputResponses = req.Params.RequestState, req.Params.InputResponses
	}
	token := req.Params.GetProgressToken()
	if token == nil && !down.modern {
		// Most calls: the result goes back as the server wrote it, without the SDK's client decoding it.
		// A call with a progress token, or on the 2026-07-28 lane, takes the SDK's client, which maps
		// the token and carries the input requests.
		res, sent, err := g.callRaw(ctx, sess, rt, params.Meta, req.Params.Arguments)
		if sent {
			if err != nil {
				return nil, g.downstreamError(ctx, rt, err)
			}
			return res, nil
		}
	}
	if token != nil {
		downstream, release := g.progress.add(ctx, req.Session, token, sess)
		defer release()
		params.SetProgressToken(downstream)
	}
	res, err := sess.CallTool(ctx, params)
	if err != nil {
		return nil, g.downstreamError(ctx, rt, err)
	}
	return res, nil
}
