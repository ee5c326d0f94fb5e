package main

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/orrery/orrery/internal/configref"
	"github.com/orrery/orrery/services/controlplane/internal/catalogapi"
	"github.com/orrery/orrery/services/controlplane/internal/oauth"
	"github.com/orrery/orrery/services/controlplane/internal/regtoken"
	"github.com/orrery/orrery/services/controlplane/internal/secrets"
)

// config is the control plane's configuration, from flags and ORRERY_* environment variables.
type config struct {
	Listen             string
	Issuer             string
	DatabaseURL        string
	DataDir            string
	Dev                bool
	DevSatellite       string
	DevSatelliteListen string
	AdminToken         string
	// ConsolePassword, in development mode, is the password of dev@localhost, a global admin made for
	// signing in to the console.
	ConsolePassword string
	SigningKey      string
	SecretKeys      string
	LogFormat       string
	LogLevel        string
	ShutdownTimeout time.Duration
	DrainPeriod     time.Duration
	// SSOResyncInterval is how often groups of people signed in through a provider are read again.
	SSOResyncInterval time.Duration
	TrustedProxies    []netip.Prefix
	// TemplateCommands are the commands team-private stdio templates may run.
	TemplateCommands catalogapi.CommandPolicy
	// OAuth holds the lifetimes of the authorization server's tokens; zero fields take oauth's defaults.
	OAuth oauth.Config
	// WebhooksAllowPrivate lets alert webhooks reach loopback, private and link-local addresses.
	WebhooksAllowPrivate bool
	// RemoteAccountsAllowPrivate lets the control plane reach remote MCP servers and their authorization
	// servers at loopback, private and link-local addresses when members connect their accounts.
	RemoteAccountsAllowPrivate bool
	// PoolURL is the public URL the global satellites share behind a load balancer; empty when each is
	// reached on its own URL.
	PoolURL string
	// PlacementGrace is how long a global satellite may go unheard before its teams are placed elsewhere.
	PlacementGrace time.Duration
	// Command is a maintenance command and its arguments, given after the flags; empty means serve.
	Command []string
}

// rawFlags are the flag values that loadConfig parses further after the flag set has read them.
type rawFlags struct {
	drainPeriod      string
	ssoResync        string
	trustedProxies   string
	templateCommands string
	accessTokenTTL   string
	refreshIdle      string
	grantMaxAge      string
	placementGrace   string
}

// secretEnv are the variables read from the environment alone: a flag would show them to every user of ps.
var secretEnv = []configref.Env{
	{Name: "ORRERY_ADMIN_TOKEN", Usage: "API token of the first global admin, admin@localhost; at least 16 characters. Required outside development mode"},
	{Name: "ORRERY_TOKEN_SIGNING_KEY", Usage: "key that signs registration tokens (HMAC-SHA256). Required outside development mode"},
	{Name: "ORRERY_SECRET_KEYS", Usage: "keys that seal installation secrets (AES-256-GCM), comma-separated id:base64-of-32-bytes; " +
		"the first seals, all open, so keys rotate by adding one in front. Required outside development mode"},
}

