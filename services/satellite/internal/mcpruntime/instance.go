package mcpruntime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/services/satellite/internal/build"
)

// hold is why an instance stays stopped whatever calls arrive.
type hold int

const (
	holdNone    hold = iota
	holdKilled       // a kill command stopped it
	holdFailed       // it crashed too often
	holdRemoved      // it is no longer desired; its goroutine has ended or is ending
)

type cmdKind int

const (
	cmdConfigure   cmdKind = iota // apply spec; restart if its hash changed
	cmdSpawn                      // start unless running
	cmdKill                       // stop and hold until spawn or restart
	cmdRestart                    // stop, forget crashes and holds, start
	cmdRemove                     // stop for good
	cmdReconnect                  // remote servers: connect and discover again
	cmdCheckResult                // a credential check's verdict
)

// command is a request to an instance's goroutine. done is closed once it has been carried out, a start it
// caused included.
type command struct {
	kind    cmdKind
	spec    *satellitev1.Instance
	reason  string
	status  satellitev1.InstanceStatus
	message string
	done    chan struct{}
	urgent  bool // sent by sendUrgent
}

// startKind says why a server starts, which decides its lifecycle event.
type startKind int

const (
	startFirst        startKind = iota // mcp.server.started
	startWake                          // mcp.server.started, from dormant
	startCrashRestart                  // mcp.server.restarted after a crash
	startRestart                       // mcp.server.restarted on command or new configuration
	startReconnect                     // a remote server connects again; no process, no lifecycle event
)

// instance is one MCP server instance. One goroutine (run) owns its lifecycle and carries out commands in
// order; everything others read is published under mu.
type instance struct {
	rt     *Runtime
	id     string
	logs   *logLimiter
	wake   chan struct{} // Acquire asks for a start; coalesced
	queued chan struct{} // commands are waiting in queue
	exited chan struct{} // closed when run returns

	// Owned by the run goroutine.
	conn         *conn
	crashes      crashHistory
	restartTimer *time.Timer
	configured   bool
	// failedBuild is the cache key of the source build that last failed: it is not tried again, on a
	// call or a crash, until a new configuration or a restart command.
	failedBuild string

	keptMu sync.Mutex // serializes writes of the kept catalogue

	// declared holds the capabilities the server last declared on a stdio connection, as it wrote them;
	// they stay while it is dormant, like the catalogue.
	declared atomic.Pointer[map[string]json.RawMessage]
	// taskSupport holds the execution.taskSupport each tool declared in the server's last tools/list on a
	// stdio connection, for the tools that declared one; the SDK's Tool type drops the field.
	taskSupport atomic.Pointer[map[string]string]

	mu        sync.Mutex
	queue     []command
	spec      *satellitev1.Instance
	selection *satellitev1.ToolSelection // applied apart from spec, without a restart
	status    satellitev1.InstanceStatus
	message   string
	live      *conn // the connection calls may use; nil unless online
	current   *conn // the connection being made or in use, for process reports
	cat       catalog
	catKey    string // identifies cat's content, to tell real changes
	toolsKey  string // identifies the tools last reported in an event
	revision  uint64
	inflight  int
	lastUsed  time.Time
	startSeq  uint64 // counts finished start attempts
	busy      bool   // a start runs or a restart is scheduled
	hold      hold
	crashSeen int
	changed   chan struct{} // closed and replaced on every published change
	interrupt context.CancelFunc
	// urgent counts the queued commands that make a start pointless (see sendUrgent).
	urgent int
}

func (r *Runtime) newInstance(spec *satellitev1.Instance) *instance {
	in := &instance{
		rt:        r,
		id:        spec.GetId(),
		spec:      spec,
		selection: spec.GetToolSelection(),
		wake:      make(chan struct{}, 1),
		queued:    make(chan struct{}, 1),
		exited:    make(chan struct{}),
		changed:   make(chan struct{}),
	}
	in.logs = newLogLimiter(r.cfg.LogLinesPerSecond, r.cfg.LogLineBytes, in.emitLog)
	return in
}

// setSelection makes sel the instance's tool selection and reports whether it changed.
func (in *instance) setSelection(sel *satellitev1.ToolSelection) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	if proto.Equal(in.selection, sel) {
		return false
	}
	in.selection = sel
	return true
}

