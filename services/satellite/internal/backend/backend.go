// Package backend is the satellite's communicator with the control plane. It only dials out: it registers
// once, then keeps three loops running against SatelliteService: heartbeats, a command long-poll, and
// configuration sync into the desired view.
//
// Outages are expected and survived: every call that fails for a transient reason is retried with jittered
// backoff, forever, with the stored identity; the satellite never registers again on its own. The one
// failure that stops Run is the control plane refusing the API key, since only an operator can fix that.
package backend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/gen/orrery/satellite/v1/satellitev1connect"
	"github.com/orrery/orrery/services/satellite/internal/backoff"
	"github.com/orrery/orrery/services/satellite/internal/desired"
	"github.com/orrery/orrery/services/satellite/internal/identity"
	"github.com/orrery/orrery/services/satellite/internal/selfupdate"
	"github.com/orrery/orrery/services/satellite/internal/sysmetrics"
)

// Defaults of Config.
const (
	// DefaultHeartbeatInterval is the protocol's heartbeat period; the control plane counts a satellite
	// offline after three missed ones.
	DefaultHeartbeatInterval = 30 * time.Second
	// DefaultPollWait matches the control plane's cap on a held poll.
	DefaultPollWait = 25 * time.Second
	// DefaultPollInterval spaces out polls to a control plane that answers without holding them.
	DefaultPollInterval = 5 * time.Second
	// DefaultReplicaSwitchWait is the most a satellite waits before polling again when the replica that
	// answered is shutting down: long enough to spread a fleet out, far shorter than a poll delay.
	DefaultReplicaSwitchWait = 200 * time.Millisecond
	// DefaultRequestTimeoutMargin is how much longer than PollWait an HTTP request may take by default, so
	// a held poll is never cut off by the client while the control plane is answering it.
	DefaultRequestTimeoutMargin = 15 * time.Second
	// DefaultCommandHistory outlasts a command's redeliveries: at most three attempts within its expiry.
	DefaultCommandHistory = 1024
	// DefaultMaxResponseBytes bounds the control plane's answers other than configurations: the largest,
	// a PollCommands response of 100 commands, is a few hundred KiB.
	DefaultMaxResponseBytes = 16 << 20
	// DefaultMaxConfigurationBytes bounds a GetConfiguration response: every instance the satellite runs,
	// with its merged configuration. A typical instance takes a few KiB, so this is room for tens of
	// thousands.
	DefaultMaxConfigurationBytes = 256 << 20
)

// ErrKeyRefused means the control plane no longer accepts the satellite's API key, because an administrator
// revoked or deleted the satellite. Retrying cannot help: the satellite needs a new identity.
var ErrKeyRefused = errors.New("the control plane refused the satellite's API key")

// ErrRegistrationRefused means the control plane turned down Register for a reason retrying cannot fix,
// such as an invalid, expired or already used registration token.
var ErrRegistrationRefused = errors.New("the control plane refused to register the satellite")

// MetricsSource measures the machine for heartbeats. *sysmetrics.Sampler is one.
type MetricsSource interface {
	Sample() (sysmetrics.Metrics, error)
}

// Reconciler applies fetched configurations to the running instances; configure and redeploy commands
// reach it after the configuration sync. *mcpruntime.Runtime is one.
type Reconciler interface {
	// ApplyConfiguration returns once the instances match the configuration last fetched.
	ApplyConfiguration(ctx context.Context) error
	// ForgetMember deletes what the satellite keeps of a former member of a team, and reports whether it
	// deleted anything.
	ForgetMember(teamID, userID string) (bool, error)
}

// InstanceController acts on the instances of a team (every team when teamID is empty) and says what it left
// each selected instance in. *mcpruntime.Runtime is one.
type InstanceController interface {
	Spawn(ctx context.Context, teamID string, sel *satellitev1.InstanceSelector) ([]*satellitev1.InstanceOutcome, error)
	Kill(ctx context.Context, teamID string, sel *satellitev1.InstanceSelector) ([]*satellitev1.InstanceOutcome, error)
	Restart(ctx context.Context, teamID string, sel *satellitev1.InstanceSelector, reason satellitev1.RestartReason) ([]*satellitev1.InstanceOutcome, error)
	Recover(ctx context.Context, teamID, installationID string) ([]*satellitev1.InstanceOutcome, error)
	CheckCredentials(ctx context.Context, teamID, installationID string) ([]*satellitev1.InstanceOutcome, error)
}

// TokenRevoker refuses access tokens from the moment they are revoked. *gateway.Gateway is one.
type TokenRevoker interface {
	// RevokeTokens refuses the tokens with these SHA-256 hashes (hex) and returns how many it had cached.
	RevokeTokens(hashes []string) (int, error)
}

