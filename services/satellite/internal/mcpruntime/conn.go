package mcpruntime

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/services/satellite/internal/build"
	"github.com/orrery/orrery/services/satellite/internal/lines"
	"github.com/orrery/orrery/services/satellite/internal/sandbox"
)

// conn is one connection to a server: a session, and for stdio servers the process behind it.
type conn struct {
	in        *instance
	session   *mcp.ClientSession
	proc      *sandbox.Process // stdio servers only
	remote    *remoteTransport // remote servers only
	raw       *rawConn         // stdio servers only: requests the SDK's client has no method for
	app       string           // a server built from source: its built tree
	build     *build.Result    // the build app is, released when the connection closes
	leases    atomic.Int64     // leases handed out on this connection and not yet released
	startedAt time.Time
	requests  atomic.Uint64

	ctx    context.Context // the connection's lifetime
	cancel context.CancelFunc
	done   chan struct{} // closed when the session or the process ended
	relist chan struct{} // the server said a list changed
	once   sync.Once

	modern modernLane // a primary connection's second one, for clients of the 2026-07-28 era
}

// connect starts or dials the server and initializes a session. On failure it may still return the conn,
// whose process tells why; the caller closes it.
func (in *instance) connect(ctx context.Context, spec *satellitev1.Instance, kind startKind, reason string, built *build.Result) (*conn, error) {
	c := &conn{in: in, done: make(chan struct{}), relist: make(chan struct{}, 1), startedAt: time.Now(), build: built}
	if built != nil {
		c.app = built.Dir
	}
	c.ctx, c.cancel = context.WithCancel(in.rt.ctx)
	client := mcp.NewClient(in.rt.cfg.ClientInfo, &mcp.ClientOptions{
		Logger:                     in.log().With(slog.String("component", "mcp-client")),
		ToolListChangedHandler:     func(context.Context, *mcp.ToolListChangedRequest) { c.requestRelist() },
		PromptListChangedHandler:   func(context.Context, *mcp.PromptListChangedRequest) { c.requestRelist() },
		ResourceListChangedHandler: func(context.Context, *mcp.ResourceListChangedRequest) { c.requestRelist() },
		//lint:ignore SA1019 servers of the session era still send log notifications, and they belong in the server's logs
		LoggingMessageHandler:       in.logNotification,
		ProgressNotificationHandler: in.rt.dispatchProgress,
		Capabilities:                in.rt.cfg.ClientCapabilities,
	})
	err := c.dial(ctx, client, spec, in.rt.cfg.ProtocolVersion, func(pid int) { in.emitStart(kind, reason, pid) })
	if err != nil && c.proc == nil && c.remote == nil {
		built.Release()
		return nil, err // nothing was started that could tell more
	}
	return c, err
}

// dial starts or dials the server for c and connects client to it at protocolVersion; started, when set,
// is told a stdio server's pid.
func (c *conn) dial(ctx context.Context, client *mcp.Client, spec *satellitev1.Instance, protocolVersion string, started func(pid int)) error {
	in := c.in
	client.AddSendingMiddleware(c.track)

	var transport mcp.Transport
	if isStdio(spec) {
		dir := in.workDir()
		if err := os.MkdirAll(dir, 0o700); err != nil {
			c.cancel()
			return fmt.Errorf("working directory: %w", err)
		}
		box := sandboxSpec(spec, in.id, dir)
		box.App = c.app
		proc, err := in.rt.cfg.Driver.Start(box)
		if err != nil {
			c.cancel()
			return err
		}
		c.proc, c.startedAt = proc, proc.StartedAt()
		// Such as a limit the template asked for above the satellite's ceiling: its admins should know.
		for _, note := range proc.Notes() {
			in.emitLog(satellitev1.LogLevel_LOG_LEVEL_WARN, "sandbox: "+note)
		}
		go func() {
			// One byte past the limit, so cut still sees that a line was longer.
			err := lines.Read(proc.Stderr, in.rt.cfg.LogLineBytes+1, func(line string) {
				in.logs.line(satellitev1.LogLevel_LOG_LEVEL_INFO, line)
			})
			if err != nil {
				in.log().Warn("reading the server's stderr failed", slog.Any("error", err))
			}
		}()
		if started != nil {
			started(proc.Pid())
		}
		c.raw = &rawConn{lines: &lineWriter{w: proc.Stdin}, declared: &in.declared, taskSupport: &in.taskSupport}
		transport = &rawTransport{Transport: NewStdioTransport(client, proc.Stdout, c.raw.lines), raw: c.raw}
	} else {
		endpoint, err := endpointURL(spec)
		if err != nil {
			c.cancel()
			return err
		}
		c.remote = newRemoteTransport(in.rt.cfg.HTTPClient, endpoint, spec.GetHeaders(), spec.GetQueryParams())
		httpClient := &http.Client{Transport: c.remote, CheckRedirect: in.rt.cfg.HTTPClient.CheckRedirect, Jar: in.rt.cfg.HTTPClient.Jar}
		if spec.GetTransport() == satellitev1.Transport_TRANSPORT_SSE {
			transport = &mcp.SSEClientTransport{Endpoint: endpoint.String(), HTTPClient: httpClient}
		} else {
			transport = &mcp.StreamableClientTransport{Endpoint: endpoint.String(), HTTPClient: httpClient}
		}
	}

	if in.rt.cfg.ClientMiddleware != nil {
		client.AddReceivingMiddleware(in.rt.cfg.ClientMiddleware)
	}

	session, err := client.Connect(ctx, &lifetimeTransport{Transport: transport, ctx: c.ctx},
		&mcp.ClientSessionOptions{ProtocolVersion: protocolVersion})
	if err != nil {
		return fmt.Errorf("initialize: %w", err)
	}
	c.session = session
	go c.watch()
	return nil
}

