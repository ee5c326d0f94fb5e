package mcpruntime

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
)

// Lease is a hold on an online instance's session, for one request. The session is shared by every user of
// the instance and carries concurrent calls; do not close it. Release the lease when the request is done:
// until then the instance does not go dormant.
type Lease struct {
	in   *instance
	c    *conn
	once sync.Once
}

// Session returns the instance's session.
func (l *Lease) Session() *mcp.ClientSession { return l.c.session }

// InstanceID returns the instance's id.
func (l *Lease) InstanceID() string { return l.in.id }

// Release ends the lease. Calling it again does nothing.
func (l *Lease) Release() {
	l.once.Do(func() {
		l.in.mu.Lock()
		defer l.in.mu.Unlock()
		l.in.inflight--
		l.in.lastUsed = time.Now()
		l.c.leases.Add(-1)
	})
}

// Acquire returns a lease on instance id's session, starting the instance first when it is not running:
// dormant, crashed and waiting for its restart, or a remote server that could not be reached before. It
// waits for one start attempt at most, then fails with ErrUnavailable and the instance's status, and for
// Config.CallStartWait at most, then fails with ErrStarting; it fails at once with ErrStopped or
// ErrPermanentlyFailed for instances held stopped, and with ErrUnknownInstance for ids that are not (or no
// longer) desired.
func (r *Runtime) Acquire(ctx context.Context, id string) (*Lease, error) {
	if !r.running() {
		return nil, ErrNotRunning
	}
	in, ok := r.lookup(id)
	if !ok {
		return nil, ErrUnknownInstance
	}
	requested := false
	var seq uint64
	var deadline <-chan time.Time
	for {
		in.mu.Lock()
		if in.live != nil && in.status == satellitev1.InstanceStatus_INSTANCE_STATUS_ONLINE {
			c := in.live
			c.leases.Add(1)
			in.inflight++
			in.lastUsed = time.Now()
			in.mu.Unlock()
			return &Lease{in: in, c: c}, nil
		}
		var err error
		switch {
		case in.hold == holdRemoved:
			err = ErrUnknownInstance
		case in.hold == holdKilled:
			err = ErrStopped
		case in.hold == holdFailed:
			err = ErrPermanentlyFailed
		case requested && in.startSeq != seq:
			// The attempt this call waited for is over and did not bring the instance online; a crashed
			// server may be restarting on its own, but this call does not wait for that.
			err = fmt.Errorf("%w: %s: %s", ErrUnavailable, StatusName(in.status), in.message)
		}
		if err != nil {
			in.mu.Unlock()
			return nil, err
		}
		if !requested {
			requested, seq = true, in.startSeq
			select {
			case in.wake <- struct{}{}:
			default:
			}
			t := time.NewTimer(r.cfg.CallStartWait)
			defer t.Stop()
			deadline = t.C
		}
		changed := in.changed
		in.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-in.exited:
			return nil, ErrNotRunning
		case <-deadline:
			in.mu.Lock()
			status := in.status
			in.mu.Unlock()
			return nil, fmt.Errorf("%w: %s after %v", ErrStarting, StatusName(status), r.cfg.CallStartWait)
		case <-changed:
		}
	}
}

// Session returns instance id's session, starting the instance first when it is not running, as Acquire
// does. Calls through the session keep the instance awake while they run, so no lease is needed; the session
// is shared, and ends when the instance stops, after which Session returns the next one.
func (r *Runtime) Session(ctx context.Context, id string) (*mcp.ClientSession, error) {
	lease, err := r.Acquire(ctx, id)
	if err != nil {
		return nil, err
	}
	lease.Release()
	return lease.Session(), nil
}

// dispatchProgress hands a server's progress notification to Config.OnProgress.
func (r *Runtime) dispatchProgress(ctx context.Context, req *mcp.ProgressNotificationClientRequest) {
	if req != nil && req.Params != nil && r.cfg.OnProgress != nil {
		r.cfg.OnProgress(ctx, req)
	}
}

