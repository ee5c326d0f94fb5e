package gateway

import (
	"context"
	"log/slog"
	"maps"
	"slices"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/yosida95/uritemplate/v3"
)

// resourceRoute returns where a resource URI is served: the instance listing it, or else the instance
// whose template matches it (templates in URI-template order, so the choice is stable).
func (us *userServer) resourceRoute(uri string) (route, bool) {
	us.syncMu.Lock()
	defer us.syncMu.Unlock()
	if r, ok := us.resources[uri]; ok {
		return r.rt, true
	}
	for _, key := range slices.Sorted(maps.Keys(us.templates)) {
		tmpl, err := uritemplate.New(key)
		if err == nil && tmpl.Match(uri) != nil {
			return us.templates[key].rt, true
		}
	}
	return route{}, false
}

// subscribe forwards a session's subscription to the instance serving the resource. The SDK remembers
// the session as a subscriber, and relayUpdated tells it of the instance's updates.
func (us *userServer) subscribe(ctx context.Context, req *mcp.SubscribeRequest) error {
	rt, ok := us.resourceRoute(req.Params.URI)
	if !ok {
		return mcp.ResourceNotFoundError(req.Params.URI)
	}
	cs, done, err := us.g.open(ctx, us, rt, req.Session)
	if err != nil {
		return err
	}
	defer done()
	if err := cs.Subscribe(ctx, &mcp.SubscribeParams{Meta: forwardMeta(req.Params.Meta), URI: req.Params.URI}); err != nil {
		return us.g.downstreamError(ctx, rt, err)
	}
	open := us.openSessions()
	us.bridge.mu.Lock()
	defer us.bridge.mu.Unlock()
	us.pruneSubscribers(open)
	subs := us.bridge.subscribers[req.Params.URI]
	if subs == nil {
		subs = make(map[*mcp.ServerSession]bool)
		us.bridge.subscribers[req.Params.URI] = subs
	}
	subs[req.Session] = true
	return nil
}

// unsubscribe ends a session's subscription, and the instance's once no session of the user is
// subscribed to the resource any more.
func (us *userServer) unsubscribe(ctx context.Context, req *mcp.UnsubscribeRequest) error {
	uri := req.Params.URI
	open := us.openSessions()
	us.bridge.mu.Lock()
	delete(us.bridge.subscribers[uri], req.Session)
	us.pruneSubscribers(open)
	_, others := us.bridge.subscribers[uri]
	us.bridge.mu.Unlock()
	if others {
		return nil
	}
	rt, ok := us.resourceRoute(uri)
	if !ok {
		return nil
	}
	cs, done, err := us.g.open(ctx, us, rt, req.Session)
	if err != nil {
		return err
	}
	defer done()
	if err := cs.Unsubscribe(ctx, &mcp.UnsubscribeParams{Meta: forwardMeta(req.Params.Meta), URI: uri}); err != nil {
		return us.g.downstreamError(ctx, rt, err)
	}
	return nil
}

// resubscribe renews, on an instance's new session, the subscriptions of the user's open sessions to
// resources the instance serves: those of its previous session ended with it.
func (us *userServer) resubscribe(ctx context.Context, instanceID string, cs *mcp.ClientSession) {
	open := us.openSessions()
	us.bridge.mu.Lock()
	us.pruneSubscribers(open)
	uris := slices.Sorted(maps.Keys(us.bridge.subscribers))
	us.bridge.mu.Unlock()
	for _, uri := range uris {
		if rt, ok := us.resourceRoute(uri); !ok || rt.inst.ID != instanceID {
			continue
		}
		if err := cs.Subscribe(ctx, &mcp.SubscribeParams{URI: uri}); err != nil {
			us.g.logger.WarnContext(ctx, "renewing a resource subscription failed",
				slog.String("instance_id", instanceID), slog.Any("error", err))
		}
	}
}

// pruneSubscribers forgets the subscriptions of sessions that are no longer open, and the resources
// nobody is subscribed to any more. Call it with us.bridge.mu held.
func (us *userServer) pruneSubscribers(open map[*mcp.ServerSession]bool) {
	for uri, subs := range us.bridge.subscribers {
		maps.DeleteFunc(subs, func(ss *mcp.ServerSession, _ bool) bool { return !open[ss] })
		if len(subs) == 0 {
			delete(us.bridge.subscribers, uri)
		}
	}
}