// defineFlags defines the control plane's flags on fs, each defaulting to its environment variable.
func defineFlags(fs *flag.FlagSet, c *config, raw *rawFlags, getenv func(string) string) {
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	fs.StringVar(&c.Listen, "listen", env("ORRERY_LISTEN", "127.0.0.1:8080"), "address to serve on (ORRERY_LISTEN)")
	fs.StringVar(&c.Issuer, "issuer", getenv("ORRERY_ISSUER"),
		"public URL of the control plane, the OAuth issuer MCP clients are sent to; default http:// and the listen address (ORRERY_ISSUER)")
	fs.StringVar(&c.DatabaseURL, "database-url", getenv("ORRERY_DATABASE_URL"),
		"PostgreSQL URL, required outside development mode; with -dev, empty runs a private PostgreSQL under the data directory (ORRERY_DATABASE_URL)")
	fs.StringVar(&c.DataDir, "data-dir", env("ORRERY_DATA_DIR", ".orrery"),
		"directory for the private PostgreSQL and development secrets (ORRERY_DATA_DIR)")
	fs.BoolVar(&c.Dev, "dev", getenv("ORRERY_DEV") == "true",
		"development mode: generate and keep the admin token and keys in the data directory (ORRERY_DEV=true)")
	fs.StringVar(&c.DevSatellite, "dev-satellite", getenv("ORRERY_DEV_SATELLITE"),
		"in development mode, path of a satellite binary to run and register beside the control plane (ORRERY_DEV_SATELLITE)")
	fs.StringVar(&c.DevSatelliteListen, "dev-satellite-listen", env("ORRERY_DEV_SATELLITE_LISTEN", "127.0.0.1:8081"),
		"address the development satellite serves on (ORRERY_DEV_SATELLITE_LISTEN)")
	fs.StringVar(&c.LogFormat, "log-format", env("ORRERY_LOG_FORMAT", "auto"), "auto, text or json (ORRERY_LOG_FORMAT)")
	fs.StringVar(&c.LogLevel, "log-level", env("ORRERY_LOG_LEVEL", "info"), "debug, info, warn or error (ORRERY_LOG_LEVEL)")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 30*time.Second, "how long in-flight requests may take at shutdown")
	fs.StringVar(&raw.drainPeriod, "drain-period", getenv("ORRERY_DRAIN_PERIOD"),
		"on SIGTERM, how long to keep serving with /readyz failing before refusing connections, so load balancers "+
			"move new requests to other replicas first; default 5s, 0s in development mode (ORRERY_DRAIN_PERIOD)")
	fs.StringVar(&raw.ssoResync, "sso-resync-interval", env("ORRERY_SSO_RESYNC_INTERVAL", "1h"),
		"how often the groups of people who signed in through an identity provider that gave a refresh token are read again, "+
			"so that leaving a group ends the team membership it granted without waiting for a sign-in; at least 1m (ORRERY_SSO_RESYNC_INTERVAL)")
	fs.StringVar(&raw.trustedProxies, "trusted-proxies", getenv("ORRERY_TRUSTED_PROXIES"),
		"comma-separated addresses or networks (CIDR) of the proxies in front of the control plane, whose X-Forwarded-For names the client (ORRERY_TRUSTED_PROXIES)")
	fs.StringVar(&raw.templateCommands, "template-commands",
		env("ORRERY_TEMPLATE_COMMANDS", strings.Join(catalogapi.DefaultTemplateCommands, ",")),
		"comma-separated commands team-private stdio templates may run: bare names, matched exactly, and absolute directories "+
			"ending in /, under which any command is allowed; * allows any command (ORRERY_TEMPLATE_COMMANDS)")
	fs.StringVar(&raw.accessTokenTTL, "oauth-access-token-ttl", env("ORRERY_OAUTH_ACCESS_TOKEN_TTL", "1h"),
		"how long an access token for a team endpoint or the API lives; clients refresh it silently (ORRERY_OAUTH_ACCESS_TOKEN_TTL)")
	fs.StringVar(&raw.refreshIdle, "oauth-refresh-idle", env("ORRERY_OAUTH_REFRESH_IDLE", "720h"),
		"how long an MCP client stays connected without being used: each refresh token lives this long, and each refresh "+
			"issues a new one (ORRERY_OAUTH_REFRESH_IDLE)")
	fs.StringVar(&raw.grantMaxAge, "oauth-grant-max-age", env("ORRERY_OAUTH_GRANT_MAX_AGE", "2160h"),
		"how long an MCP client stays connected at most after its user consented, however often it refreshes; then the "+
			"user authorizes again (ORRERY_OAUTH_GRANT_MAX_AGE)")
	fs.BoolVar(&c.WebhooksAllowPrivate, "webhooks-allow-private", getenv("ORRERY_WEBHOOKS_ALLOW_PRIVATE") == "true",
		"let alert webhooks reach loopback, private, link-local and this host's addresses (checked after DNS resolution); "+
			"by default they reach only public addresses, since teams choose their URLs (ORRERY_WEBHOOKS_ALLOW_PRIVATE=true)")
	fs.BoolVar(&c.RemoteAccountsAllowPrivate, "remote-accounts-allow-private", getenv("ORRERY_REMOTE_ACCOUNTS_ALLOW_PRIVATE") == "true",
		"let the control plane reach remote MCP servers and their authorization servers at loopback, private and link-local "+
			"addresses when members connect their accounts; by default only public addresses, since teams choose the servers "+
			"(ORRERY_REMOTE_ACCOUNTS_ALLOW_PRIVATE=true)")
	fs.StringVar(&c.PoolURL, "pool-url", getenv("ORRERY_POOL_URL"),
		"public URL the global satellites share behind a load balancer, scheme and host only, such as https://mcp.example.com; team endpoints "+
			"served by global satellites are under it and a satellite forwards requests for teams it does not serve; "+
			"empty: each global satellite is reached on its own URL (ORRERY_POOL_URL)")
	fs.StringVar(&raw.placementGrace, "placement-grace", env("ORRERY_PLACEMENT_GRACE", "90s"),
		"how long a global satellite may go unheard before its teams are placed on other satellites (ORRERY_PLACEMENT_GRACE)")
}

