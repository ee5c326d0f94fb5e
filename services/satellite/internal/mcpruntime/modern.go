package mcpruntime

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
)

// ModernProtocolVersion is the protocol version of a modern lane (see Runtime.ModernSession).
const ModernProtocolVersion = "2026-07-28"

// modernRetry is how long a failed modern lane is not tried again, so that a server that cannot start a
// second time costs one attempt per interval rather than one per call.
const modernRetry = 10 * time.Second

// A server speaks one protocol era per connection: in the session era it asks its client with requests
// of its own while serving a call, in the 2026-07-28 era it answers with input_required results instead,
// and a server that supports both decides by the version its client negotiated. The primary connection
// stays in the session era, which every server speaks and which servers written for it need. Clients of
// the 2026-07-28 era get a second connection, the modern lane, opened on first use: each of their calls
// then carries its own input requests in its result, so nothing has to be attributed to a caller, and
// the calls see the server as they would if they were connected to it directly.

// modernLane is the modern lane of one primary connection; it ends with it.
type modernLane struct {
	mu          sync.Mutex
	conn        *conn
	unsupported bool          // the server answered in the session era
	attempt     chan struct{} // closed when the running attempt ends; nil when none runs
	failedAt    time.Time
	err         error
	closed      bool
}

// ModernSession returns a client session to instance id in the 2026-07-28 era, starting the instance as
// Session does and the lane on first use: for a stdio server, a second process under the same sandbox
// and limits. It returns nil and no error when the server does not speak that era. Requests on it
// follow the 2026-07-28 rules: the client's capabilities travel in each request's _meta (a caller's set
// there are kept), and input_required results come back as they are, for the caller to answer. A lane
// still starting after CallStartWait gives ErrStarting; one that failed to start, or whose server ended
// on its own, gives ErrUnavailable and is not started again for modernRetry.
func (r *Runtime) ModernSession(ctx context.Context, id string) (*mcp.ClientSession, error) {
	lease, err := r.Acquire(ctx, id)
	if err != nil {
		return nil, err
	}
	defer lease.Release()
	return lease.c.modernSession(ctx)
}

func (c *conn) modernSession(ctx context.Context) (*mcp.ClientSession, error) {
	l := &c.modern
	var deadline <-chan time.Time
	for {
		l.mu.Lock()
		switch {
		case l.closed:
			l.mu.Unlock()
			return nil, fmt.Errorf("%w: the connection ended", ErrUnavailable)
		case l.unsupported:
			l.mu.Unlock()
			return nil, nil
		case l.conn != nil && !isDone(l.conn.done):
			cs := l.conn.session
			l.mu.Unlock()
			return cs, nil
		case l.conn != nil:
			// The lane's server ended on its own: a failure like a failed start, so that a server that
			// keeps dying is not started again on every call.
			old := l.conn
			l.conn = nil
			l.err, l.failedAt = fmt.Errorf("%w: the 2026-07-28 lane's server ended", ErrUnavailable), time.Now()
			err := l.err
			l.mu.Unlock()
			go c.endModern(old)
			return nil, err
		case l.attempt != nil:
			wait := l.attempt
			l.mu.Unlock()
			if deadline == nil {
				t := time.NewTimer(c.in.rt.cfg.CallStartWait)
				defer t.Stop()
				deadline = t.C
			}
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-deadline:
				return nil, fmt.Errorf("%w: the 2026-07-28 lane after %v", ErrStarting, c.in.rt.cfg.CallStartWait)
			}
		case l.err != nil && time.Since(l.failedAt) < modernRetry:
			err := l.err
			l.mu.Unlock()
			return nil, err
		}
		l.attempt = make(chan struct{})
		l.mu.Unlock()
		// Under the primary connection's lifetime, not the caller's: the lane serves every caller after it.
		go c.openModern()
	}
}

// endModern closes m, a lane that ended on its own, and tells the instance's logs why it ended: once
// closed, a stdio server has surely exited and says how.
func (c *conn) endModern(m *conn) {
	m.close(c.in.rt.cfg.StopGrace)
	how := "closed the connection"
	if m.proc != nil {
		how = "exited (" + exitDetail(m.proc) + ")"
	}
	c.in.log().Warn("the 2026-07-28 lane ended", slog.String("how", how))
	c.in.emitLog(satellitev1.LogLevel_LOG_LEVEL_WARN,
		fmt.Sprintf("the 2026-07-28 lane's server %s; it starts again in %v at the earliest", how, modernRetry))
}

// openModern makes one attempt at the lane and ends l.attempt.
func (c *conn) openModern() {
	in := c.in
	l := &c.modern
	ctx, cancel := context.WithTimeout(c.ctx, in.rt.cfg.StartTimeout)
	defer cancel()
	m := &conn{in: in, done: make(chan struct{}), relist: make(chan struct{}, 1), startedAt: time.Now()}
	m.ctx, m.cancel = context.WithCancel(c.ctx)
	m.app = c.app // the primary's build; the primary releases it
	// The primary connection keeps the catalogue and the server's log; the lane only carries calls, so it
	// asks for no list changes. Its input requests are the caller's to answer, not the SDK's.
	client := mcp.NewClient(in.rt.cfg.ClientInfo, &mcp.ClientOptions{
		Logger:                      in.log().With(slog.String("component", "mcp-client"), slog.String("lane", "modern")),
		ProgressNotificationHandler: in.rt.dispatchProgress,
		Capabilities:                in.rt.cfg.ClientCapabilities,
		MultiRoundTrip:              &mcp.MultiRoundTripOptions{Disabled: true},
	})
	err := m.dial(ctx, client, in.currentSpec(), ModernProtocolVersion, nil)
	unsupported := err == nil && m.session.InitializeResult().ProtocolVersion < ModernProtocolVersion
	if err != nil || unsupported {
		m.close(in.rt.cfg.StopGrace)
	}
	if err == nil && !unsupported && m.proc != nil {
		// Like the primary, the lane runs at its own CPU limit once up, not the start-up allowance.
		m.proc.Started()
	}
	if err != nil {
		in.log().Warn("opening the 2026-07-28 lane failed", slog.Any("error", err))
		err = fmt.Errorf("%w: %w", ErrUnavailable, err)
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	close(l.attempt)
	l.attempt = nil
	switch {
	case l.closed:
		if err == nil && !unsupported {
			go m.close(in.rt.cfg.StopGrace)
		}
	case err != nil:
		l.err, l.failedAt = err, time.Now()
	case unsupported:
		l.unsupported = true
	default:
		l.conn, l.err = m, nil
	}
}

// close ends the lane's connection and keeps it from opening again.
func (l *modernLane) close(grace time.Duration) {
	l.mu.Lock()
	m := l.conn
	l.conn, l.closed = nil, true
	l.mu.Unlock()
	if m != nil {
		m.close(grace)
	}
}

func isDone(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
