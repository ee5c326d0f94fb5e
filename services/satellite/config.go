package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/orrery/orrery/internal/buildinfo"
	"github.com/orrery/orrery/internal/configref"
	"github.com/orrery/orrery/internal/egress"
	"github.com/orrery/orrery/internal/logging"
	"github.com/orrery/orrery/internal/release"
	"github.com/orrery/orrery/services/satellite/internal/backend"
	"github.com/orrery/orrery/services/satellite/internal/backoff"
	"github.com/orrery/orrery/services/satellite/internal/events"
	"github.com/orrery/orrery/services/satellite/internal/gateway"
	"github.com/orrery/orrery/services/satellite/internal/mcpruntime"
	"github.com/orrery/orrery/services/satellite/internal/pool"
	"github.com/orrery/orrery/services/satellite/internal/sandbox"
	"github.com/orrery/orrery/services/satellite/internal/selfupdate"
)

// Defaults of Config that no package below main owns.
const (
	defaultControlPlaneURL = "http://127.0.0.1:8080"
	defaultListen          = "127.0.0.1:8081"
	defaultMetricsListen   = "127.0.0.1:9464"
	// metricsOff as the metrics listen address serves no metrics.
	metricsOff             = "off"
	defaultShutdownTimeout = 10 * time.Second
	// defaultGCHeapFloorMiB is the heap floor set unless configured: 64 MiB is a few seconds of a busy
	// endpoint's garbage, and little beside the memory of the MCP servers a satellite runs.
	defaultGCHeapFloorMiB = 64
	stateDirName          = "orrery-satellite"
)

// namePattern is what the control plane accepts as a satellite name.
var namePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)

const maxNameLen = 64

