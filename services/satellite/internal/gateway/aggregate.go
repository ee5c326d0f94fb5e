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
	var found []feature[mcp.Tool]
	for _, inst := range insts {
		for _, t := range inst.Tools {
			if t == nil || t.Name == "" {
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
		if t.InputSchema == nil {
			t.InputSchema = map[string]any{"type": "object"}
		}
		want[name] = feature[mcp.Tool]{def: &t, rt: found[i].rt}
	}
	reconcile(us, "tool", us.tools, want, us.server.RemoveTools, func(t *mcp.Tool, rt route) {
		us.server.AddTool(t, us.g.callTool(us, rt))
	})
}

func (us *userServer) syncResources(insts []Instance) {
	var cands []nameCandidate
	var found []feature[mcp.Resource]
	seen := map[string]bool{}
	for _, inst := range insts {
		for _, r := range inst.Resources {
			// Instances are in (slug, id) order, so the same instance wins a shared URI every time.
			if r == nil || r.URI == "" || seen[r.URI] {
				continue
			}
			seen[r.URI] = true
			cands = append(cands, nameCandidate{prefix: inst.Prefix, name: cmp.Or(r.Name, r.URI), instanceID: inst.ID})
			found = append(found, feature[mcp.Resource]{def: r, rt: route{inst: inst, name: r.URI}})
		}
	}
	want := make(map[string]feature[mcp.Resource], len(found))
	for i, name := range assignNames(cands) {
		r := *found[i].def
		r.Name = name
		want[r.URI] = feature[mcp.Resource]{def: &r, rt: found[i].rt}
	}
	reconcile(us, "resource", us.resources, want, us.server.RemoveResources, func(r *mcp.Resource, rt route) {
		us.server.AddResource(r, us.g.readResource(rt))
	})
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
	reconcile(us, "prompt", us.prompts, want, us.server.RemovePrompts, func(p *mcp.Prompt, rt route) {
		us.server.AddPrompt(p, us.g.getPrompt(rt))
	})
}

// feature is one tool, resource or prompt to register under its public name, and where calls to it go.
type feature[T any] struct {
	def *T
	rt  route
}

// reconcile brings the features registered on a user's server, have (key → fingerprint), to want: it
// removes what want lacks and registers what is new or changed, so clients see list_changed only for real
// changes. A feature the SDK refuses is logged and left out; the others still register.
func reconcile[T any](us *userServer, kind string, have map[string]string, want map[string]feature[T],
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
		if have[key] == fp {
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
		have[key] = fp
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