func loadConfig(args []string, getenv func(string) string) (config, error) {
	fs := flag.NewFlagSet("controlplane", flag.ContinueOnError)
	var c config
	var raw rawFlags
	defineFlags(fs, &c, &raw, getenv)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: controlplane [flags] [command]\n\ncommands (default: serve):\n%s\nflags:\n", commandUsage)
		fs.PrintDefaults()
	}
	err := fs.Parse(args)
	if err != nil {
		return config{}, err
	}
	c.Command = fs.Args()
	if c.DrainPeriod, err = parseDrainPeriod(raw.drainPeriod, c.Dev); err != nil {
		return config{}, err
	}
	if c.SSOResyncInterval, err = time.ParseDuration(raw.ssoResync); err != nil || c.SSOResyncInterval < time.Minute {
		return config{}, fmt.Errorf("ORRERY_SSO_RESYNC_INTERVAL: %q is not a duration of at least 1m", raw.ssoResync)
	}
	for entry := range strings.SplitSeq(raw.trustedProxies, ",") {
		if entry = strings.TrimSpace(entry); entry == "" {
			continue
		}
		p, err := parsePrefix(entry)
		if err != nil {
			return config{}, fmt.Errorf("ORRERY_TRUSTED_PROXIES: %q is neither an address nor a network", entry)
		}
		c.TrustedProxies = append(c.TrustedProxies, p)
	}
	if c.TemplateCommands, err = parseTemplateCommands(raw.templateCommands); err != nil {
		return config{}, err
	}
	for _, d := range []struct {
		name, value string
		to          *time.Duration
	}{
		{"ORRERY_OAUTH_ACCESS_TOKEN_TTL", raw.accessTokenTTL, &c.OAuth.AccessTokenTTL},
		{"ORRERY_OAUTH_REFRESH_IDLE", raw.refreshIdle, &c.OAuth.RefreshTokenTTL},
		{"ORRERY_OAUTH_GRANT_MAX_AGE", raw.grantMaxAge, &c.OAuth.GrantMaxAge},
	} {
		if *d.to, err = time.ParseDuration(d.value); err != nil || *d.to <= 0 {
			return config{}, fmt.Errorf("%s: %q is not a positive duration, such as 1h or 720h", d.name, d.value)
		}
	}
	if c.PlacementGrace, err = time.ParseDuration(raw.placementGrace); err != nil || c.PlacementGrace <= 0 {
		return config{}, fmt.Errorf("ORRERY_PLACEMENT_GRACE: %q is not a positive duration, such as 90s", raw.placementGrace)
	}
	if c.PoolURL != "" {
		u, err := url.Parse(c.PoolURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil ||
			strings.Trim(u.Path, "/") != "" || u.RawQuery != "" || u.Fragment != "" {
			return config{}, fmt.Errorf("ORRERY_POOL_URL: %q is not an http(s) URL of scheme and host only", c.PoolURL)
		}
		c.PoolURL = strings.TrimRight(c.PoolURL, "/")
	}
	if !(c.OAuth.AccessTokenTTL <= c.OAuth.RefreshTokenTTL && c.OAuth.RefreshTokenTTL <= c.OAuth.GrantMaxAge) {
		return config{}, errors.New("OAuth lifetimes must not shrink: ORRERY_OAUTH_ACCESS_TOKEN_TTL ≤ ORRERY_OAUTH_REFRESH_IDLE ≤ ORRERY_OAUTH_GRANT_MAX_AGE")
	}
	c.AdminToken = getenv("ORRERY_ADMIN_TOKEN")
	c.SigningKey = getenv("ORRERY_TOKEN_SIGNING_KEY")
	c.SecretKeys = getenv("ORRERY_SECRET_KEYS")
	if c.DevSatellite != "" && !c.Dev {
		return config{}, errors.New("-dev-satellite needs -dev")
	}
	if c.DatabaseURL == "" && !c.Dev {
		// A production replica must not quietly keep its data in a private server beside it, where other
		// replicas cannot share it and no backup looks for it.
		return config{}, errors.New("set ORRERY_DATABASE_URL (or -database-url) to the PostgreSQL to use, " +
			"e.g. postgres://orrery:PASSWORD@db.internal:5432/orrery; " +
			"only development mode (-dev) runs a private PostgreSQL under the data directory")
	}
	return c, nil
}

// devSecrets are generated once in development mode and kept in the data directory, so restarts keep
// working with the same admin token, registration tokens and sealed secrets.
type devSecrets struct {
	AdminToken      string `json:"admin_token"`
	SigningKey      string `json:"token_signing_key"`
	SecretKeys      string `json:"secret_keys"`
	ConsolePassword string `json:"console_password"`
}

