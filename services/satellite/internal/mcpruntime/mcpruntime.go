// Package mcpruntime runs the satellite's MCP server instances: stdio servers as sandboxed subprocesses,
// remote servers over Streamable HTTP or legacy SSE. It keeps them in line with the desired view, discovers
// their tools, resources and prompts, restarts crashed processes, lets idle ones sleep, and reports every
// step as events.
//
// # Lifecycle of an instance
//
// Run reconciles by content hash whenever the desired view changes: new instances start, instances whose
// hash changed restart, removed ones stop, the rest are left alone. A start goes provisioning (first start
// only) → connecting → discovering_tools → online, each step a status event. A stdio server that exits
// unexpectedly is crashed, then restarting, and starts again at once if it had run for StableUptime, else
// after the next of RestartDelays; the CrashLimit-th crash within CrashWindow makes it permanently_failed
// until a restart command or a new configuration. A stdio server unused for IdleTimeout is stopped and
// dormant, and starts again on the next Acquire. A remote server that cannot be reached is error (or
// requires_reauth when it refuses the credentials) and is tried again on the next Acquire.
//
// # Serving calls
//
// The team MCP endpoint calls Session (or Acquire, for a lease held across calls) for a connected session of
// an instance, starting or waking it as needed; every user of an instance shares its one session, which
// carries concurrent calls, and a call in flight keeps the instance from going dormant. Instances lists a
// team's or user's instances with their status and discovered catalogue (kept while an instance is dormant;
// InstanceInfo.Available says whether to offer it), and Subscribe tells when either changes:
//
//	changes, stop := rt.Subscribe(teamID, userID)
//	defer stop()
//	for range changes {
//		for _, in := range rt.Instances(teamID, userID) {
//			// in.Status, in.Tools, in.Revision ...
//		}
//	}
//
//	lease, err := rt.Acquire(ctx, instanceID)
//	if err != nil { ... }
//	defer lease.Release()
//	res, err := lease.Session().ReadResource(ctx, &mcp.ReadResourceParams{URI: uri})
//
// Servers' progress notifications reach the endpoint through Config.OnProgress, which routes them by the
// token it put in the request.
//
// # Commands
//
// Spawn, Kill, Restart, Recover and CheckCredentials carry out the control plane's typed commands that act
// on instances, within the command's team. They name instances with a satellitev1.InstanceSelector: one
// instance, or an installation's instances (optionally one user's), so that a command never acts on every
// instance. Each returns one satellitev1.InstanceOutcome per selected instance once the command was carried
// out; an instance the command does not apply to (a credential check of a stdio server) is skipped, saying
// why. One instance's outcome never depends on another's. ApplyConfiguration and ForgetMember carry out
// configure commands.
package mcpruntime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/services/satellite/internal/build"
	"github.com/orrery/orrery/services/satellite/internal/desired"
	"github.com/orrery/orrery/services/satellite/internal/sandbox"
)