// Config is everything the satellite is started with. Zero fields take the defaults WithDefaults documents.
type Config struct {
	// ControlPlaneURL is the control plane's base URL (ORRERY_CONTROL_PLANE_URL). Default
	// http://127.0.0.1:8080.
	ControlPlaneURL string
	// AuthorizationServer is the issuer URL of the control plane's OAuth authorization server, which the
	// protected-resource metadata sends MCP clients to (ORRERY_AUTHORIZATION_SERVER). It differs from
	// ControlPlaneURL when satellites reach the control plane at an internal address. Default
	// ControlPlaneURL.
	AuthorizationServer string
	// RegistrationToken registers the satellite on its first start (ORRERY_REGISTRATION_TOKEN). Ignored once
	// the state directory holds an identity.
	RegistrationToken string
	// Name is the satellite's name at registration (ORRERY_SATELLITE_NAME). Default: the host name,
	// lowercased and reduced to the characters the control plane accepts.
	Name string
	// StateDir holds the identity (ORRERY_STATE_DIR). Default $XDG_STATE_HOME/orrery-satellite, else
	// ~/.local/state/orrery-satellite.
	StateDir string
	// Listen is the HTTP listen address (ORRERY_SATELLITE_LISTEN). Default 127.0.0.1:8081.
	Listen string
	// MetricsListen is where Prometheus metrics are served, at /metrics (ORRERY_METRICS_LISTEN). It is a
	// listener of its own, apart from Listen, because Listen faces MCP clients, often the internet,
	// and the metrics name teams and installations. "off" serves no metrics. Default 127.0.0.1:9464.
	MetricsListen string
	// InternalListen is where the other global satellites of a pool send the requests they forward
	// (ORRERY_INTERNAL_LISTEN). It is a listener of its own so that no load balancer in front of Listen
	// exposes it; requests on it must carry a peer credential. Empty: none, and the satellite forwards
	// no requests to itself from peers.
	InternalListen string
	// InternalURL is where peers reach InternalListen (ORRERY_INTERNAL_URL). Default http://<internal
	// listen address>, taken from the bound socket, with the host name standing in for an unspecified host.
	InternalURL string
	// HomeGrace is how long the sandbox homes of a team's members are kept once the team's instances have
	// left the satellite's configuration, as when placement moves the team to other satellites
	// (ORRERY_HOME_GRACE). Default 1h.
	HomeGrace time.Duration
	// Capacity is the satellite's weight in team placement among the global satellites of its pool
	// (ORRERY_CAPACITY). Default 100.
	Capacity int
	// PublicURL is where MCP clients reach the satellite (ORRERY_SATELLITE_PUBLIC_URL). Default
	// http://<listen address>, taken from the bound socket so port 0 resolves, with the host name standing
	// in for an unspecified host.
	PublicURL string
	// LogFormat is auto, text or json (ORRERY_LOG_FORMAT). Default auto: text on a terminal, else JSON.
	LogFormat string
	// LogLevel is debug, info, warn or error (ORRERY_LOG_LEVEL). Default info.
	LogLevel string
	// Version is the software version reported to the control plane.
	Version string

	// HeartbeatInterval is the time between heartbeats until the control plane asks for another. Default
	// 30 s.
	HeartbeatInterval time.Duration
	// PollWait is how long the control plane may hold a command poll open. Default 25 s.
	PollWait time.Duration
	// PollInterval spaces out polls when the control plane cannot hold them open. Default 5 s.
	PollInterval time.Duration
	// RequestTimeout bounds every request to the control plane; it must exceed PollWait. Default PollWait +
	// 15 s.
	RequestTimeout time.Duration
	// BackoffMin is the first retry delay after a failed call. Default 500 ms.
	BackoffMin time.Duration
	// BackoffMax caps retry delays. Default 30 s.
	BackoffMax time.Duration
	// EventFlushDelay is how long an event waits for company before its batch is sent. Default 3 s.
	EventFlushDelay time.Duration
	// EventBatchSize sends a batch at once when it reaches this many events. Default 20.
	EventBatchSize int
	// EventBufferSize bounds the events held while the control plane is unreachable. Default 10,000.
	EventBufferSize int
	// CommandHistory is how many command results are remembered to answer redeliveries. Default 1024.
	CommandHistory int
	// ReleaseKeys are the Ed25519 public keys whose signatures make a release trusted for self-update
	// (ORRERY_RELEASE_PUBLIC_KEYS, comma-separated base64). Empty: update commands are refused.
	ReleaseKeys release.Keys
	// UpdateTimeout is how long a new version has to send its first heartbeat before the satellite rolls
	// back to the previous binary (ORRERY_UPDATE_TIMEOUT). Default 2 min.
	UpdateTimeout time.Duration
	// UpdateReadyWait is how long a process restarted by an update holds connections in the socket's
	// backlog waiting to be ready (configuration fetched, tools known) before it serves anyway. Default 20 s.
	UpdateReadyWait time.Duration
	// ShutdownTimeout bounds the graceful shutdown: draining HTTP requests and flushing events. Default 10 s.
	// Stopping MCP server processes comes first and takes at most MCPStopGrace.
	ShutdownTimeout time.Duration
	// MCPIdleTimeout is how long a stdio MCP server may go without calls before it is stopped as dormant
	// (ORRERY_MCP_IDLE_TIMEOUT); it starts again on the next call. Negative disables dormancy. Default 180 s.
	MCPIdleTimeout time.Duration
	// MCPSessionIdleTimeout closes an MCP client's Streamable HTTP session after that long without a
	// request (ORRERY_MCP_SESSION_IDLE_TIMEOUT). Default 30 min.
	MCPSessionIdleTimeout time.Duration
	// GCHeapFloorMiB lets the Go heap grow to at least this many MiB before a garbage collection
	// (ORRERY_GC_HEAP_FLOOR_MIB; see package heapfloor): relaying MCP messages makes much short-lived
	// garbage over a small live heap. 0 turns the floor off, leaving GOGC alone. Default 64.
	GCHeapFloorMiB int
	// MCPMaxSessionsPerUser bounds the MCP client sessions (Streamable HTTP sessions and legacy SSE streams)
	// one user holds on the satellite, across the user's teams (ORRERY_MCP_MAX_SESSIONS_PER_USER); one more
	// is refused with 429. Default 100.
	MCPMaxSessionsPerUser int
	// MCPMaxSessionsPerTeam bounds the MCP client sessions of one team's users and OAuth clients together
	// (ORRERY_MCP_MAX_SESSIONS_PER_TEAM); one more is refused with 429. Default 1,000.
	MCPMaxSessionsPerTeam int
	// MCPMaxSessions bounds the MCP client sessions of all users together (ORRERY_MCP_MAX_SESSIONS); one
	// more is refused with 503. Default 10,000.
	MCPMaxSessions int
	// MCPAllowedHosts are the hosts, as host or host:port, MCP clients may address the endpoint by besides
	// the public URL's (ORRERY_MCP_ALLOWED_HOSTS, comma-separated): those a proxy in front of the satellite
	// passes on in Host. When set, requests addressed to any other host are refused (see
	// gateway.Config.AllowedHosts).
	MCPAllowedHosts []string
	// TokenCacheTTL is how long a checked access token is trusted before the control plane is asked again
	// (ORRERY_TOKEN_CACHE_TTL). Revocations arrive at once as commands; this bounds what a satellite cut
	// off from the control plane can miss. At most and by default 60 s.
	TokenCacheTTL time.Duration
	// MCPStopGrace is how long a stopping MCP server may take after SIGTERM before SIGKILL. Default 5 s.
	MCPStopGrace time.Duration
	// MCPMaxConcurrentStarts bounds how many MCP servers start at once from a configuration, such as all
	// of them after the satellite restarted (ORRERY_MCP_MAX_CONCURRENT_STARTS); a call for a server
	// waiting its turn starts it at once. Default one per CPU, at least 2.
	MCPMaxConcurrentStarts int
	// MCPStartJitter is the most each of those starts waits at random before taking its turn
	// (ORRERY_MCP_START_JITTER). Default 500 ms.
	MCPStartJitter time.Duration
	// MCPCallStartWait is how long a call waits for an MCP server that is starting before it is answered
	// with an error asking to try again (ORRERY_MCP_CALL_START_WAIT). Default 30 s.
	MCPCallStartWait time.Duration
	// Sandbox chooses how stdio MCP servers are isolated (ORRERY_SANDBOX): bwrap, direct (no isolation), or
	// auto for bwrap where it works on this machine and direct otherwise. Default auto. A global satellite
	// refuses to run servers without isolation unless Dev is set.
	Sandbox string
	// SandboxReadOnly are host directories every sandboxed server sees read-only at the same path, such as
	// where server packages are installed (ORRERY_SANDBOX_READ_ONLY, separated by colons). The system's
	// directories are always there.
	SandboxReadOnly []string
	// SandboxEgressAllow are networks sandboxed and remote servers may reach although the default egress
	// policy forbids them, such as a private network a team satellite's team owns
	// (ORRERY_SANDBOX_EGRESS_ALLOW, comma-separated networks and addresses).
	SandboxEgressAllow []netip.Prefix
	// SandboxEgressDeny are networks no server may reach on top of the default policy's
	// (ORRERY_SANDBOX_EGRESS_DENY).
	SandboxEgressDeny []netip.Prefix
	// SandboxCeilings cap every sandboxed server's limits; a template asking for more gets the ceiling
	// (ORRERY_SANDBOX_CEILINGS, such as memory=2GiB,processes=512,cpu=2,cpu_time=1h,open_files=8192,
	// file_size=1GiB). Keys left out take sandbox.DefaultCeilings.
	SandboxCeilings sandbox.Limits
	// SandboxHomeQuota bounds each sandbox home's disk use: every home becomes a file system of that size
	// (ORRERY_SANDBOX_HOME_QUOTA, such as 1GiB). It needs a satellite running as root. Default: unbounded.
	SandboxHomeQuota int64
	// Dev marks a development setup (ORRERY_DEV=true), where a global satellite may run servers without
	// isolation.
	Dev bool

	// listener, when set, is served instead of listening on Listen, so tests need not pick a free port.
	listener net.Listener
	// metricsListener, when set, is served instead of listening on MetricsListen.
	metricsListener net.Listener
	// inherited is what the process before an update passed down.
	inherited selfupdate.Inherited
	// internalListener, when set, is served instead of listening on InternalListen.
	internalListener net.Listener
}