// emitStart reports a stdio server's start as mcp.server.started or mcp.server.restarted.
func (in *instance) emitStart(kind startKind, reason string, pid int) {
	lc := satellitev1.LifecycleKind_LIFECYCLE_KIND_STARTED
	switch kind {
	case startCrashRestart:
		lc = satellitev1.LifecycleKind_LIFECYCLE_KIND_RESTARTED
		reason = "error_recovery"
	case startRestart:
		lc = satellitev1.LifecycleKind_LIFECYCLE_KIND_RESTARTED
	case startWake:
		reason = "woken from dormant for a call"
	}
	msg := fmt.Sprintf("pid %d", pid)
	if reason != "" {
		msg = reason + "; " + msg
	}
	in.mu.Lock()
	n := in.crashSeen
	in.mu.Unlock()
	in.emitLifecycle(lc, 0, msg, n)
}

// watch closes done when the session ends or the process exits, whichever comes first.
func (c *conn) watch() {
	ended := make(chan struct{})
	go func() {
		_ = c.session.Wait()
		close(ended)
	}()
	var exited <-chan struct{}
	if c.proc != nil {
		exited = c.proc.Done()
	}
	select {
	case <-ended:
	case <-exited:
	case <-c.ctx.Done():
		return // closed on purpose; the owner no longer watches done
	}
	close(c.done)
}

// close ends the session and, for stdio servers, stops the process: SIGTERM to its group at once, SIGKILL
// after grace. It returns once the process is gone and the session closed, or grace has passed twice.
func (c *conn) close(grace time.Duration) {
	c.once.Do(func() {
		c.modern.close(grace)
		c.cancel()
		closed := make(chan struct{})
		go func() {
			if c.session != nil {
				_ = c.session.Close()
			}
			close(closed)
		}()
		if c.proc != nil {
			c.proc.Stop(grace)
			c.in.rt.metrics.observeExit(c.proc)
		}
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-closed:
		case <-t.C:
			c.in.log().Warn("closing an MCP session takes longer than the grace period; leaving it")
		}
		c.build.Release()
	})
}

// track treats every call sent to the server as activity: while one runs the instance does not go idle,
// and each counts as a request. Listing (the runtime's own discovery), pings and notifications do not count.
func (c *conn) track(next mcp.MethodHandler) mcp.MethodHandler {
	return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
		if strings.HasPrefix(method, "notifications/") || strings.HasSuffix(method, "/list") ||
			method == "initialize" || method == "ping" || method == "server/discover" {
			return next(ctx, method, req)
		}
		in := c.in
		c.requests.Add(1)
		in.mu.Lock()
		in.inflight++
		in.lastUsed = time.Now()
		in.mu.Unlock()
		defer func() {
			in.mu.Lock()
			in.inflight--
			in.lastUsed = time.Now()
			in.mu.Unlock()
		}()
		return next(ctx, method, req)
	}
}

func (c *conn) requestRelist() {
	select {
	case c.relist <- struct{}{}:
	default:
	}
}

// relistLoop discovers the catalogue again whenever the server says a list changed, until the connection
// ends.
func (c *conn) relistLoop() {
	in := c.in
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-c.relist:
		}
		ctx, cancel := context.WithTimeout(c.ctx, in.rt.cfg.StartTimeout)
		cat, err := discover(ctx, c.session)
		cancel()
		if err != nil {
			if c.ctx.Err() == nil {
				in.log().Warn("discovering changed lists failed", slog.Any("error", err))
			}
			continue
		}
		toolsKey, changed := in.publishCatalog(c, cat, false)
		if toolsKey != "" {
			in.emit(&satellitev1.Event{Payload: &satellitev1.Event_ToolsDiscovered{ToolsDiscovered: toolsEvent(cat.tools)}})
		}
		if changed {
			in.saveKept()
			in.rt.reportHeldOf(in.currentSpec())
		}
	}
}

// lifetimeTransport connects under the connection's own context, so that a transport which ties its
// stream to the context it connects with (legacy SSE) outlives the start's deadline; the deadline still
// bounds the connecting.
type lifetimeTransport struct {
	mcp.Transport
	ctx context.Context
}

func (t *lifetimeTransport) Connect(ctx context.Context) (mcp.Connection, error) {
	connCtx, cancel := context.WithCancel(t.ctx)
	stop := context.AfterFunc(ctx, cancel)
	conn, err := t.Transport.Connect(connCtx)
	if !stop() {
		if err == nil {
			_ = conn.Close()
		}
		return nil, context.Cause(ctx)
	}
	return conn, err
}

// dirName turns an instance id into a safe directory name.
func dirName(id string) string {
	var b strings.Builder
	for _, r := range id {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	name := strings.TrimLeft(b.String(), ".")
	if len(name) > 200 {
		name = name[:200]
	}
	if name == "" {
		return "_"
	}
	return name
}

// logNotification passes a server's log notification, as one line, through the rate limiter.
func (in *instance) logNotification(_ context.Context, req *mcp.LoggingMessageRequest) {
	p := req.Params
	text, ok := p.Data.(string)
	if !ok {
		b, _ := json.Marshal(p.Data)
		text = string(b)
	}
	if p.Logger != "" {
		text = p.Logger + ": " + text
	}
	level := satellitev1.LogLevel_LOG_LEVEL_ERROR // error, critical, alert, emergency
	switch string(p.Level) {
	case "debug":
		level = satellitev1.LogLevel_LOG_LEVEL_DEBUG
	case "info", "notice":
		level = satellitev1.LogLevel_LOG_LEVEL_INFO
	case "warning":
		level = satellitev1.LogLevel_LOG_LEVEL_WARN
	}
	in.logs.line(level, text)
}
