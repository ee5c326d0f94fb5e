//lint:file-ignore SA1019 sampling, roots and logging are deprecated only from the 2026-07-28 protocol on; the gateway forwards them for the session era, which still has them

package gateway

import (
	"context"
	"log/slog"
	"slices"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// levels are the MCP log levels, most verbose first.
var levels = []mcp.LoggingLevel{"debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"}

// userBridge is what a user's sessions asked for beyond plain requests: log levels and resource
// subscriptions, which the gateway applies to the user's instances.
type userBridge struct {
	mu sync.Mutex
	// levels are the log levels the user's sessions set with logging/setLevel.
	levels map[*mcp.ServerSession]mcp.LoggingLevel
	// requested is the most verbose level a request of the 2026-07-28 era carried, which has no
	// logging/setLevel; it stays, since requests of that era come and go without a session.
	requested mcp.LoggingLevel
	// applied is the level last set on each instance, with the session it was set on.
	applied map[string]appliedLevel
	// subscribers are the sessions subscribed to each resource URI.
	subscribers map[string]map[*mcp.ServerSession]bool
}

type appliedLevel struct {
	cs    *mcp.ClientSession
	level mcp.LoggingLevel
}

func (b *userBridge) init() {
	b.levels = make(map[*mcp.ServerSession]mcp.LoggingLevel)
	b.applied = make(map[string]appliedLevel)
	b.subscribers = make(map[string]map[*mcp.ServerSession]bool)
}

// logLevelMiddleware remembers the level a session sets. The SDK keeps it too, to filter what the
// session gets; the gateway needs it to choose the level of the shared instances.
//
// A request of the 2026-07-28 era carries its level in _meta instead; the most verbose such level is
// remembered too.
func (us *userServer) logLevelMiddleware(next mcp.MethodHandler) mcp.MethodHandler {
	return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
		if level := requestLevel(req.GetParams()); level != "" {
			us.bridge.mu.Lock()
			us.bridge.requested = moreVerbose(us.bridge.requested, level)
			us.bridge.mu.Unlock()
		}
		res, err := next(ctx, method, req)
		if method != "logging/setLevel" || err != nil {
			return res, err
		}
		ss, ok := req.GetSession().(*mcp.ServerSession)
		p, pok := req.GetParams().(*mcp.SetLoggingLevelParams)
		if ok && pok && slices.Contains(levels, p.Level) {
			us.bridge.mu.Lock()
			us.bridge.levels[ss] = p.Level
			us.bridge.mu.Unlock()
		}
		return res, err
	}
}

// logLevel is the level the user's instances should log at: the most verbose one any of the user's
// open sessions asked for, or "" while none did. Each session still gets only what its own level lets
// through.
func (us *userServer) logLevel() mcp.LoggingLevel {
	// Every call asks; while no session asked for a level, that costs no walk over the user's sessions.
	us.bridge.mu.Lock()
	if len(us.bridge.levels) == 0 {
		level := us.bridge.requested
		us.bridge.mu.Unlock()
		return level
	}
	us.bridge.mu.Unlock()
	open := us.openSessions()
	us.bridge.mu.Lock()
	defer us.bridge.mu.Unlock()
	level := us.bridge.requested
	for ss, l := range us.bridge.levels {
		if !open[ss] {
			delete(us.bridge.levels, ss)
			continue
		}
		level = moreVerbose(level, l)
	}
	return level
}

// moreVerbose returns the more verbose of two levels, where "" is none.
func moreVerbose(a, b mcp.LoggingLevel) mcp.LoggingLevel {
	if a == "" || (b != "" && slices.Index(levels, b) < slices.Index(levels, a)) {
		return b
	}
	return a
}

// requestLevel returns the log level in the _meta of a request's params, if it is a known one.
func requestLevel(p mcp.Params) mcp.LoggingLevel {
	var meta mcp.Meta
	switch p := p.(type) {
	case *mcp.CallToolParamsRaw:
		if p != nil {
			meta = p.Meta
		}
	case *mcp.GetPromptParams:
		if p != nil {
			meta = p.Meta
		}
	case *mcp.ReadResourceParams:
		if p != nil {
			meta = p.Meta
		}
	}
	level, _ := meta[mcp.MetaKeyLogLevel].(string)
	if !slices.Contains(levels, mcp.LoggingLevel(level)) {
		return ""
	}
	return mcp.LoggingLevel(level)
}

// applyLogLevel sets the user's log level on an instance that logs, unless it is set already on that
// session. A restarted instance has a new session and so gets the level again on its next request.
func (us *userServer) applyLogLevel(ctx context.Context, instanceID string, cs *mcp.ClientSession) {
	level := us.logLevel()
	if level == "" {
		return
	}
	if init := cs.InitializeResult(); init == nil || init.Capabilities == nil || init.Capabilities.Logging == nil {
		return
	}
	want := appliedLevel{cs: cs, level: level}
	us.bridge.mu.Lock()
	done := us.bridge.applied[instanceID] == want
	us.bridge.mu.Unlock()
	if done {
		return
	}
	if err := cs.SetLoggingLevel(ctx, &mcp.SetLoggingLevelParams{Level: level}); err != nil {
		us.g.logger.DebugContext(ctx, "setting the log level of an instance failed",
			slog.String("instance_id", instanceID), slog.Any("error", err))
		return
	}
	us.bridge.mu.Lock()
	us.bridge.applied[instanceID] = want
	us.bridge.mu.Unlock()
}

// openSessions returns the user's sessions that are still open.
func (us *userServer) openSessions() map[*mcp.ServerSession]bool {
	open := make(map[*mcp.ServerSession]bool)
	for ss := range us.allSessions() {
		open[ss] = true
	}
	return open
}