// WithDefaults returns c with every zero field set to its default. Defaults owned by the packages that use
// them (intervals, batch sizes) are filled in here too, so the Config a satellite runs with is explicit.
func (c Config) WithDefaults() Config {
	if c.ControlPlaneURL == "" {
		c.ControlPlaneURL = defaultControlPlaneURL
	}
	if c.AuthorizationServer == "" {
		c.AuthorizationServer = c.ControlPlaneURL
	}
	if c.Name == "" {
		host, _ := os.Hostname()
		c.Name = nameFromHost(host)
	}
	if c.Listen == "" {
		c.Listen = defaultListen
	}
	if c.MetricsListen == "" {
		c.MetricsListen = defaultMetricsListen
	}
	if c.LogFormat == "" {
		c.LogFormat = "auto"
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	if c.Version == "" {
		c.Version = "dev"
	}
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = backend.DefaultHeartbeatInterval
	}
	if c.PollWait <= 0 {
		c.PollWait = backend.DefaultPollWait
	}
	if c.PollInterval <= 0 {
		c.PollInterval = backend.DefaultPollInterval
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = c.PollWait + backend.DefaultRequestTimeoutMargin
	}
	if c.BackoffMin <= 0 {
		c.BackoffMin = backoff.DefaultMin
	}
	if c.BackoffMax <= 0 {
		c.BackoffMax = backoff.DefaultMax
	}
	if c.EventFlushDelay <= 0 {
		c.EventFlushDelay = events.DefaultFlushDelay
	}
	if c.EventBatchSize <= 0 {
		c.EventBatchSize = events.DefaultMaxBatch
	}
	if c.EventBufferSize <= 0 {
		c.EventBufferSize = events.DefaultBufferSize
	}
	if c.CommandHistory <= 0 {
		c.CommandHistory = backend.DefaultCommandHistory
	}
	if c.UpdateReadyWait <= 0 {
		c.UpdateReadyWait = 20 * time.Second
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = defaultShutdownTimeout
	}
	if c.MCPIdleTimeout == 0 {
		c.MCPIdleTimeout = mcpruntime.DefaultIdleTimeout
	}
	if c.GCHeapFloorMiB < 0 {
		c.GCHeapFloorMiB = 0
	}
	if c.MCPSessionIdleTimeout <= 0 {
		c.MCPSessionIdleTimeout = gateway.DefaultSessionIdleTimeout
	}
	if c.MCPMaxSessionsPerUser == 0 {
		c.MCPMaxSessionsPerUser = gateway.DefaultMaxSessionsPerUser
	}
	if c.MCPMaxSessionsPerTeam == 0 {
		c.MCPMaxSessionsPerTeam = gateway.DefaultMaxSessionsPerTeam
	}
	if c.MCPMaxSessions == 0 {
		c.MCPMaxSessions = gateway.DefaultMaxSessions
	}
	if c.TokenCacheTTL <= 0 {
		c.TokenCacheTTL = gateway.DefaultCacheTTL
	}
	if c.MCPStopGrace <= 0 {
		c.MCPStopGrace = mcpruntime.DefaultStopGrace
	}
	if c.HomeGrace <= 0 {
		c.HomeGrace = pool.DefaultHomeGrace
	}
	if c.Capacity <= 0 {
		c.Capacity = pool.DefaultCapacity
	}
	if c.MCPMaxConcurrentStarts <= 0 {
		c.MCPMaxConcurrentStarts = mcpruntime.DefaultMaxConcurrentStarts
	}
	if c.MCPStartJitter <= 0 {
		c.MCPStartJitter = mcpruntime.DefaultStartJitter
	}
	if c.MCPCallStartWait <= 0 {
		c.MCPCallStartWait = mcpruntime.DefaultCallStartWait
	}
	if c.Sandbox == "" {
		c.Sandbox = string(sandbox.ModeAuto)
	}
	return c
}

