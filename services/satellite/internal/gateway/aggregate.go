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
	init   sync.Once

	syncMu    sync.Mutex
	tools     map[string]string // public name → fingerprint
	resources map[string]string // URI → fingerprint
	prompts   map[string]string // public name → fingerprint

	sseMu sync.Mutex
	sse   map[string]*mcp.SSEHandler // by principal binding
}

// user returns the aggregated server of a team's user, creating and filling it on first use.
func (g *Gateway) user(teamID, userID string) *userServer {
	key := userKey{teamID, userID}
	g.mu.Lock()
	us := g.users[key]
	if us == nil {
		us = g.newUserServer(key)
		g.users[key] = us
	}
	g.mu.Unlock()
	us.init.Do(us.sync)
	return us
}

func (g *Gateway) newUserServer(key userKey) *userServer {
	us := &userServer{
		g:         g,
		key:       key,
		tools:     make(map[string]string),
		resources: make(map[string]string),
		prompts:   make(map[string]string),
		sse:       make(map[string]*mcp.SSEHandler),
	}
	us.server = mcp.NewServer(&mcp.Implementation{Name: "orrery-satellite", Version: g.cfg.Version}, &mcp.ServerOptions{
		Logger: g.logger,
		// Advertised even while the user has no online instance, so that clients listen for changes.
		Capabilities: &mcp.ServerCapabilities{
			Tools:     &mcp.ToolCapabilities{ListChanged: true},
			Resources: &mcp.ResourceCapabilities{ListChanged: true},
			Prompts:   &mcp.PromptCapabilities{ListChanged: true},
		},
	})
	us.server.AddReceivingMiddleware(scopeMiddleware)
	return us
}

// scopeMiddleware re-checks scopes where the transport knows the token, in case a request reached the
// server without passing guard's body inspection.
func scopeMiddleware(next mcp.MethodHandler) mcp.MethodHandler {
	return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
		if extra := req.GetExtra(); extra != nil && extra.TokenInfo != nil {
			p := &principal{scopes: extra.TokenInfo.Scopes}
			if missing := missingScopes(p, []string{method}); len(missing) > 0 {
				return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidRequest, Message: "insufficient scope: requires " + strings.Join(missing, " ")}
			}
		}
		return next(ctx, method, req)
	}
}

// sseHandler returns the legacy SSE handler of one principal binding, so that a session id is only
// found by the team, user and client that created it.
func (us *userServer) sseHandler(binding string) *mcp.SSEHandler {
	us.sseMu.Lock()
	defer us.sseMu.Unlock()
	h := us.sse[binding]
	if h == nil {
		h = mcp.NewSSEHandler(func(*http.Request) *mcp.Server { return us.server }, &mcp.SSEOptions{
			DisableLocalhostProtection: true,
			MaxRequestBodyBytes:        us.g.cfg.MaxBodyBytes,
		})
		us.sse[binding] = h
	}
	return h
}

// instances returns the user's online instances in the team, in (server slug, id) order.
func (us *userServer) instances() []Instance {
	var out []Instance
	for _, inst := range us.g.cfg.Backend.Instances(us.key.teamID, us.key.userID) {
		// The runtime is trusted, but a mix-up there must not leak another tenant's tools.
		if inst.Online && inst.TeamID == us.key.teamID && inst.UserID == us.key.userID {
			out = append(out, inst)
		}
	}
	slices.SortFunc(out, func(a, b Instance) int {
		return cmp.Or(cmp.Compare(a.ServerSlug, b.ServerSlug), cmp.Compare(a.ID, b.ID))
	})
	return out
}

// sync makes the server's features those of the user's online instances. Unchanged features are left
// alone, so clients are told only of real changes.
func (us *userServer) sync() {
	us.syncMu.Lock()
	defer us.syncMu.Unlock()
	insts := us.instances()
	us.syncTools(insts)
	us.syncResources(insts)
	us.syncPrompts(insts)
}