// send queues cmd for the run goroutine. It never blocks: commands are few, and a start may keep the
// goroutine busy for a while.
func (in *instance) send(cmd command) {
	in.mu.Lock()
	in.queue = append(in.queue, cmd)
	if cmd.urgent {
		in.urgent++
		if in.interrupt != nil {
			in.interrupt()
		}
	}
	in.mu.Unlock()
	select {
	case in.queued <- struct{}{}:
	default:
	}
}

// sendUrgent queues cmd, which makes a start pointless, and cuts short the start in progress. A start that
// begins while cmd waits in the queue, for a command before it, is cut short as it begins.
func (in *instance) sendUrgent(cmd command) {
	cmd.urgent = true
	in.send(cmd)
}

// await waits until cmd was carried out or the instance ended.
func (in *instance) await(ctx context.Context, cmd command) error {
	select {
	case <-cmd.done:
		return nil
	case <-in.exited:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (in *instance) log() *slog.Logger {
	return in.rt.logger.With(slog.String("instance_id", in.id))
}

func (in *instance) run() {
	defer in.rt.wg.Done()
	defer close(in.exited)
	ctx := in.rt.ctx
	for {
		var exited <-chan struct{}
		if in.conn != nil {
			exited = in.conn.done
		}
		var restart <-chan time.Time
		if in.restartTimer != nil {
			restart = in.restartTimer.C
		}
		idle := in.idleTimer()
		var idleC <-chan time.Time
		if idle != nil {
			idleC = idle.C
		}
		select {
		case <-ctx.Done():
			in.shutdown()
			return
		case <-in.queued:
			// One at a time, so that a start for one command sees the urgent ones still waiting.
			for cmd, ok := in.next(); ok; cmd, ok = in.next() {
				removed := in.handle(ctx, cmd)
				close(cmd.done)
				if removed {
					in.finishQueue()
					return
				}
			}
		case <-in.wake:
			in.onWake(ctx)
		case <-exited:
			in.onExit(ctx)
		case <-restart:
			in.restartTimer = nil
			in.start(ctx, startCrashRestart, "")
		case <-idleC:
			in.onIdle()
		}
		if idle != nil {
			idle.Stop()
		}
	}
}

// next takes the oldest queued command.
func (in *instance) next() (command, bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if len(in.queue) == 0 {
		return command{}, false
	}
	cmd := in.queue[0]
	in.queue = in.queue[1:]
	if cmd.urgent {
		in.urgent--
	}
	return cmd, true
}

// finishQueue releases the waiters of commands that arrive after removal.
func (in *instance) finishQueue() {
	for cmd, ok := in.next(); ok; cmd, ok = in.next() {
		close(cmd.done)
	}
}

// handle carries out one command and reports whether the instance was removed.
func (in *instance) handle(ctx context.Context, cmd command) (removed bool) {
	switch cmd.kind {
	case cmdConfigure:
		old := in.currentSpec()
		in.mu.Lock()
		in.spec = cmd.spec
		in.mu.Unlock()
		if !in.configured {
			in.configured = true
			// What the server offered before the satellite restarted is listed while it starts again; the
			// status comes first, so nobody sees those tools on an instance that is not yet available.
			in.setStatus(satellitev1.InstanceStatus_INSTANCE_STATUS_PROVISIONING, "")
			if cat, ok := in.loadKept(); ok {
				in.publishCatalog(nil, cat, true)
				in.rt.reportHeldOf(in.currentSpec())
			}
			release := in.coldStartSlot(ctx)
			in.start(ctx, startFirst, "")
			release()
			return false
		}
		if old.GetContentHash() == cmd.spec.GetContentHash() {
			return false
		}
		// A new configuration deserves a fresh start: it may fix what made the server crash.
		in.crashes = nil
		in.failedBuild = ""
		if in.currentHold() == holdKilled {
			return false // the next spawn or restart uses the new configuration
		}
		if in.canRedeploy(cmd.spec) {
			in.redeploy(ctx, old, cmd.spec)
			return false
		}
		in.setHold(holdNone)
		in.cancelRestart()
		in.stopConn()
		in.setStatus(satellitev1.InstanceStatus_INSTANCE_STATUS_RESTARTING, "configuration changed")
		in.start(ctx, startRestart, "config_reload")
	case cmdSpawn:
		if in.currentHold() == holdFailed {
			return false
		}
		in.setHold(holdNone)
		if in.conn != nil && in.currentStatus() == satellitev1.InstanceStatus_INSTANCE_STATUS_ONLINE {
			return false
		}
		in.cancelRestart()
		in.stopConn()
		in.start(ctx, startFirst, "")
	case cmdKill:
		in.cancelRestart()
		in.stopConn()
		in.setHold(holdKilled)
		in.setStatus(satellitev1.InstanceStatus_INSTANCE_STATUS_OFFLINE, "stopped by a kill command")
	case cmdRestart:
		in.cancelRestart()
		in.crashes = nil
		in.failedBuild = ""
		if spec := in.currentSpec(); cmd.reason == "config_reload" && in.currentHold() == holdNone && in.canRedeploy(spec) {
			// A redeploy command: blue/green, as for a new configuration.
			in.redeploy(ctx, spec, spec)
			return false
		}
		in.setHold(holdNone)
		in.stopConn()
		msg := "restart requested"
		if cmd.reason != "" {
			msg += ": " + cmd.reason
		}
		in.setStatus(satellitev1.InstanceStatus_INSTANCE_STATUS_RESTARTING, msg)
		in.start(ctx, startRestart, cmd.reason)
	case cmdRemove:
		in.cancelRestart()
		in.stopConn()
		in.setHold(holdRemoved)
		in.logs.flush()
		in.removeKept()
		// The working directory goes with the instance; whatever the server kept there is for this
		// configuration only.
		if err := os.RemoveAll(in.workDir()); err != nil {
			in.log().Warn("cannot remove the working directory of a removed instance", slog.Any("error", err))
		}
		return true
	case cmdReconnect:
		if isStdio(in.currentSpec()) || in.currentHold() != holdNone {
			return false
		}
		in.stopConn()
		in.start(ctx, startReconnect, "")
	case cmdCheckResult:
		if cmd.status != satellitev1.InstanceStatus_INSTANCE_STATUS_ONLINE {
			in.setStatus(cmd.status, cmd.message)
			return false
		}
		switch {
		case in.conn != nil:
			in.setStatus(satellitev1.InstanceStatus_INSTANCE_STATUS_ONLINE, "")
			in.mu.Lock()
			in.live = in.conn
			in.mu.Unlock()
		case in.currentHold() == holdNone && in.restartTimer == nil:
			in.start(ctx, startReconnect, "")
		}
	}
	return false
}

// idleTimer returns a timer for when a running stdio server may have gone idle, or nil.
func (in *instance) idleTimer() *time.Timer {
	if in.conn == nil || in.conn.proc == nil || in.rt.cfg.IdleTimeout < 0 {
		return nil
	}
	in.mu.Lock()
	wait := in.rt.cfg.IdleTimeout - time.Since(in.lastUsed)
	if in.inflight > 0 {
		wait = in.rt.cfg.IdleTimeout
	}
	in.mu.Unlock()
	return time.NewTimer(max(wait, 0))
}

// onIdle stops a stdio server that has had no calls for IdleTimeout; the next Acquire starts it again.
func (in *instance) onIdle() {
	in.mu.Lock()
	idle := in.inflight == 0 && time.Since(in.lastUsed) >= in.rt.cfg.IdleTimeout
	in.mu.Unlock()
	if !idle || in.conn == nil {
		return
	}
	in.stopConn()
	in.setStatus(satellitev1.InstanceStatus_INSTANCE_STATUS_DORMANT,
		fmt.Sprintf("stopped after %v without calls; starts again on the next call", in.rt.cfg.IdleTimeout))
}

// onWake starts an instance that Acquire needs, unless a start is already due.
func (in *instance) onWake(ctx context.Context) {
	if in.restartTimer != nil || in.currentHold() != holdNone || !in.configured {
		return
	}
	if in.conn != nil {
		if in.currentStatus() == satellitev1.InstanceStatus_INSTANCE_STATUS_ONLINE {
			return
		}
		// Connected, but a health check found it wanting: connect afresh.
		in.stopConn()
	}
	kind := startWake
	if !isStdio(in.currentSpec()) {
		kind = startReconnect
	}
	in.start(ctx, kind, "")
}

// onExit handles a process that exited, or a session that ended, while the instance was running.
func (in *instance) onExit(ctx context.Context) {
	c := in.conn
	in.conn = nil
	in.setLive(nil)
	if c.proc == nil {
		c.close(in.rt.cfg.StopGrace)
		msg := "the server closed the connection"
		in.emitLog(satellitev1.LogLevel_LOG_LEVEL_ERROR, msg)
		in.setStatus(satellitev1.InstanceStatus_INSTANCE_STATUS_OFFLINE, msg+"; reconnecting on the next call")
		return
	}
	uptime := time.Since(c.startedAt)
	reason := "the server exited (" + exitDetail(c.proc) + ")"
	if !c.proc.Exited() {
		reason = "the server closed its standard output"
	}
	c.close(in.rt.cfg.StopGrace)
	in.crashed(c.proc.ExitCode(), reason, uptime)
}

// crashed records a crash of a stdio server and schedules its restart, or gives up.
func (in *instance) crashed(exitCode int, reason string, uptime time.Duration) {
	var n int
	in.crashes, n = in.rt.policy.record(in.crashes, time.Now())
	in.mu.Lock()
	in.crashSeen = n
	in.mu.Unlock()
	in.emitLog(satellitev1.LogLevel_LOG_LEVEL_ERROR, "server crashed: "+reason)
	in.emitLifecycle(satellitev1.LifecycleKind_LIFECYCLE_KIND_CRASHED, exitCode, reason, n)
	in.setStatus(satellitev1.InstanceStatus_INSTANCE_STATUS_CRASHED, reason)
	delay, giveUp := in.rt.policy.next(n, uptime)
	if giveUp {
		msg := fmt.Sprintf("crashed %d times within %v (last: %s); waiting for a restart command", n,
			in.rt.cfg.CrashWindow, reason)
		in.setHold(holdFailed)
		in.emitLifecycle(satellitev1.LifecycleKind_LIFECYCLE_KIND_PERMANENTLY_FAILED, exitCode, msg, n)
		in.setStatus(satellitev1.InstanceStatus_INSTANCE_STATUS_PERMANENTLY_FAILED, msg)
		in.finishAttempt(false)
		in.log().Warn("MCP server permanently failed", slog.Int("crashes", n), slog.String("reason", reason))
		return
	}
	in.setStatus(satellitev1.InstanceStatus_INSTANCE_STATUS_RESTARTING,
		fmt.Sprintf("restarting in %v after crash %d of %d allowed within %v", delay, n, in.rt.cfg.CrashLimit-1,
			in.rt.cfg.CrashWindow))
	in.restartTimer = time.NewTimer(delay)
	in.finishAttempt(true)
}

func (in *instance) cancelRestart() {
	if in.restartTimer != nil {
		in.restartTimer.Stop()
		in.restartTimer = nil
		in.mu.Lock()
		in.busy = false
		in.mu.Unlock()
	}
}

// stopConn ends the current connection, and with it a stdio server's process.
func (in *instance) stopConn() {
	if in.conn == nil {
		return
	}
	c := in.conn
	in.conn = nil
	in.setLive(nil)
	c.close(in.rt.cfg.StopGrace)
}

// shutdown stops the instance because the runtime stops.
func (in *instance) shutdown() {
	in.cancelRestart()
	in.stopConn()
	in.logs.flush()
	if in.currentHold() != holdRemoved && in.configured {
		in.setStatus(satellitev1.InstanceStatus_INSTANCE_STATUS_OFFLINE, "the satellite is shutting down")
	}
	in.finishQueue()
}

// start connects the instance: spawning a stdio server or dialling a remote one, initializing, discovering.
// It returns once the instance is online or the attempt failed.
func (in *instance) start(ctx context.Context, kind startKind, reason string) {
	switch kind {
	case startCrashRestart:
		in.rt.metrics.observeRestart(restartCrash)
	case startRestart:
		in.rt.metrics.observeRestart(reason)
	}
	spec := in.currentSpec()
	in.mu.Lock()
	in.busy = true
	in.mu.Unlock()
	if err := validateSpec(spec); err != nil {
		in.emitLog(satellitev1.LogLevel_LOG_LEVEL_ERROR, "invalid configuration: "+err.Error())
		in.setStatus(satellitev1.InstanceStatus_INSTANCE_STATUS_ERROR, "invalid configuration: "+err.Error())
		in.finishAttempt(false)
		return
	}
	// A build has timeouts of its own, longer than a start's.
	var built *build.Result
	if spec.GetSource() != nil {
		var err error
		if built, err = in.buildSource(ctx, spec); err != nil {
			in.setStatus(satellitev1.InstanceStatus_INSTANCE_STATUS_ERROR, err.Error())
			in.finishAttempt(false)
			return
		}
	}
	opCtx, cancel := context.WithTimeoutCause(ctx, in.rt.cfg.StartTimeout,
		fmt.Errorf("the server did not start within %v", in.rt.cfg.StartTimeout))
	defer cancel()
	defer in.cancelOnUrgent(cancel)()

	in.setStatus(satellitev1.InstanceStatus_INSTANCE_STATUS_CONNECTING, "")
	c, err := in.connect(opCtx, spec, kind, reason, built)
	in.setCurrent(c)
	var cat catalog
	if err == nil {
		in.setStatus(satellitev1.InstanceStatus_INSTANCE_STATUS_DISCOVERING_TOOLS, "")
		cat, err = discover(opCtx, c.session)
	}
	if err == nil {
		if c.proc != nil {
			// From here on the server runs at its own CPU limit, not the driver's start-up allowance.
			c.proc.Started()
		}
		in.conn = c
		in.goOnline(c, cat)
		go c.relistLoop()
		return
	}

	if cause := context.Cause(opCtx); cause != nil && !errors.Is(cause, context.Canceled) {
		err = fmt.Errorf("%w (%v)", cause, err)
	}
	interrupted := errors.Is(context.Cause(opCtx), context.Canceled)
	if c != nil {
		in.setCurrent(nil)
		c.close(in.rt.cfg.StopGrace)
	}
	if interrupted {
		// A command or the shutdown cut the start short; it decides what comes next.
		in.finishAttempt(false)
		return
	}
	if isStdio(spec) {
		code := -1
		msg := "start failed: " + err.Error()
		if c != nil && c.proc.Exited() {
			code = c.proc.ExitCode()
			// The exit is the cause; whether the handshake then read EOF or wrote into a closed pipe is
			// a race, and the server's own stderr is in its logs.
			msg = fmt.Sprintf("exited during start (%s)", exitDetail(c.proc))
		}
		in.crashed(code, msg, 0)
		return
	}
	status, msg := classify(err, c)
	in.emitLog(satellitev1.LogLevel_LOG_LEVEL_ERROR, msg)
	in.setStatus(status, msg)
	in.finishAttempt(false)
}

// cancelOnUrgent makes an urgent command call cancel until the returned function is called; an urgent
// command already waiting calls it at once.
func (in *instance) cancelOnUrgent(cancel context.CancelFunc) (done func()) {
	in.mu.Lock()
	in.interrupt = cancel
	if in.urgent > 0 {
		cancel()
	}
	in.mu.Unlock()
	return func() {
		in.mu.Lock()
		in.interrupt = nil
		in.mu.Unlock()
	}
}

// goOnline publishes a started connection and its catalogue.
func (in *instance) goOnline(c *conn, cat catalog) {
	toolsKey, catChanged := in.publishCatalog(c, cat, true)
	if toolsKey != "" {
		in.emit(&satellitev1.Event{Payload: &satellitev1.Event_ToolsDiscovered{ToolsDiscovered: toolsEvent(cat.tools)}})
	}
	if catChanged {
		in.saveKept()
		in.rt.reportHeldOf(in.currentSpec())
	}
	in.mu.Lock()
	in.live = c
	in.lastUsed = time.Now()
	in.startSeq++
	in.busy = false
	in.mu.Unlock()
	// What the sandbox changed of the template's request, such as a limit lowered to the satellite's
	// ceiling, stands beside the status, where the team looks first.
	var changed string
	if c.proc != nil {
		changed = strings.Join(c.proc.Notes(), "; ")
	}
	in.setStatus(satellitev1.InstanceStatus_INSTANCE_STATUS_ONLINE, changed)
	in.log().Info("MCP server online", slog.Int("tools", len(cat.tools)), slog.Int("resources", len(cat.resources)),
		slog.Int("prompts", len(cat.prompts)))
}

// publishCatalog stores cat if c is still the instance's connection (or becoming it), and returns the key
// of its tools when they differ from the tools last reported, so the caller reports them, and whether the
// catalogue changed, so the caller keeps it. A kept catalogue, published with a nil c before the first
// start, is not reported: the control plane has it from the run that discovered it.
func (in *instance) publishCatalog(c *conn, cat catalog, starting bool) (toolsKey string, changed bool) {
	key, tkey := cat.key()
	in.mu.Lock()
	defer in.mu.Unlock()
	if !starting && in.live != c {
		return "", false
	}
	if key != in.catKey {
		in.cat, in.catKey = cat, key
		in.revision++
		in.changedLocked()
		changed = true
	}
	if c == nil || tkey == in.toolsKey {
		return "", changed
	}
	in.toolsKey = tkey
	return tkey, changed
}

// finishAttempt ends a start attempt that did not bring the instance online; busy says whether another
// attempt is already scheduled.
func (in *instance) finishAttempt(busy bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.startSeq++
	in.busy = busy
	in.changedLocked()
}

func (in *instance) currentSpec() *satellitev1.Instance {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.spec
}

func (in *instance) currentStatus() satellitev1.InstanceStatus {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.status
}

func (in *instance) currentHold() hold {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.hold
}

func (in *instance) setHold(h hold) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.hold != h {
		in.hold = h
		in.changedLocked()
	}
}

// setLive publishes the connection calls may use; nil also clears the current connection.
func (in *instance) setLive(c *conn) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.live = c
	if c == nil {
		in.current = nil
	}
	in.changedLocked()
}