func (c Config) validate() error {
	var errs []error
	if err := checkHTTPURL(c.ControlPlaneURL); err != nil {
		errs = append(errs, fmt.Errorf("control plane URL: %w", err))
	}
	if err := checkHTTPURL(c.AuthorizationServer); err != nil {
		errs = append(errs, fmt.Errorf("authorization server: %w (set ORRERY_AUTHORIZATION_SERVER)", err))
	}
	if c.Capacity > 1_000_000 {
		errs = append(errs, fmt.Errorf("capacity %d exceeds 1000000 (set ORRERY_CAPACITY)", c.Capacity))
	}
	if c.InternalListen != "" {
		if _, _, err := net.SplitHostPort(c.InternalListen); err != nil {
			errs = append(errs, fmt.Errorf("internal listen address %q: %w (set ORRERY_INTERNAL_LISTEN to host:port)", c.InternalListen, err))
		}
	}
	if c.InternalURL != "" {
		if err := checkHTTPURL(c.InternalURL); err != nil {
			errs = append(errs, fmt.Errorf("internal URL: %w (set ORRERY_INTERNAL_URL)", err))
		}
	}
	if c.PublicURL != "" {
		if err := checkHTTPURL(c.PublicURL); err != nil {
			errs = append(errs, fmt.Errorf("public URL: %w (set ORRERY_SATELLITE_PUBLIC_URL)", err))
		}
	}
	if len(c.Name) > maxNameLen || !namePattern.MatchString(c.Name) {
		errs = append(errs, fmt.Errorf("satellite name %q must match %s and be at most %d characters (set ORRERY_SATELLITE_NAME)",
			c.Name, namePattern, maxNameLen))
	}
	if c.StateDir == "" {
		errs = append(errs, errors.New("no state directory: set ORRERY_STATE_DIR"))
	}
	if c.MetricsListen != metricsOff {
		if _, _, err := net.SplitHostPort(c.MetricsListen); err != nil {
			errs = append(errs, fmt.Errorf("metrics listen address %q: %w (set ORRERY_METRICS_LISTEN to host:port or %q)", c.MetricsListen, err, metricsOff))
		}
	}
	if len(c.Version) > 64 {
		errs = append(errs, fmt.Errorf("version %q is longer than 64 characters", c.Version))
	}
	if _, err := sandbox.ParseMode(c.Sandbox); err != nil {
		errs = append(errs, fmt.Errorf("%w (set ORRERY_SANDBOX)", err))
	}
	for _, p := range c.SandboxReadOnly {
		if !filepath.IsAbs(p) {
			errs = append(errs, fmt.Errorf("sandbox read-only path %q is not absolute (set ORRERY_SANDBOX_READ_ONLY)", p))
		}
	}
	if c.MCPMaxSessionsPerUser < 0 || c.MCPMaxSessionsPerTeam < 0 || c.MCPMaxSessions < 0 {
		errs = append(errs, errors.New("session limits must be positive (set ORRERY_MCP_MAX_SESSIONS_PER_USER, ORRERY_MCP_MAX_SESSIONS_PER_TEAM, ORRERY_MCP_MAX_SESSIONS)"))
	}
	if c.TokenCacheTTL > gateway.DefaultCacheTTL {
		errs = append(errs, fmt.Errorf("token cache TTL %v exceeds %v (set ORRERY_TOKEN_CACHE_TTL)", c.TokenCacheTTL, gateway.DefaultCacheTTL))
	}
	if c.RequestTimeout <= c.PollWait {
		errs = append(errs, fmt.Errorf("request timeout %v must exceed the poll wait %v", c.RequestTimeout, c.PollWait))
	}
	return errors.Join(errs...)
}

func checkHTTPURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an http:// or https:// URL with a host", raw)
	}
	return nil
}

// rawFlags are the flag values that loadConfig parses further after the flag set has read them.
type rawFlags struct {
	readOnly, egressAllow, egressDeny, ceilings, homeQuota, allowedHosts, releaseKeys string
}

// secretEnv are the variables read from the environment alone: a flag would show them to every user of ps.
var secretEnv = []configref.Env{
	{Name: "ORRERY_REGISTRATION_TOKEN", Usage: "registration token from the control plane's admin API, used on the first start only; " +
		"the identity it buys is kept in the state directory"},
	{Name: "ORRERY_REGISTRATION_TOKEN_FILE", Usage: "file holding the registration token, read when ORRERY_REGISTRATION_TOKEN is empty " +
		"(such as a mounted Kubernetes Secret)"},
}

// maxRegistrationTokenFile bounds the registration token file: a token is a few hundred bytes.
const maxRegistrationTokenFile = 4096

func readRegistrationToken(path string) (string, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		// A satellite past its first start keeps its identity and needs no token; the control plane
		// refuses a registration without one.
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("ORRERY_REGISTRATION_TOKEN_FILE: %w", err)
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, maxRegistrationTokenFile+1))
	if err != nil {
		return "", fmt.Errorf("ORRERY_REGISTRATION_TOKEN_FILE: %w", err)
	}
	if len(raw) > maxRegistrationTokenFile {
		return "", fmt.Errorf("ORRERY_REGISTRATION_TOKEN_FILE: %s is larger than a registration token", path)
	}
	return strings.TrimSpace(string(raw)), nil
}

