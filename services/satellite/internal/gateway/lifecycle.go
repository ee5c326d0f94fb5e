package gateway

import (
	"context"
	"log/slog"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// unsubscribeTimeout bounds the downstream resources/unsubscribe sent when a session that was the last
// subscriber of a resource closes.
const unsubscribeTimeout = 10 * time.Second

// A user's aggregated server lives while something uses it: an HTTP request of the user in progress
// (a legacy SSE session is one long GET), an open Streamable HTTP session, or a downstream request
// started for a client of the 2026-07-28 era that may still be waiting for the client's input. Each
// holds a reference. When the last one goes, an idle timer starts; if nothing took a reference again
// when it fires, the server is dropped with everything the gateway keeps for it, and the user's next
// request builds it afresh from the runtime's instances.

type userServerKey struct{}

// acquire returns the aggregated server of a team's user, creating and filling it on first use, with a
// reference held until release is called.
func (g *Gateway) acquire(teamID, userID string) (us *userServer, release func()) {
	key := userKey{teamID, userID}
	g.mu.Lock()
	us = g.users[key]
	if us == nil {
		us = g.newUserServer(key)
		g.users[key] = us
	}
	g.holdLocked(us)
	g.mu.Unlock()
	us.init.Do(us.sync)
	return us, func() { g.release(us) }
}

// hold takes another reference on a server the caller already holds one on.
func (g *Gateway) hold(us *userServer) (release func()) {
	g.mu.Lock()
	g.holdLocked(us)
	g.mu.Unlock()
	return func() { g.release(us) }
}

func (g *Gateway) holdLocked(us *userServer) {
	us.refs++
	if us.idle != nil {
		us.idle.Stop()
		us.idle = nil
	}
}

// release drops a reference and, with the last one, starts the idle timer.
func (g *Gateway) release(us *userServer) {
	g.mu.Lock()
	defer g.mu.Unlock()
	us.refs--
	if us.refs > 0 {
		return
	}
	// A timer that fired but still waits for g.mu while the server is taken and released again finds a
	// newer generation, and leaves the server to the new timer.
	us.gen++
	gen := us.gen
	us.idle = time.AfterFunc(g.cfg.UserIdleTimeout, func() { g.expire(us, gen) })
}

// expire drops an aggregated server that nothing used since its idle timer of generation gen started.
func (g *Gateway) expire(us *userServer, gen uint64) {
	g.mu.Lock()
	if us.refs > 0 || us.gen != gen || g.users[us.key] != us {
		g.mu.Unlock()
		return
	}
	delete(g.users, us.key)
	us.idle = nil
	g.mu.Unlock()
	// No session of the user is open, so nothing reaches the server any more; what the runtime's sessions
	// to the user's instances could still look up is forgotten here.
	g.bridge.forget(us, nil)
	us.closeIndex()
	g.logger.Debug("idle user's endpoint freed", slog.String("team_id", us.key.teamID), slog.String("user_id", us.key.userID))
}

// withUserServer puts the server a request holds into its context, for serverFor.
func withUserServer(ctx context.Context, us *userServer) context.Context {
	return context.WithValue(ctx, userServerKey{}, us)
}

func userServerFrom(ctx context.Context) *userServer {
	us, _ := ctx.Value(userServerKey{}).(*userServer)
	return us
}

// sessionMiddleware holds a reference for each session of the server from its initialize until it
// closes, and forgets the session's log level and subscriptions then. Sessions of the stateless handler
// never initialize: they last one request, which holds its own reference. search says which of the
// user's servers it serves.
func (us *userServer) sessionMiddleware(search bool) mcp.Middleware {
	return func(next mcp.MethodHandler) mcp.MethodHandler {
		return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
			if ss, ok := req.GetSession().(*mcp.ServerSession); ok && method == "initialize" {
				// The Streamable HTTP transport hands on the token's binding; a legacy SSE session runs in the
				// context of its stream's request, which guard gave the principal.
				if extra := req.GetExtra(); extra != nil && extra.TokenInfo != nil {
					us.watch(ss, &openSession{binding: extra.TokenInfo.UserID, streamable: true, search: search})
				} else if p := principalFrom(ctx); p != nil {
					us.watch(ss, &openSession{binding: p.binding, search: search})
				}
			}
			return next(ctx, method, req)
		}
	}
}