// InstanceInfo is an instance as the runtime sees it. Its slices are shared: do not modify them.
type InstanceInfo struct {
	ID             string
	InstallationID string
	TeamID         string
	TeamSlug       string
	UserID         string
	UserSlug       string
	ServerSlug     string
	ServerName     string
	Transport      satellitev1.Transport
	// RequestLoggingEnabled says whether request logs of the instance carry request and response bodies.
	RequestLoggingEnabled bool
	// ToolPrefix goes before the instance's tool and prompt names at the team endpoint; empty means none.
	ToolPrefix string
	// ToolSelection decides which of the instance's tools its user is offered; nil offers all.
	ToolSelection *satellitev1.ToolSelection

	// Status and Message are the instance's status and why it is so.
	Status  satellitev1.InstanceStatus
	Message string
	// EmergencyStop, when set, says why the instance is out of service: it does not run and offers nothing,
	// and calls of its tools are refused with this reason.
	EmergencyStop string
	// ConnectAccountURL, when set, is where the instance's user connects their account at a server that
	// authorizes each person. The instance does not run; Tools are those known of the server, and calls of
	// them are answered with this link.
	ConnectAccountURL string

	// The catalogue from the last successful discovery. It stays while the instance is dormant, crashed or
	// restarting, so a dormant instance's tools can be listed without waking it.
	ServerInfo        *mcp.Implementation
	Instructions      string
	Capabilities      *mcp.ServerCapabilities
	Tools             []*mcp.Tool
	Resources         []*mcp.Resource
	ResourceTemplates []*mcp.ResourceTemplate
	Prompts           []*mcp.Prompt
	// Revision increases whenever the catalogue changes.
	Revision uint64

	// Pid is the stdio server's process id while it runs (starting included), else 0.
	Pid int
	// StartedAt is when the current process started or the current connection was made; zero when neither
	// exists.
	StartedAt time.Time
	// Requests counts the calls (tools/call, resources/read, prompts/get, ...; not listing) sent over the
	// current process or connection.
	Requests uint64
	// Crashes counts crashes within the crash window, as of the last crash.
	Crashes int
	// LogLinesDropped counts server log lines dropped by the rate limit since the instance was created.
	LogLinesDropped uint64
}

func (in *instance) info() InstanceInfo {
	dropped := in.logs.droppedTotal() // before mu: the limiter emits, and so takes mu, under its own lock
	in.mu.Lock()
	defer in.mu.Unlock()
	spec := in.spec
	info := InstanceInfo{
		ID:                    in.id,
		InstallationID:        spec.GetInstallationId(),
		TeamID:                spec.GetTeamId(),
		TeamSlug:              spec.GetTeamSlug(),
		UserID:                spec.GetUserId(),
		UserSlug:              spec.GetUserSlug(),
		ServerSlug:            spec.GetServerSlug(),
		ServerName:            spec.GetServerName(),
		Transport:             spec.GetTransport(),
		RequestLoggingEnabled: spec.GetRequestLoggingEnabled(),
		ToolPrefix:            spec.GetToolPrefix(),
		ToolSelection:         in.selection,
		Status:                in.status,
		Message:               in.message,
		Tools:                 in.cat.tools,
		Resources:             in.cat.resources,
		ResourceTemplates:     in.cat.templates,
		Prompts:               in.cat.prompts,
		Revision:              in.revision,
		Crashes:               in.crashSeen,
	}
	if in.cat.init != nil {
		info.ServerInfo, info.Instructions, info.Capabilities = in.cat.init.ServerInfo, in.cat.init.Instructions, in.cat.init.Capabilities
	}
	if c := in.current; c != nil {
		info.StartedAt, info.Requests = c.startedAt, c.requests.Load()
		if c.proc != nil && !c.proc.Exited() {
			info.Pid = c.proc.Pid()
		}
	}
	info.LogLinesDropped = dropped
	return info
}

// Available reports whether an endpoint should offer the instance's catalogue: it is online, or a call
// would start it transparently (dormant, starting, restarting after a crash). Instances that are stopped,
// failed, unreachable or refused their credentials are not available.
func (i InstanceInfo) Available() bool {
	switch i.Status {
	case satellitev1.InstanceStatus_INSTANCE_STATUS_ONLINE, satellitev1.InstanceStatus_INSTANCE_STATUS_DORMANT,
		satellitev1.InstanceStatus_INSTANCE_STATUS_PROVISIONING, satellitev1.InstanceStatus_INSTANCE_STATUS_CONNECTING,
		satellitev1.InstanceStatus_INSTANCE_STATUS_DISCOVERING_TOOLS, satellitev1.InstanceStatus_INSTANCE_STATUS_RESTARTING,
		satellitev1.InstanceStatus_INSTANCE_STATUS_CRASHED:
		return true
	}
	return false
}

// Instances returns the instances of teamID, or of every team if it is empty, narrowed to userID's when
// that is not empty, sorted by id.
func (r *Runtime) Instances(teamID, userID string) []InstanceInfo {
	var list []InstanceInfo
	match := func(spec *satellitev1.Instance) bool {
		return (teamID == "" || spec.GetTeamId() == teamID) && (userID == "" || spec.GetUserId() == userID)
	}
	for _, in := range r.all() {
		if match(in.currentSpec()) {
			list = append(list, in.info())
		}
	}
	r.mu.Lock()
	var held []*heldInstance
	for _, h := range r.held {
		if match(h.spec) {
			held = append(held, h)
		}
	}
	r.mu.Unlock()
	for _, h := range held {
		list = append(list, r.heldInfo(h))
	}
	slices.SortFunc(list, func(a, b InstanceInfo) int { return strings.Compare(a.ID, b.ID) })
	return list
}

// Instance returns one instance, held ones included.
func (r *Runtime) Instance(id string) (InstanceInfo, bool) {
	if in, ok := r.lookup(id); ok {
		return in.info(), true
	}
	r.mu.Lock()
	h := r.held[id]
	r.mu.Unlock()
	if h == nil {
		return InstanceInfo{}, false
	}
	return r.heldInfo(h), true
}