// defineFlags defines the satellite's flags on fs. Their defaults are what cfg and raw hold, read from the
// environment; zero values mean the defaults WithDefaults documents.
func defineFlags(fs *flag.FlagSet, cfg *Config, raw *rawFlags) {
	fs.StringVar(&cfg.ControlPlaneURL, "control-plane-url", cfg.ControlPlaneURL, "control plane base URL (ORRERY_CONTROL_PLANE_URL; default "+defaultControlPlaneURL+")")
	fs.StringVar(&cfg.AuthorizationServer, "authorization-server", cfg.AuthorizationServer, "issuer URL of the OAuth authorization server MCP clients are sent to (ORRERY_AUTHORIZATION_SERVER; default: the control plane URL)")
	fs.StringVar(&cfg.Name, "name", cfg.Name, "satellite name (ORRERY_SATELLITE_NAME; default: from the host name)")
	fs.StringVar(&cfg.StateDir, "state-dir", cfg.StateDir, "state directory holding the identity (ORRERY_STATE_DIR; default $XDG_STATE_HOME/"+stateDirName+")")
	fs.StringVar(&cfg.Listen, "listen", cfg.Listen, "HTTP listen address (ORRERY_SATELLITE_LISTEN; default "+defaultListen+")")
	fs.StringVar(&cfg.InternalListen, "internal-listen", cfg.InternalListen, "listen address for requests other global satellites of the pool forward, never behind the public load balancer (ORRERY_INTERNAL_LISTEN; default none)")
	fs.StringVar(&cfg.InternalURL, "internal-url", cfg.InternalURL, "URL where the other satellites of the pool reach -internal-listen (ORRERY_INTERNAL_URL; default http://<internal-listen>)")
	fs.DurationVar(&cfg.HomeGrace, "home-grace", cfg.HomeGrace, "keep the sandbox homes of a team's members this long after the team's instances leave this satellite (ORRERY_HOME_GRACE; default 1h)")
	fs.IntVar(&cfg.Capacity, "capacity", cfg.Capacity, "weight of this satellite in team placement among the global satellites of its pool (ORRERY_CAPACITY; default 100)")
	fs.StringVar(&cfg.PublicURL, "public-url", cfg.PublicURL, "URL where MCP clients reach this satellite (ORRERY_SATELLITE_PUBLIC_URL; default http://<listen>)")
	fs.StringVar(&cfg.MetricsListen, "metrics-listen", cfg.MetricsListen, "listen address of Prometheus metrics at /metrics, apart from the MCP listener; off: none (ORRERY_METRICS_LISTEN; default "+defaultMetricsListen+")")
	fs.StringVar(&cfg.LogFormat, "log-format", cfg.LogFormat, "auto, text or json (ORRERY_LOG_FORMAT; default auto)")
	fs.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "debug, info, warn or error (ORRERY_LOG_LEVEL; default info)")
	fs.DurationVar(&cfg.MCPIdleTimeout, "mcp-idle-timeout", cfg.MCPIdleTimeout, "stop stdio MCP servers after this long without calls; negative: never (ORRERY_MCP_IDLE_TIMEOUT; default 3m)")
	fs.DurationVar(&cfg.MCPSessionIdleTimeout, "mcp-session-idle-timeout", cfg.MCPSessionIdleTimeout, "close MCP client sessions after this long without a request (ORRERY_MCP_SESSION_IDLE_TIMEOUT; default 30m)")
	fs.IntVar(&cfg.GCHeapFloorMiB, "gc-heap-floor-mib", cfg.GCHeapFloorMiB, "let the Go heap grow to at least this many MiB before a garbage collection; 0: off, GOGC alone decides (ORRERY_GC_HEAP_FLOOR_MIB; default 64)")
	fs.IntVar(&cfg.MCPMaxSessionsPerUser, "mcp-max-sessions-per-user", cfg.MCPMaxSessionsPerUser, "MCP client sessions one user may hold on this satellite, across teams; more are refused with 429 (ORRERY_MCP_MAX_SESSIONS_PER_USER; default 100)")
	fs.IntVar(&cfg.MCPMaxSessionsPerTeam, "mcp-max-sessions-per-team", cfg.MCPMaxSessionsPerTeam, "MCP client sessions one team's users and OAuth clients may hold on this satellite together; more are refused with 429 (ORRERY_MCP_MAX_SESSIONS_PER_TEAM; default 1000)")
	fs.IntVar(&cfg.MCPMaxSessions, "mcp-max-sessions", cfg.MCPMaxSessions, "MCP client sessions all users together may hold on this satellite; more are refused with 503 (ORRERY_MCP_MAX_SESSIONS; default 10000)")
	fs.IntVar(&cfg.MCPMaxConcurrentStarts, "mcp-max-concurrent-starts", cfg.MCPMaxConcurrentStarts, "MCP servers started at once from a configuration, such as after a restart; a call starts a waiting one at once (ORRERY_MCP_MAX_CONCURRENT_STARTS; default one per CPU, at least 2)")
	fs.DurationVar(&cfg.MCPStartJitter, "mcp-start-jitter", cfg.MCPStartJitter, "most each of those starts waits at random before its turn (ORRERY_MCP_START_JITTER; default 500ms)")
	fs.DurationVar(&cfg.MCPCallStartWait, "mcp-call-start-wait", cfg.MCPCallStartWait, "how long a call waits for a starting MCP server before it is told to try again (ORRERY_MCP_CALL_START_WAIT; default 30s)")
	fs.DurationVar(&cfg.TokenCacheTTL, "token-cache-ttl", cfg.TokenCacheTTL, "trust a checked access token this long before asking the control plane again, at most 1m (ORRERY_TOKEN_CACHE_TTL; default 1m)")
	fs.StringVar(&cfg.Sandbox, "sandbox", cfg.Sandbox, "isolation of stdio MCP servers: auto, bwrap or direct (ORRERY_SANDBOX; default auto: bwrap where it works)")
	fs.StringVar(&raw.allowedHosts, "mcp-allowed-hosts", raw.allowedHosts, "comma-separated hosts, as host or host:port, MCP clients may address the endpoint by besides the public URL's, such as those a proxy in front of the satellite passes on in Host; their origins are allowed too, and requests addressed to any other host are refused (ORRERY_MCP_ALLOWED_HOSTS; default: Host is not checked)")
	fs.StringVar(&raw.readOnly, "sandbox-read-only", raw.readOnly, "colon-separated host directories sandboxed servers see read-only, such as where server packages are installed (ORRERY_SANDBOX_READ_ONLY)")
	fs.StringVar(&raw.egressAllow, "sandbox-egress-allow", raw.egressAllow, "comma-separated networks MCP servers may reach although private, link-local or otherwise forbidden by default (ORRERY_SANDBOX_EGRESS_ALLOW)")
	fs.StringVar(&raw.egressDeny, "sandbox-egress-deny", raw.egressDeny, "comma-separated networks MCP servers may not reach, on top of the default (ORRERY_SANDBOX_EGRESS_DENY)")
	fs.StringVar(&raw.ceilings, "sandbox-ceilings", raw.ceilings, "most a sandboxed server's limits may be, such as memory=2GiB,processes=512,cpu=2,cpu_time=1h,open_files=8192,file_size=1GiB (ORRERY_SANDBOX_CEILINGS)")
	fs.StringVar(&raw.homeQuota, "sandbox-home-quota", raw.homeQuota, "disk space of each sandbox home, such as 1GiB, as a loop-mounted file system; needs root (ORRERY_SANDBOX_HOME_QUOTA; default unbounded)")
	fs.StringVar(&raw.releaseKeys, "release-public-keys", raw.releaseKeys, "comma-separated base64 Ed25519 public keys whose signed releases the satellite installs on an update command; several allow key rotation (ORRERY_RELEASE_PUBLIC_KEYS; default: none, updates are refused)")
	fs.DurationVar(&cfg.UpdateTimeout, "update-timeout", cfg.UpdateTimeout, "how long a new version has to heartbeat after an update before the previous binary is restored (ORRERY_UPDATE_TIMEOUT; default 2m)")
	fs.BoolVar(&cfg.Dev, "dev", cfg.Dev, "development setup: a global satellite may run MCP servers without isolation (ORRERY_DEV=true)")
}