// PolicyApplier enforces the policies of each configuration fetched. *gateway.Gateway is one.
type PolicyApplier interface {
	// SetPolicies replaces the policies applied to tool calls.
	SetPolicies([]*satellitev1.Policy)
}

// Updater replaces the satellite's binary. *selfupdate.Updater is one.
type Updater interface {
	// Update carries out an update command: its output, selfupdate.ErrRestarting when the satellite
	// restarts on the new version (the result is then reported after the restart), or why it failed.
	Update(ctx context.Context, req selfupdate.Request) (map[string]any, error)
	// Heartbeat hears of every heartbeat the control plane accepted, to confirm an update.
	Heartbeat(ctx context.Context)
}

// Handlers own the actions of commands. A nil handler fails the commands it would carry out, saying the
// satellite has no MCP runtime.
type Handlers struct {
	Reconciler Reconciler
	Instances  InstanceController
	Tokens     TokenRevoker
	// Policies receives the policies of every configuration fetched, before its instances are applied.
	// Nil: policies are not enforced.
	Policies PolicyApplier
	// Updater carries out update commands. Nil: they fail, saying self-update is off.
	Updater Updater
}

// ProcessSource describes the MCP server instances for heartbeats. *mcpruntime.Runtime is one.
type ProcessSource interface {
	Processes() []*satellitev1.ProcessReport
}

// PoolMember is what the communicator tells the control plane of a satellite's pool membership, and
// where it hands the pool of each configuration.
type PoolMember interface {
	// Capacity is the satellite's weight in team placement.
	Capacity() uint32
	// InternalURL is where the other satellites of the pool reach this one; empty when unknown.
	InternalURL() string
	// OpenSessions counts the MCP sessions open at the satellite's endpoint.
	OpenSessions() int
	// SetPool receives the pool of each configuration applied; nil for none.
	SetPool(*satellitev1.Pool)
}

// Config configures a Communicator.
type Config struct {
	// URL is the control plane's base URL. Required.
	URL string
	// RegistrationToken is used only when the state directory holds no identity yet.
	RegistrationToken string
	// Name is the satellite's name at registration, matching ^[a-z0-9][a-z0-9._-]*$. Required.
	Name string
	// Version is the satellite's software version, sent at registration and with heartbeats.
	Version string
	// PublicURL is where MCP clients reach this satellite; the first heartbeat after start carries it.
	PublicURL string

	// Identity stores the identity between runs. Required.
	Identity *identity.Store
	// Desired receives every configuration fetched. Required.
	Desired *desired.View
	// Metrics measures the machine. Default: a sysmetrics.Sampler for the identity's state directory.
	Metrics MetricsSource
	// HTTPClient carries every call. Default: a client whose timeout is RequestTimeout.
	HTTPClient *http.Client
	// Commands carries out the actions of commands. It may be filled in after New, before Run, for
	// handlers built after the communicator. Nil: commands other than configure fail, saying the satellite
	// has no MCP runtime.
	Commands *Handlers
	// Processes describes the instances in heartbeats. Nil: heartbeats count desired instances only.
	Processes ProcessSource
	// Isolation is how the satellite isolates its stdio servers, reported with every heartbeat.
	Isolation satellitev1.Isolation
	// Prometheus, when set, receives counters of heartbeat and command poll outcomes. Nil counts none.
	Prometheus prometheus.Registerer
	// CheckIdentity, when set, sees the identity once it is known, stored or just registered, before any
	// loop runs; an error stops Run with it. It lets a satellite refuse to serve as a kind of satellite its
	// configuration is unfit for.
	CheckIdentity func(identity.Identity) error
	// Pool reports the satellite's place in a pool of global satellites with every heartbeat and hears
	// the pool of every configuration fetched. Nil: the satellite is in no pool.
	Pool PoolMember

	// HeartbeatInterval is the time between heartbeats until the control plane says otherwise in
	// HeartbeatResponse.next_heartbeat. Default DefaultHeartbeatInterval (30 s).
	HeartbeatInterval time.Duration
	// PollWait is how long the control plane may hold a PollCommands call open. Default DefaultPollWait
	// (25 s).
	PollWait time.Duration
	// PollInterval guards against a control plane that cannot long-poll: an empty answer that came back
	// sooner than min(PollInterval, PollWait/2) was not held, and the next poll then waits for the
	// response's next_poll, or PollInterval when it suggests none. Default DefaultPollInterval (5 s).
	PollInterval time.Duration
	// ReplicaSwitchWait is the most the satellite waits, at random, before polling again when the replica
	// that answered says it is shutting down. Default DefaultReplicaSwitchWait (200 ms).
	ReplicaSwitchWait time.Duration
	// RequestTimeout bounds each HTTP request of the default HTTPClient and must exceed PollWait. Default
	// PollWait + DefaultRequestTimeoutMargin (40 s).
	RequestTimeout time.Duration
	// Backoff spaces out retries after failures. Default 500 ms doubling to 30 s, with jitter.
	Backoff backoff.Policy
	// CommandHistory is how many recent command ids, with their results, are remembered so a redelivered
	// command is reported again rather than run again. Default DefaultCommandHistory (1024).
	CommandHistory int
	// MaxResponseBytes bounds each response from the control plane after decompression, but for
	// configurations. Default DefaultMaxResponseBytes (16 MiB).
	MaxResponseBytes int
	// MaxConfigurationBytes bounds a configuration from the control plane after decompression. A larger
	// one is refused, and the satellite keeps the configuration it has. Default
	// DefaultMaxConfigurationBytes (256 MiB).
	MaxConfigurationBytes int
}

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if c.PollWait <= 0 {
		c.PollWait = DefaultPollWait
	}
	if c.PollInterval <= 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.ReplicaSwitchWait <= 0 {
		c.ReplicaSwitchWait = DefaultReplicaSwitchWait
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = c.PollWait + DefaultRequestTimeoutMargin
	}
	c.Backoff = c.Backoff.WithDefaults()
	if c.CommandHistory <= 0 {
		c.CommandHistory = DefaultCommandHistory
	}
	if c.MaxResponseBytes <= 0 {
		c.MaxResponseBytes = DefaultMaxResponseBytes
	}
	if c.MaxConfigurationBytes <= 0 {
		c.MaxConfigurationBytes = DefaultMaxConfigurationBytes
	}
	if c.Metrics == nil && c.Identity != nil {
		c.Metrics = sysmetrics.New(c.Identity.Dir())
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: c.RequestTimeout}
	}
	return c
}