// fingerprint identifies a feature's public description together with where it is routed.
func fingerprint(feature any, rt route) string {
	b, err := json.Marshal(feature)
	if err != nil {
		return ""
	}
	return fmt.Sprintf("%s\x00%s\x00%t\x00%s", rt.inst.ID, rt.inst.InstallationID, rt.inst.RequestLoggingEnabled, b)
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
	var cands []nameCandidate
	var routes []route
	var tools []*mcp.Tool
	for _, inst := range insts {
		for _, t := range inst.Tools {
			if t == nil || t.Name == "" {
				continue
			}
			cands = append(cands, nameCandidate{prefix: inst.Prefix, name: t.Name, instanceID: inst.ID})
			routes = append(routes, route{inst: inst, name: t.Name})
			tools = append(tools, t)
		}
	}
	names := assignNames(cands)
	want := make(map[string]int, len(names))
	for i, n := range names {
		want[n] = i
	}
	var gone []string
	for name := range us.tools {
		if _, ok := want[name]; !ok {
			gone = append(gone, name)
			delete(us.tools, name)
		}
	}
	if len(gone) > 0 {
		us.server.RemoveTools(gone...)
	}
	for _, name := range slices.Sorted(maps.Keys(want)) {
		i := want[name]
		t := *tools[i]
		t.Name = name
		if t.InputSchema == nil {
			t.InputSchema = map[string]any{"type": "object"}
		}
		fp := fingerprint(&t, routes[i])
		if us.tools[name] == fp {
			continue
		}
		if err := safely(func() { us.server.AddTool(&t, us.g.callTool(us, routes[i])) }); err != nil {
			us.g.logger.Warn("tool left out", slog.String("instance_id", routes[i].inst.ID),
				slog.String("tool", routes[i].name), slog.Any("error", err))
			if _, had := us.tools[name]; had {
				us.server.RemoveTools(name)
				delete(us.tools, name)
			}
			continue
		}
		us.tools[name] = fp
	}
}

func (us *userServer) syncResources(insts []Instance) {
	type item struct {
		res *mcp.Resource
		rt  route
	}
	want := make(map[string]item)
	var cands []nameCandidate
	var uris []string
	for _, inst := range insts {
		for _, r := range inst.Resources {
			if r == nil || r.URI == "" {
				continue
			}
			if _, taken := want[r.URI]; taken {
				// Instances are in (slug, id) order, so the same instance wins every time.
				continue
			}
			want[r.URI] = item{res: r, rt: route{inst: inst, name: r.URI}}
			cands = append(cands, nameCandidate{prefix: inst.Prefix, name: cmp.Or(r.Name, r.URI), instanceID: inst.ID})
			uris = append(uris, r.URI)
		}
	}
	names := make(map[string]string, len(uris))
	for i, n := range assignNames(cands) {
		names[uris[i]] = n
	}
	var gone []string
	for uri := range us.resources {
		if _, ok := want[uri]; !ok {
			gone = append(gone, uri)
			delete(us.resources, uri)
		}
	}
	if len(gone) > 0 {
		us.server.RemoveResources(gone...)
	}
	for _, uri := range slices.Sorted(maps.Keys(want)) {
		it := want[uri]
		r := *it.res
		r.Name = names[uri]
		fp := fingerprint(&r, it.rt)
		if us.resources[uri] == fp {
			continue
		}
		if err := safely(func() { us.server.AddResource(&r, us.g.readResource(it.rt)) }); err != nil {
			us.g.logger.Warn("resource left out", slog.String("instance_id", it.rt.inst.ID), slog.Any("error", err))
			if _, had := us.resources[uri]; had {
				us.server.RemoveResources(uri)
				delete(us.resources, uri)
			}
			continue
		}
		us.resources[uri] = fp
	}
}