// openSession is what the gateway keeps of a session that initialized, while it is open.
type openSession struct {
	// binding is the principal binding the session was opened under.
	binding string
	// streamable says it is a Streamable HTTP session, which the gateway finds by its id (see
	// sessionIndex) and closes when it has been idle; search says it is a session of the search-mode server.
	streamable, search bool
	ss                 *mcp.ServerSession
	us                 *userServer
	// slot is the session's place in the session limits, for a Streamable HTTP session; a legacy SSE
	// session's stream holds its own. Guarded by g.mu.
	slot *slot

	// use is the session's use by HTTP requests, for a Streamable HTTP session (see sessioncall.go).
	use sessionUse
}

// watch holds a reference for ss, described by open, until it closes. It runs during a request of ss,
// which holds one too: for a Streamable HTTP session, its opening POST.
func (us *userServer) watch(ss *mcp.ServerSession, open *openSession) {
	us.g.mu.Lock()
	if _, ok := us.sessions[ss]; ok {
		us.g.mu.Unlock()
		return
	}
	open.ss, open.us = ss, us
	if open.streamable {
		open.use.posts = 1 // the opening POST, which keepSlot ends
	}
	us.sessions[ss] = open
	us.g.holdLocked(us)
	us.g.mu.Unlock()
	if open.streamable {
		us.g.sessions.add(open)
	}
	go func() {
		_ = ss.Wait()
		if open.streamable {
			us.g.sessions.remove(open)
			open.closed()
		}
		us.sessionClosed(ss)
		us.g.mu.Lock()
		sl := us.sessions[ss].slot
		delete(us.sessions, ss)
		us.g.mu.Unlock()
		if sl != nil {
			sl.release()
		}
		us.g.release(us)
	}()
}

// keepSlot hands sl, taken for a POST that may have opened a Streamable HTTP session, to the session with
// id if that is open, to be given back when it closes, and gives it back now otherwise: the POST opened
// no session, its initialize failed, or the session is already closed. The opening POST is over: the
// session's idle time starts.
func (us *userServer) keepSlot(sl *slot, id string) {
	if open := us.g.sessions.get(id); id != "" && open != nil && open.us == us {
		us.g.mu.Lock()
		kept := open.slot == nil
		if kept {
			open.slot = sl
		}
		us.g.mu.Unlock()
		if kept {
			open.endPOST(us.g.cfg.SessionIdleTimeout)
			return
		}
	}
	sl.release()
}

// sessionClosed forgets what a closed session asked for, and ends the instances' subscriptions that
// no open session of the user needs any more.
func (us *userServer) sessionClosed(ss *mcp.ServerSession) {
	us.bridge.mu.Lock()
	delete(us.bridge.levels, ss)
	var orphaned []string
	for uri, subs := range us.bridge.subscribers {
		if !subs[ss] {
			continue
		}
		delete(subs, ss)
		if len(subs) == 0 {
			delete(us.bridge.subscribers, uri)
			orphaned = append(orphaned, uri)
		}
	}
	us.bridge.mu.Unlock()
	for _, uri := range orphaned {
		rt, ok := us.resourceRoute(uri)
		if !ok {
			continue
		}
		// The session the gateway last used has the subscription (resubscribe renews it on a new one);
		// an instance the gateway has no session of is not woken just to unsubscribe.
		cs := us.g.bridge.sessionOf(us, rt.inst.ID)
		if cs == nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), unsubscribeTimeout)
		if err := cs.Unsubscribe(ctx, &mcp.UnsubscribeParams{URI: uri}); err != nil {
			us.g.logger.Debug("ending an instance's subscription failed", slog.String("instance_id", rt.inst.ID),
				slog.Any("error", err))
		}
		cancel()
	}
}

// closeSessions closes the open sessions initialized under these principal bindings, streams included.
func (g *Gateway) closeSessions(bindings map[string]bool) {
	var doomed []*openSession
	g.mu.Lock()
	for _, us := range g.users {
		for _, open := range us.sessions {
			if bindings[open.binding] {
				doomed = append(doomed, open)
			}
		}
	}
	g.mu.Unlock()
	for _, open := range doomed {
		open.close()
	}
}