func (c Config) validate() error {
	u, err := url.Parse(c.URL)
	switch {
	case c.URL == "":
		return errors.New("control plane URL is empty")
	case err != nil:
		return fmt.Errorf("control plane URL: %w", err)
	case u.Scheme != "http" && u.Scheme != "https" || u.Host == "":
		return fmt.Errorf("control plane URL %q: want http:// or https:// and a host", c.URL)
	case c.Name == "":
		return errors.New("satellite name is empty")
	case c.Identity == nil:
		return errors.New("no identity store")
	case c.Desired == nil:
		return errors.New("no desired view")
	case c.RequestTimeout <= c.PollWait:
		return fmt.Errorf("request timeout %v must exceed the poll wait %v, or every held poll would time out",
			c.RequestTimeout, c.PollWait)
	}
	return nil
}

// Communicator talks to the control plane on the satellite's behalf.
type Communicator struct {
	logger *slog.Logger
	cfg    Config
	client satellitev1connect.SatelliteServiceClient
	// configClient fetches configurations, which may be far larger than any other answer.
	configClient satellitev1connect.SatelliteServiceClient

	metrics *metrics
	started atomic.Bool
	ident   atomic.Pointer[identity.Identity]
	history *lru.Cache[string, outcome]
	resync  chan struct{}
	beats   beats

	syncMu sync.Mutex // serializes configuration syncs, so etag and the desired view move together
	etag   string
}

// New returns a Communicator; Run starts it. A nil logger discards logs.
func New(logger *slog.Logger, cfg Config) (*Communicator, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.WithDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("backend config: %w", err)
	}
	history, err := lru.New[string, outcome](cfg.CommandHistory)
	if err != nil {
		return nil, fmt.Errorf("command history: %w", err)
	}
	m, err := newMetrics(cfg.Prometheus)
	if err != nil {
		return nil, fmt.Errorf("register metrics: %w", err)
	}
	c := &Communicator{
		logger:  logger,
		cfg:     cfg,
		history: history,
		resync:  make(chan struct{}, 1),
		metrics: m,
	}
	c.client = satellitev1connect.NewSatelliteServiceClient(cfg.HTTPClient, cfg.URL,
		connect.WithInterceptors(c.authInterceptor()), connect.WithReadMaxBytes(cfg.MaxResponseBytes))
	c.configClient = satellitev1connect.NewSatelliteServiceClient(cfg.HTTPClient, cfg.URL,
		connect.WithInterceptors(c.authInterceptor()), connect.WithReadMaxBytes(cfg.MaxConfigurationBytes))
	return c, nil
}

// Client is the satellite's authenticated SatelliteService client, for other parts of the satellite that
// call the control plane, such as the event batcher. Calls made before registration completes fail with
// CodeUnavailable, so callers that retry transient errors simply wait for it.
func (c *Communicator) Client() satellitev1connect.SatelliteServiceClient { return c.client }