func (us *userServer) syncPrompts(insts []Instance) {
	var cands []nameCandidate
	var routes []route
	var prompts []*mcp.Prompt
	for _, inst := range insts {
		for _, p := range inst.Prompts {
			if p == nil || p.Name == "" {
				continue
			}
			cands = append(cands, nameCandidate{prefix: inst.Prefix, name: p.Name, instanceID: inst.ID})
			routes = append(routes, route{inst: inst, name: p.Name})
			prompts = append(prompts, p)
		}
	}
	names := assignNames(cands)
	want := make(map[string]int, len(names))
	for i, n := range names {
		want[n] = i
	}
	var gone []string
	for name := range us.prompts {
		if _, ok := want[name]; !ok {
			gone = append(gone, name)
			delete(us.prompts, name)
		}
	}
	if len(gone) > 0 {
		us.server.RemovePrompts(gone...)
	}
	for _, name := range slices.Sorted(maps.Keys(want)) {
		i := want[name]
		p := *prompts[i]
		p.Name = name
		fp := fingerprint(&p, routes[i])
		if us.prompts[name] == fp {
			continue
		}
		if err := safely(func() { us.server.AddPrompt(&p, us.g.getPrompt(routes[i])) }); err != nil {
			us.g.logger.Warn("prompt left out", slog.String("instance_id", routes[i].inst.ID), slog.Any("error", err))
			if _, had := us.prompts[name]; had {
				us.server.RemovePrompts(name)
				delete(us.prompts, name)
			}
			continue
		}
		us.prompts[name] = fp
	}
}

// errUnavailable is what a caller learns when an instance cannot serve; details go to the log only.
var errUnavailable = &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: "the MCP server behind this feature is unavailable"}

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

func (g *Gateway) readResource(rt route) mcp.ResourceHandler {
	return func(ctx context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
		sess, err := g.cfg.Backend.Session(ctx, rt.inst.ID)
		if err != nil {
			return nil, g.downstreamError(ctx, rt, err)
		}
		res, err := sess.ReadResource(ctx, &mcp.ReadResourceParams{Meta: forwardMeta(req.Params.Meta), URI: req.Params.URI})
		if err != nil {
			return nil, g.downstreamError(ctx, rt, err)
		}
		return res, nil
	}
}

func (g *Gateway) getPrompt(rt route) mcp.PromptHandler {
	return func(ctx context.Context, req *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
		sess, err := g.cfg.Backend.Session(ctx, rt.inst.ID)
		if err != nil {
			return nil, g.downstreamError(ctx, rt, err)
		}
		res, err := sess.GetPrompt(ctx, &mcp.GetPromptParams{Meta: forwardMeta(req.Params.Meta), Name: rt.name, Arguments: req.Params.Arguments})
		if err != nil {
			return nil, g.downstreamError(ctx, rt, err)
		}
		return res, nil
	}
}

// callTool forwards a tools/call to the instance that owns the tool: the arguments go as received and
// the result comes back as the instance sent it.
func (g *Gateway) callTool(us *userServer, rt route) mcp.ToolHandler {
	return func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		start := time.Now()
		res, err := g.forwardCall(ctx, req, rt)
		g.logCall(us, rt, req.Params.Arguments, res, err, time.Since(start))
		return res, err
	}
}

func (g *Gateway) forwardCall(ctx context.Context, req *mcp.CallToolRequest, rt route) (*mcp.CallToolResult, error) {
	sess, err := g.cfg.Backend.Session(ctx, rt.inst.ID)
	if err != nil {
		return nil, g.downstreamError(ctx, rt, err)
	}
	params := &mcp.CallToolParams{
		Meta:           forwardMeta(req.Params.Meta),
		Name:           rt.name,
		InputResponses: req.Params.InputResponses,
		RequestState:   req.Params.RequestState,
	}
	if len(req.Params.Arguments) > 0 {
		params.Arguments = req.Params.Arguments
	}
	if token := req.Params.GetProgressToken(); token != nil {
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