// loadConfig reads the environment, then flags, which win. The registration token has no flag: a flag
// would show it to every user of ps.
func loadConfig(args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	cfg := Config{
		ControlPlaneURL:     getenv("ORRERY_CONTROL_PLANE_URL"),
		AuthorizationServer: getenv("ORRERY_AUTHORIZATION_SERVER"),
		RegistrationToken:   getenv("ORRERY_REGISTRATION_TOKEN"),
		Name:                getenv("ORRERY_SATELLITE_NAME"),
		StateDir:            getenv("ORRERY_STATE_DIR"),
		Listen:              getenv("ORRERY_SATELLITE_LISTEN"),
		MetricsListen:       getenv("ORRERY_METRICS_LISTEN"),
		PublicURL:           getenv("ORRERY_SATELLITE_PUBLIC_URL"),
		InternalListen:      getenv("ORRERY_INTERNAL_LISTEN"),
		InternalURL:         getenv("ORRERY_INTERNAL_URL"),
		LogFormat:           getenv("ORRERY_LOG_FORMAT"),
		LogLevel:            getenv("ORRERY_LOG_LEVEL"),
		Version:             buildinfo.Version(),
		Sandbox:             getenv("ORRERY_SANDBOX"),
		Dev:                 getenv("ORRERY_DEV") == "true",
	}
	if cfg.RegistrationToken == "" {
		if path := getenv("ORRERY_REGISTRATION_TOKEN_FILE"); path != "" {
			token, err := readRegistrationToken(path)
			if err != nil {
				return Config{}, err
			}
			cfg.RegistrationToken = token
		}
	}
	raw := rawFlags{
		readOnly:     getenv("ORRERY_SANDBOX_READ_ONLY"),
		egressAllow:  getenv("ORRERY_SANDBOX_EGRESS_ALLOW"),
		egressDeny:   getenv("ORRERY_SANDBOX_EGRESS_DENY"),
		ceilings:     getenv("ORRERY_SANDBOX_CEILINGS"),
		homeQuota:    getenv("ORRERY_SANDBOX_HOME_QUOTA"),
		allowedHosts: getenv("ORRERY_MCP_ALLOWED_HOSTS"),
		releaseKeys:  getenv("ORRERY_RELEASE_PUBLIC_KEYS"),
	}
	for name, dst := range map[string]*time.Duration{
		"ORRERY_MCP_IDLE_TIMEOUT":         &cfg.MCPIdleTimeout,
		"ORRERY_MCP_SESSION_IDLE_TIMEOUT": &cfg.MCPSessionIdleTimeout,
		"ORRERY_TOKEN_CACHE_TTL":          &cfg.TokenCacheTTL,
		"ORRERY_MCP_START_JITTER":         &cfg.MCPStartJitter,
		"ORRERY_MCP_CALL_START_WAIT":      &cfg.MCPCallStartWait,
		"ORRERY_UPDATE_TIMEOUT":           &cfg.UpdateTimeout,
		"ORRERY_HOME_GRACE":               &cfg.HomeGrace,
	} {
		if v := getenv(name); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				return Config{}, fmt.Errorf("%s: %w", name, err)
			}
			*dst = d
		}
	}

	for name, dst := range map[string]*int{
		"ORRERY_MCP_MAX_SESSIONS_PER_USER": &cfg.MCPMaxSessionsPerUser,
		"ORRERY_MCP_MAX_SESSIONS_PER_TEAM": &cfg.MCPMaxSessionsPerTeam,
		"ORRERY_MCP_MAX_SESSIONS":          &cfg.MCPMaxSessions,
		"ORRERY_MCP_MAX_CONCURRENT_STARTS": &cfg.MCPMaxConcurrentStarts,
		"ORRERY_CAPACITY":                  &cfg.Capacity,
	} {
		if v := getenv(name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				return Config{}, fmt.Errorf("%s: %q is not a positive number", name, v)
			}
			*dst = n
		}
	}

	cfg.GCHeapFloorMiB = defaultGCHeapFloorMiB
	if v := getenv("ORRERY_GC_HEAP_FLOOR_MIB"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return Config{}, fmt.Errorf("ORRERY_GC_HEAP_FLOOR_MIB: %q is not a number of MiB", v)
		}
		cfg.GCHeapFloorMiB = n
	}

	fs := flag.NewFlagSet("satellite", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: satellite [flags]\n\n"+
			"Runs an Orrery satellite: registers with the control plane, then takes its commands and configuration.\n"+
			"Every flag has an environment variable; the registration token is read only from\n"+
			"ORRERY_REGISTRATION_TOKEN, or the file ORRERY_REGISTRATION_TOKEN_FILE names.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	defineFlags(fs, &cfg, &raw)
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	for h := range strings.SplitSeq(raw.allowedHosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			cfg.MCPAllowedHosts = append(cfg.MCPAllowedHosts, h)
		}
	}
	for p := range strings.SplitSeq(raw.readOnly, ":") {
		if p != "" {
			cfg.SandboxReadOnly = append(cfg.SandboxReadOnly, p)
		}
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	var err error
	if cfg.ReleaseKeys, err = release.ParseKeys(raw.releaseKeys); err != nil {
		return Config{}, fmt.Errorf("ORRERY_RELEASE_PUBLIC_KEYS: %w", err)
	}
	if cfg.SandboxEgressAllow, err = egress.ParsePrefixes(raw.egressAllow); err != nil {
		return Config{}, fmt.Errorf("ORRERY_SANDBOX_EGRESS_ALLOW: %w", err)
	}
	if cfg.SandboxEgressDeny, err = egress.ParsePrefixes(raw.egressDeny); err != nil {
		return Config{}, fmt.Errorf("ORRERY_SANDBOX_EGRESS_DENY: %w", err)
	}
	if cfg.SandboxCeilings, err = sandbox.ParseLimits(raw.ceilings); err != nil {
		return Config{}, fmt.Errorf("ORRERY_SANDBOX_CEILINGS: %w", err)
	}
	if raw.homeQuota != "" {
		q, err := sandbox.ParseLimits("file_size=" + raw.homeQuota)
		if err != nil || q.FileSizeBytes < 16<<20 {
			return Config{}, fmt.Errorf("ORRERY_SANDBOX_HOME_QUOTA: %q is not a size of at least 16MiB", raw.homeQuota)
		}
		cfg.SandboxHomeQuota = q.FileSizeBytes
	}

	if cfg.StateDir == "" {
		dir, err := defaultStateDir(getenv)
		if err != nil {
			return Config{}, err
		}
		cfg.StateDir = dir
	}
	cfg = cfg.WithDefaults()
	if _, err := logging.New(io.Discard, cfg.LogFormat, cfg.LogLevel); err != nil {
		return Config{}, err
	}
	return cfg, cfg.validate()
}

