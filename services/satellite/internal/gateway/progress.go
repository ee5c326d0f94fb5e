package gateway

import (
	"context"
	"crypto/rand"
	"fmt"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// progressRoutes bridges progress notifications of downstream calls to the callers that asked for them.
// A forwarded call carries a progress token of the gateway's own, unique across all callers sharing an
// instance; notifications with it go back to the caller under the caller's token, on the caller's
// request stream.
type progressRoutes struct {
	mu     sync.Mutex
	prefix string
	next   uint64
	routes map[string]progressRoute
}

type progressRoute struct {
	ctx        context.Context
	caller     *mcp.ServerSession
	token      any
	downstream *mcp.ClientSession
}

func (p *progressRoutes) add(ctx context.Context, caller *mcp.ServerSession, token any, downstream *mcp.ClientSession) (string, func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.prefix == "" {
		p.prefix = "orrery-" + rand.Text()[:10] + "-"
	}
	p.next++
	id := fmt.Sprintf("%s%d", p.prefix, p.next)
	p.routes[id] = progressRoute{ctx: ctx, caller: caller, token: token, downstream: downstream}
	return id, func() {
		p.mu.Lock()
		delete(p.routes, id)
		p.mu.Unlock()
	}
}

// HandleProgress relays a downstream progress notification to the caller whose call it belongs to. The
// runtime installs it as the ProgressNotificationHandler of its MCP clients. Notifications for unknown
// tokens, or arriving on a session other than the one the call went to, are dropped.
func (g *Gateway) HandleProgress(ctx context.Context, req *mcp.ProgressNotificationClientRequest) {
	if req == nil || req.Params == nil {
		return
	}
	id, ok := req.Params.ProgressToken.(string)
	if !ok {
		return
	}
	g.progress.mu.Lock()
	rt, ok := g.progress.routes[id]
	g.progress.mu.Unlock()
	if !ok || rt.caller == nil || (rt.downstream != nil && req.Session != rt.downstream) {
		return
	}
	// The call's own context routes the notification to the caller's request stream.
	_ = rt.caller.NotifyProgress(rt.ctx, &mcp.ProgressNotificationParams{
		Meta:          req.Params.Meta,
		ProgressToken: rt.token,
		Message:       req.Params.Message,
		Progress:      req.Params.Progress,
		Total:         req.Params.Total,
	})
}