// Defaults of Config.
const (
	// DefaultStartTimeout covers spawning, initializing and discovering; generous because a first npx run
	// downloads its package. Sandboxed servers start under the driver's start-up CPU allowance
	// (sandbox.DefaultStartCPU), not their running limit, so the timeout holds for them too.
	DefaultStartTimeout = 60 * time.Second
	// DefaultProtocolVersion is the newest version of the session era. Servers written for that era ask
	// their client with requests of their own (sampling, elicitation, roots) while serving a call, which
	// the 2026-07-28 era forbids; servers written for 2026-07-28 fall back to such requests for a client of
	// the session era. So with it, both kinds can reach the endpoint's clients.
	DefaultProtocolVersion = "2025-11-25"
	// DefaultStopGrace is how long a stopping server may take after SIGTERM before it is killed.
	DefaultStopGrace = 5 * time.Second
	// DefaultIdleTimeout is how long a stdio server may go unused before it goes dormant.
	DefaultIdleTimeout = 180 * time.Second
	// DefaultStableUptime is the uptime after which a crash is restarted without delay.
	DefaultStableUptime = 60 * time.Second
	// DefaultCrashLimit is the number of crashes within the crash window that makes a server permanently
	// failed.
	DefaultCrashLimit = 3
	// DefaultCrashWindow is the window crashes are counted in.
	DefaultCrashWindow = 5 * time.Minute
	// DefaultCredentialCheckTimeout bounds a credential validation, connection included.
	DefaultCredentialCheckTimeout = 15 * time.Second
	// DefaultLogLinesPerSecond is each instance's budget of server log lines.
	DefaultLogLinesPerSecond = 20
	// DefaultLogLineBytes is the length a server log line is cut to.
	DefaultLogLineBytes = 1024
	// DefaultStartJitter spreads the first starts of a configuration, such as every instance at once
	// after the satellite restarted.
	DefaultStartJitter = 500 * time.Millisecond
	// DefaultCallStartWait is how long a call waits for an instance that is starting before it is told to
	// try again.
	DefaultCallStartWait = 30 * time.Second
)

// DefaultMaxConcurrentStarts is how many instances start at once from a new configuration, such as after
// the satellite restarted: one per CPU, at least two. A call for an instance still waiting its turn
// starts it at once.
var DefaultMaxConcurrentStarts = max(2, runtime.NumCPU())

// DefaultRestartDelays are the delays before the first, second and later restarts of a server that crashed
// within DefaultStableUptime of starting.
var DefaultRestartDelays = []time.Duration{time.Second, 5 * time.Second, 15 * time.Second}

// Emitter takes the runtime's events. *events.Batcher is one.
type Emitter interface {
	Emit(*satellitev1.Event)
}