// SourceArchive downloads an archive a team uploaded for a server built from source. It reads with the
// configuration's larger limit: an upload may be 16 MiB, MaxResponseBytes' default exactly.
func (c *Communicator) SourceArchive(ctx context.Context, teamID, sha256 string) ([]byte, error) {
	resp, err := c.configClient.GetSourceArchive(ctx, connect.NewRequest(&satellitev1.GetSourceArchiveRequest{
		TeamId: teamID, Sha256: sha256,
	}))
	if err != nil {
		return nil, err
	}
	return resp.Msg.GetContent(), nil
}

// Identity returns the satellite's identity once it is known.
func (c *Communicator) Identity() (identity.Identity, bool) {
	id := c.ident.Load()
	if id == nil {
		return identity.Identity{}, false
	}
	return *id, true
}

// Ready returns nil once the satellite is registered and has its first configuration, and otherwise an
// error saying what it still waits for.
func (c *Communicator) Ready() error {
	if c.ident.Load() == nil {
		return errors.New("not registered with the control plane yet")
	}
	// The view's version turns non-zero with the first configuration applied, empty or not.
	if c.cfg.Desired.Version() == 0 {
		return errors.New("configuration not fetched from the control plane yet")
	}
	return nil
}

// Run registers the satellite if it has no identity yet, then runs the heartbeat, command and
// configuration loops until ctx is done (returning nil) or one of them fails for good: the API key is
// refused (ErrKeyRefused) or registration is impossible.
func (c *Communicator) Run(ctx context.Context) error {
	if !c.started.CompareAndSwap(false, true) {
		return errors.New("communicator is already running")
	}
	id, err := c.establish(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	if c.cfg.CheckIdentity != nil {
		if err := c.cfg.CheckIdentity(id); err != nil {
			return err
		}
	}
	c.ident.Store(&id)
	c.logger.InfoContext(ctx, "satellite identity ready", slog.Any("identity", id))

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return c.heartbeatLoop(gctx) })
	g.Go(func() error { return c.pollLoop(gctx) })
	g.Go(func() error { return c.configLoop(gctx) })
	return g.Wait()
}

// authInterceptor sends the API key with every call but Register, which carries its registration token.
func (c *Communicator) authInterceptor() connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			if req.Spec().Procedure != satellitev1connect.SatelliteServiceRegisterProcedure {
				id := c.ident.Load()
				if id == nil {
					return nil, connect.NewError(connect.CodeUnavailable, errors.New("satellite is not registered yet"))
				}
				req.Header().Set("Authorization", "Bearer "+id.APIKey)
			}
			return next(ctx, req)
		}
	}
}

// keyRefused turns an Unauthenticated answer to an API-key call into the error Run returns, telling the
// operator what to do; other errors pass through.
func (c *Communicator) keyRefused(err error) error {
	if connect.CodeOf(err) != connect.CodeUnauthenticated {
		return err
	}
	return fmt.Errorf("%w (%s): the satellite was revoked or deleted; remove the state directory %s and start it "+
		"again with a new ORRERY_REGISTRATION_TOKEN to register anew", ErrKeyRefused, message(err), c.cfg.Identity.Dir())
}

// message is an error's text without Connect's code prefix, for errors shown to operators.
func message(err error) string {
	if ce := new(connect.Error); errors.As(err, &ce) {
		return ce.Message()
	}
	return err.Error()
}

// transient reports whether a failed call may succeed if repeated: the control plane or the network is
// down or overloaded. Errors from the satellite itself and refusals of the request's content are not.
func transient(err error) bool {
	ce := new(connect.Error)
	if !errors.As(err, &ce) {
		return false
	}
	switch ce.Code() {
	case connect.CodeUnavailable, connect.CodeDeadlineExceeded, connect.CodeResourceExhausted,
		connect.CodeAborted, connect.CodeInternal, connect.CodeUnknown, connect.CodeCanceled:
		return true
	}
	return false
}

// retry calls f until it succeeds, ctx ends, or it fails in a way retrying cannot fix; transient failures
// are retried with backoff, forever.
func (c *Communicator) retry(ctx context.Context, what string, f func() error) error {
	bo := backoff.New(c.cfg.Backoff)
	for {
		err := f()
		if err == nil {
			if bo.Failures() > 0 {
				c.logger.InfoContext(ctx, what+" succeeded after failures", slog.Int("failures", bo.Failures()))
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !transient(err) {
			return err
		}
		delay := bo.Next()
		c.logger.WarnContext(ctx, what+" failed; retrying", slog.Any("error", err),
			slog.Int("attempt", bo.Failures()), slog.Duration("retry_in", delay))
		if err := backoff.Sleep(ctx, delay); err != nil {
			return err
		}
	}
}