// defaultStateDir follows the XDG base directory spec, which ignores a relative XDG_STATE_HOME.
func defaultStateDir(getenv func(string) string) (string, error) {
	if xdg := getenv("XDG_STATE_HOME"); filepath.IsAbs(xdg) {
		return filepath.Join(xdg, stateDirName), nil
	}
	home := getenv("HOME")
	if home == "" {
		var err error
		if home, err = os.UserHomeDir(); err != nil {
			return "", errors.New("cannot find a home directory for the default state directory: set ORRERY_STATE_DIR")
		}
	}
	return filepath.Join(home, ".local", "state", stateDirName), nil
}

// nameFromHost turns a host name into a valid satellite name: lowercased, with characters the control
// plane does not accept replaced by '-'.
func nameFromHost(host string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(host) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	name := strings.TrimLeft(b.String(), "._-")
	if len(name) > maxNameLen {
		name = name[:maxNameLen]
	}
	if name == "" {
		return "satellite"
	}
	return name
}

// publicURLFor is the URL of a listen address; an unspecified host (":8081", "0.0.0.0:8081") is not
// reachable as written, so the host name stands in for it.
func publicURLFor(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "http://" + listen
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		if h, err := os.Hostname(); err == nil && h != "" {
			host = h
		} else {
			host = "localhost"
		}
	}
	return "http://" + net.JoinHostPort(host, port)
}