// Config configures a Runtime. Zero fields take their defaults.
type Config struct {
	// Desired is the configuration to run. Required.
	Desired *desired.View
	// Events receives status, log, lifecycle, tool discovery and request log events. Default: discarded.
	Events Emitter
	// Driver starts stdio servers. Default sandbox.Direct{}.
	Driver sandbox.Driver
	// WorkDir holds one working directory per stdio instance. Default $TMPDIR/orrery-instances.
	WorkDir string
	// HTTPClient is the base client for remote servers; the runtime wraps its transport to add each
	// instance's headers and query parameters. It must not set a Timeout, which would cut off event
	// streams. Default: a client with http.DefaultTransport. A satellite gives it an egress.Policy's
	// Transport, so that remote servers are dialed under the rules of sandboxed ones.
	HTTPClient *http.Client
	// ClientInfo identifies the satellite to servers. Default name "orrery-satellite", version "dev".
	ClientInfo *mcp.Implementation
	// OnProgress receives the servers' progress notifications; req.Session tells which instance's session
	// sent it. Nil drops them.
	OnProgress func(ctx context.Context, req *mcp.ProgressNotificationClientRequest)
	// ClientMiddleware, when set, wraps the handling of everything servers send the runtime's client
	// sessions: their own requests (sampling/createMessage, elicitation/create, roots/list) and their
	// notifications. An endpoint uses it to pass them on to its clients.
	ClientMiddleware mcp.Middleware
	// ClientCapabilities are declared to servers. Nil means the SDK's default, roots, answered with an
	// empty list.
	ClientCapabilities *mcp.ClientCapabilities
	// ProtocolVersion is the protocol version the runtime asks servers for; they may answer with an older
	// one. Default DefaultProtocolVersion.
	ProtocolVersion string

	// StartTimeout bounds one start: spawning or connecting, initializing and discovering. Default
	// DefaultStartTimeout (60 s).
	StartTimeout time.Duration
	// StopGrace is how long a stdio server may take to exit after SIGTERM before SIGKILL. Default
	// DefaultStopGrace (5 s).
	StopGrace time.Duration
	// IdleTimeout is how long a stdio server may go without calls before it is stopped and dormant; negative
	// disables dormancy. Default DefaultIdleTimeout (180 s).
	IdleTimeout time.Duration
	// RestartDelays are the delays before restarting a server after its first, second, ... crash within
	// CrashWindow; the last one repeats. Default DefaultRestartDelays (1 s, 5 s, 15 s).
	RestartDelays []time.Duration
	// StableUptime is the uptime after which a crashed server restarts without delay. Default
	// DefaultStableUptime (60 s).
	StableUptime time.Duration
	// CrashLimit is the number of crashes within CrashWindow that makes a server permanently failed. Default
	// DefaultCrashLimit (3).
	CrashLimit int
	// CrashWindow is the window crashes are counted in. Default DefaultCrashWindow (5 min).
	CrashWindow time.Duration
	// CredentialCheckTimeout bounds a credential_validation health check. Default
	// DefaultCredentialCheckTimeout (15 s).
	CredentialCheckTimeout time.Duration
	// LogLinesPerSecond is the number of server log lines (stderr and log notifications) each instance may
	// emit per second; the excess is counted and reported. Default DefaultLogLinesPerSecond (20).
	LogLinesPerSecond int
	// LogLineBytes is the length server log lines are cut to, at most 4096. Default DefaultLogLineBytes
	// (1 KiB).
	LogLineBytes int

	// CatalogDir keeps each instance's last discovered catalogue, so that after a restart its tools are
	// listed while it starts again. Default: none kept.
	CatalogDir string
	// MaxConcurrentStarts bounds the first starts of instances that run at once; the rest wait their
	// turn, unless a call needs them. Default DefaultMaxConcurrentStarts.
	MaxConcurrentStarts int
	// StartJitter is the most a first start waits, at random, before taking its turn; negative means no
	// wait. Default DefaultStartJitter (500 ms).
	StartJitter time.Duration
	// CallStartWait bounds how long Acquire (and so a call) waits for an instance to come online; after
	// it the call fails with ErrStarting. Default DefaultCallStartWait (30 s).
	CallStartWait time.Duration

	// Builds builds stdio servers whose configuration names a source archive; *build.Builder is one.
	// Default: none, and such instances are in error.
	Builds Builder
	// DrainTimeout is how long a server replaced by a redeploy keeps running for the calls it still
	// carries. Default DefaultDrainTimeout (30 s).
	DrainTimeout time.Duration
}

// DefaultDrainTimeout is the default of Config.DrainTimeout.
const DefaultDrainTimeout = 30 * time.Second