func loadDevSecrets(dataDir string) (devSecrets, error) {
	path := filepath.Join(dataDir, "dev-secrets.json")
	raw, err := os.ReadFile(path)
	if err == nil {
		var s devSecrets
		if err := json.Unmarshal(raw, &s); err != nil {
			return devSecrets{}, fmt.Errorf("read %s: %w", path, err)
		}
		if s.ConsolePassword != "" {
			return s, nil
		}
		// Kept from before the console: add its password, keep everything else.
		s.ConsolePassword = randomString(18)
		return s, writeDevSecrets(dataDir, path, s)
	}
	if !errors.Is(err, os.ErrNotExist) {
		return devSecrets{}, err
	}
	s := devSecrets{AdminToken: "orrery_admin_" + randomString(32), SigningKey: randomString(32), ConsolePassword: randomString(18)}
	if s.SecretKeys, err = secrets.NewKeySpec("dev1"); err != nil {
		return devSecrets{}, err
	}
	return s, writeDevSecrets(dataDir, path, s)
}

func writeDevSecrets(dataDir, path string, s devSecrets) error {
	raw, _ := json.MarshalIndent(s, "", "  ")
	// The directory stays traversable: as root, the private PostgreSQL under it runs as the postgres user.
	// The secrets file itself is private.
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// defaultDrainPeriod outlasts the few seconds load balancers commonly take to notice a failing readiness
// check (two failures at a 1-2 s interval).
const defaultDrainPeriod = 5 * time.Second

// parseDrainPeriod reads the drain period; unset, it is defaultDrainPeriod, or none in development mode
// where no load balancer waits on /readyz and Ctrl-C should stop at once.
func parseDrainPeriod(s string, dev bool) (time.Duration, error) {
	if s == "" {
		if dev {
			return 0, nil
		}
		return defaultDrainPeriod, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 || d > 10*time.Minute {
		return 0, fmt.Errorf("ORRERY_DRAIN_PERIOD: %q is not a duration between 0s and 10m, such as 5s", s)
	}
	return d, nil
}

// parseTemplateCommands reads the list of commands team templates may run. A lone * lifts the restriction:
// an empty value is refused rather than read as "anything", so a variable set to nothing by mistake cannot
// open the satellites up.
func parseTemplateCommands(s string) (catalogapi.CommandPolicy, error) {
	if strings.TrimSpace(s) == "*" {
		return catalogapi.CommandPolicy{}, nil
	}
	p, err := catalogapi.NewCommandPolicy(strings.Split(s, ","))
	if err != nil {
		return p, fmt.Errorf("ORRERY_TEMPLATE_COMMANDS: %w; list commands such as npx,uvx or /opt/mcp/, or * for any", err)
	}
	return p, nil
}

// parsePrefix reads a network in CIDR notation, or a single address as the network of just that address.
func parsePrefix(s string) (netip.Prefix, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	return netip.ParsePrefix(s)
}

func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on Linux
	return base64.RawURLEncoding.EncodeToString(b)
}

// credentials turns the configured secrets into their runtime forms. Outside development mode every one
// must be configured: there is no built-in fallback key.
func (c *config) credentials() (*regtoken.Signer, *secrets.Keyring, error) {
	if c.Dev {
		dev, err := loadDevSecrets(c.DataDir)
		if err != nil {
			return nil, nil, fmt.Errorf("development secrets: %w", err)
		}
		c.AdminToken = firstNonEmpty(c.AdminToken, dev.AdminToken)
		c.ConsolePassword = dev.ConsolePassword
		c.SigningKey = firstNonEmpty(c.SigningKey, dev.SigningKey)
		c.SecretKeys = firstNonEmpty(c.SecretKeys, dev.SecretKeys)
	}
	var missing []string
	for name, v := range map[string]string{
		"ORRERY_ADMIN_TOKEN": c.AdminToken, "ORRERY_TOKEN_SIGNING_KEY": c.SigningKey, "ORRERY_SECRET_KEYS": c.SecretKeys,
	} {
		if v == "" {
			missing = append(missing, name)
		}
	}
	slices.Sort(missing)
	if len(missing) > 0 {
		return nil, nil, fmt.Errorf("set %v (or run with -dev to generate development values); "+
			"ORRERY_SECRET_KEYS is id:base64-of-32-random-bytes, e.g. k1:$(head -c32 /dev/urandom | base64)", missing)
	}
	if len(c.AdminToken) < 16 {
		return nil, nil, errors.New("ORRERY_ADMIN_TOKEN must be at least 16 characters")
	}
	signer, err := regtoken.NewSigner([]byte(c.SigningKey))
	if err != nil {
		return nil, nil, fmt.Errorf("ORRERY_TOKEN_SIGNING_KEY: %w", err)
	}
	keyring, err := secrets.ParseKeyring(c.SecretKeys)
	if err != nil {
		return nil, nil, fmt.Errorf("ORRERY_SECRET_KEYS: %w", err)
	}
	return signer, keyring, nil
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