func (in *instance) setCurrent(c *conn) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.current = c
}

// setStatus publishes a status and reports every change of it as an event. The event is emitted before
// the status becomes visible, so whoever sees a status finds its event already sent.
func (in *instance) setStatus(s satellitev1.InstanceStatus, message string) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.status != s {
		in.log().Debug("MCP server status", slog.String("status", StatusName(s)), slog.String("message", message))
		in.emitLocked(&satellitev1.Event{Payload: &satellitev1.Event_StatusChanged{StatusChanged: &satellitev1.StatusChanged{
			Status: s, Message: cut(message, 4096),
		}}})
	}
	in.status, in.message = s, message
	in.changedLocked()
}

// changedLocked wakes Acquire calls waiting on the instance and tells subscribers.
func (in *instance) changedLocked() {
	close(in.changed)
	in.changed = make(chan struct{})
	in.rt.notify(in.spec.GetTeamId(), in.spec.GetUserId())
}

func (in *instance) emitLifecycle(kind satellitev1.LifecycleKind, exitCode int, reason string, crashes int) {
	in.emit(&satellitev1.Event{Payload: &satellitev1.Event_Lifecycle{Lifecycle: &satellitev1.Lifecycle{
		Kind: kind, ExitCode: int32(exitCode), Reason: cut(reason, 4096), CrashCount: uint32(crashes),
	}}})
}