// Builder builds a server from its source archive.
type Builder interface {
	Build(ctx context.Context, req build.Request) (*build.Result, error)
}

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.ProtocolVersion == "" {
		c.ProtocolVersion = DefaultProtocolVersion
	}
	if c.Events == nil {
		c.Events = discard{}
	}
	if c.Driver == nil {
		c.Driver = sandbox.Direct{}
	}
	if c.WorkDir == "" {
		c.WorkDir = filepath.Join(os.TempDir(), "orrery-instances")
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Transport: http.DefaultTransport}
	}
	if c.ClientInfo == nil {
		c.ClientInfo = &mcp.Implementation{Name: "orrery-satellite", Version: "dev"}
	}
	if c.StartTimeout <= 0 {
		c.StartTimeout = DefaultStartTimeout
	}
	if c.StopGrace <= 0 {
		c.StopGrace = DefaultStopGrace
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.RestartDelays == nil {
		c.RestartDelays = DefaultRestartDelays
	}
	if c.StableUptime <= 0 {
		c.StableUptime = DefaultStableUptime
	}
	if c.CrashLimit <= 0 {
		c.CrashLimit = DefaultCrashLimit
	}
	if c.CrashWindow <= 0 {
		c.CrashWindow = DefaultCrashWindow
	}
	if c.CredentialCheckTimeout <= 0 {
		c.CredentialCheckTimeout = DefaultCredentialCheckTimeout
	}
	if c.LogLinesPerSecond <= 0 {
		c.LogLinesPerSecond = DefaultLogLinesPerSecond
	}
	if c.LogLineBytes <= 0 {
		c.LogLineBytes = DefaultLogLineBytes
	}
	c.LogLineBytes = min(c.LogLineBytes, 4096)
	if c.MaxConcurrentStarts <= 0 {
		c.MaxConcurrentStarts = DefaultMaxConcurrentStarts
	}
	if c.StartJitter == 0 {
		c.StartJitter = DefaultStartJitter
	}
	if c.CallStartWait <= 0 {
		c.CallStartWait = DefaultCallStartWait
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	return c
}

func (c Config) validate() error {
	switch {
	case c.Desired == nil:
		return errors.New("no desired view")
	case c.HTTPClient.Timeout > 0:
		return errors.New("the HTTP client for remote servers must not have a timeout: it would cut off event streams")
	case slices.ContainsFunc(c.RestartDelays, func(d time.Duration) bool { return d < 0 }):
		return errors.New("negative restart delay")
	}
	return nil
}

type discard struct{}

func (discard) Emit(*satellitev1.Event) {}

// Errors returned by Acquire and CallTool, also wrapped in command outcomes.
var (
	// ErrUnknownInstance means no instance has the id. Endpoints should answer as if the tool did not exist,
	// without naming the instance: ids carry other tenants' slugs.
	ErrUnknownInstance = errors.New("no such MCP server instance")
	// ErrStopped means a kill command stopped the instance; a spawn or restart command starts it again.
	ErrStopped = errors.New("MCP server instance was stopped by an operator")
	// ErrPermanentlyFailed means the instance crashed too often; a restart command starts it again.
	ErrPermanentlyFailed = errors.New("MCP server instance crashed too often and waits for a restart")
	// ErrUnavailable means the instance could not be started or reached; the error says why.
	ErrUnavailable = errors.New("MCP server instance is unavailable")
	// ErrNotRunning means the runtime has stopped: Run returned.
	ErrNotRunning = errors.New("MCP runtime is not running")
	// ErrStarting means the instance did not come online within Config.CallStartWait; it goes on
	// starting, and a later call may find it online.
	ErrStarting = errors.New("MCP server instance is still starting")
)

// Runtime runs MCP server instances. Its methods are safe for concurrent use.
type Runtime struct {
	logger *slog.Logger
	cfg    Config
	policy crashPolicy

	ctx    context.Context // lives from New until Run returns; instances run under it
	cancel context.CancelFunc
	state  atomic.Int32  // stateNew, stateRunning, stateStopped
	swept  chan struct{} // closed once Run cleaned up after earlier runs; no instance starts before

	reconcileMu sync.Mutex
	applied     map[string]string // content hash last handed to each instance, guarded by reconcileMu

	mu        sync.Mutex
	instances map[string]*instance
	// held are the desired instances the runtime does not run, by id: listed with why.
	held map[string]*heldInstance
	// heldReportMu serializes the reports of held instances' statuses.
	heldReportMu sync.Mutex
	wg           sync.WaitGroup // instance goroutines

	subsMu sync.Mutex
	subs   map[*subscriber]struct{}

	metrics    *runtimeMetrics
	startSlots chan struct{} // one per first start running; see coldStartSlot
	reconciled atomic.Uint64 // version of the desired view last reconciled
	warm       atomic.Bool   // Ready found every instance listable once
}

const (
	stateNew int32 = iota
	stateRunning
	stateStopped
)

// New returns a Runtime; Run starts it. A nil logger discards logs.
func New(logger *slog.Logger, cfg Config) (*Runtime, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("mcp runtime config: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Runtime{
		logger:     logger,
		cfg:        cfg,
		policy:     cfg.crashPolicy(),
		ctx:        ctx,
		cancel:     cancel,
		swept:      make(chan struct{}),
		applied:    make(map[string]string),
		instances:  make(map[string]*instance),
		subs:       make(map[*subscriber]struct{}),
		metrics:    newRuntimeMetrics(),
		startSlots: make(chan struct{}, cfg.MaxConcurrentStarts),
	}, nil
}

// sweeper is a driver that can find processes a crashed satellite left behind.
type sweeper interface {
	Sweep() (int, error)
}

// Run reconciles the instances with the desired view, now and after every change, until ctx is done. It then
// stops every instance, waiting for their processes to exit, and returns nil. A Runtime runs once.
func (r *Runtime) Run(ctx context.Context) error {
	if !r.state.CompareAndSwap(stateNew, stateRunning) {
		return errors.New("mcp runtime already ran")
	}
	defer r.shutdown()
	if s, ok := r.cfg.Driver.(sweeper); ok {
		if n, err := s.Sweep(); err != nil {
			r.logger.WarnContext(ctx, "cannot look for server processes left behind by an earlier run", slog.Any("error", err))
		} else if n > 0 {
			r.logger.WarnContext(ctx, "killed server processes left behind by an earlier run", slog.Int("processes", n))
		}
	}
	close(r.swept)
	changes, unsubscribe := r.cfg.Desired.Subscribe()
	defer unsubscribe()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-changes:
			if _, err := r.Reconcile(ctx); err != nil && ctx.Err() == nil {
				r.logger.ErrorContext(ctx, "reconcile failed", slog.Any("error", err))
			}
		}
	}
}

// shutdown stops every instance and waits for them.
func (r *Runtime) shutdown() {
	r.reconcileMu.Lock()
	defer r.reconcileMu.Unlock()
	r.state.Store(stateStopped)
	r.cancel()
	r.wg.Wait()
	r.logger.Info("MCP runtime stopped")
}

// running reports whether the runtime takes requests: from New until Run returns. Before Run starts, instances
// are simply not there yet.
func (r *Runtime) running() bool { return r.state.Load() != stateStopped }

// lookup returns the instance with id.
func (r *Runtime) lookup(id string) (*instance, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	in, ok := r.instances[id]
	return in, ok
}

// all returns the instances, sorted by id.
func (r *Runtime) all() []*instance {
	r.mu.Lock()
	defer r.mu.Unlock()
	list := make([]*instance, 0, len(r.instances))
	for _, in := range r.instances {
		list = append(list, in)
	}
	slices.SortFunc(list, func(a, b *instance) int { return strings.Compare(a.id, b.id) })
	return list
}

// subscriber is one Subscribe call.
type subscriber struct {
	teamID, userID string
	ch             chan struct{}
}

// Subscribe returns a channel that receives a value whenever an instance of teamID changes its status or
// its catalogue (tools, resources, prompts), is added or is removed, and a function that ends the
// subscription. A non-empty userID narrows it to that user's instances; an empty teamID watches every team.
// Values coalesce: one receive may stand for several changes, so read Instances afresh after each.
func (r *Runtime) Subscribe(teamID, userID string) (<-chan struct{}, func()) {
	s := &subscriber{teamID: teamID, userID: userID, ch: make(chan struct{}, 1)}
	r.subsMu.Lock()
	r.subs[s] = struct{}{}
	r.subsMu.Unlock()
	var once sync.Once
	return s.ch, func() {
		once.Do(func() {
			r.subsMu.Lock()
			delete(r.subs, s)
			r.subsMu.Unlock()
		})
	}
}

// notify tells the subscribers that watch an instance of teamID and userID that it changed.
func (r *Runtime) notify(teamID, userID string) {
	r.subsMu.Lock()
	defer r.subsMu.Unlock()
	for s := range r.subs {
		if (s.teamID == "" || s.teamID == teamID) && (s.userID == "" || s.userID == userID) {
			select {
			case s.ch <- struct{}{}:
			default:
			}
		}
	}
}