// emitLog reports a server log line. Callers pass lines from the server through logs, the rate limiter.
func (in *instance) emitLog(level satellitev1.LogLevel, message string) {
	in.emit(&satellitev1.Event{Payload: &satellitev1.Event_ServerLog{ServerLog: &satellitev1.ServerLog{
		Level: level, Message: cut(message, 4096),
	}}})
}

func (in *instance) emit(ev *satellitev1.Event) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.emitLocked(ev)
}

// emitLocked emits ev for the instance. Emitters must not block: the batcher only buffers.
func (in *instance) emitLocked(ev *satellitev1.Event) {
	ev.TeamId, ev.InstallationId, ev.InstanceId = in.spec.GetTeamId(), in.spec.GetInstallationId(), in.id
	in.rt.cfg.Events.Emit(ev)
}

// StatusName is the protocol's spelling of a status, such as "requires_reauth", as in command outcomes.
func StatusName(s satellitev1.InstanceStatus) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "INSTANCE_STATUS_"))
}

// workDir is the working directory of a stdio instance's server.
func (in *instance) workDir() string {
	return filepath.Join(in.rt.cfg.WorkDir, dirName(in.id))
}

func isStdio(spec *satellitev1.Instance) bool {
	return spec.GetTransport() == satellitev1.Transport_TRANSPORT_STDIO
}

// validateSpec catches configurations that cannot start, so they end as error rather than crash loops.
func validateSpec(spec *satellitev1.Instance) error {
	switch spec.GetTransport() {
	case satellitev1.Transport_TRANSPORT_STDIO:
		if spec.GetCommand() == "" {
			return errors.New("a stdio server needs a command")
		}
	case satellitev1.Transport_TRANSPORT_HTTP, satellitev1.Transport_TRANSPORT_SSE:
		if _, err := endpointURL(spec); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unsupported transport %v", spec.GetTransport())
	}
	return nil
}
