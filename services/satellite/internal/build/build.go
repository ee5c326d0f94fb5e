// Package build turns a stdio server's source archive into a tree the satellite can run: it downloads the
// archive under the satellite's egress policy, checks its SHA-256, unpacks it safely, builds it inside the
// server's sandbox, and keeps the result, cached by team, checksum and build command, in a directory of
// the satellite's state.
//
//	b, err := build.New(logger, build.Config{Dir: filepath.Join(stateDir, "builds"), HTTPClient: client})
//	res, err := b.Build(ctx, build.Request{TeamID: team, Source: spec.GetSource(), Log: logLine})
//	if err != nil { ... }          // the build log went to Log line by line
//	defer res.Release()             // an unused build may be pruned
//	// run the server with sandbox.Spec{App: res.Dir, ...}
//
// # Limits
//
// A download is bounded by MaxArchiveBytes and FetchTimeout, unpacking by Unpack (entries and bytes,
// counted as written), and a build by BuildTimeout and the sandbox limits in Limits, which replace a
// template's running limits where those are lower: installing packages needs more memory and CPU than
// serving calls. The sandbox driver still clamps them to the satellite's ceilings. A build has the network
// its server has (to reach the package registry); a template without network builds offline.
package build

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/internal/egress"
	"github.com/orrery/orrery/services/satellite/internal/lines"
	"github.com/orrery/orrery/services/satellite/internal/sandbox"
)

// Defaults of Config.
const (
	// DefaultMaxArchiveBytes bounds a downloaded archive.
	DefaultMaxArchiveBytes = 100 << 20
	// DefaultMaxFiles bounds the entries of an archive.
	DefaultMaxFiles = 20000
	// DefaultMaxUnpackedBytes bounds an archive's files together, decompressed.
	DefaultMaxUnpackedBytes = 512 << 20
	// DefaultFetchTimeout bounds a download.
	DefaultFetchTimeout = 2 * time.Minute
	// DefaultBuildTimeout bounds a build's wall time: npm ci of a server with a few hundred packages takes
	// about a minute on one CPU.
	DefaultBuildTimeout = 10 * time.Minute
	// DefaultKeep is how many unused builds stay cached.
	DefaultKeep = 5
)

// DefaultLimits are a build's sandbox limits, unless a template's are higher: a whole CPU, 1 GiB of
// memory, 256 processes and threads (npm and node-gyp start many), 10 minutes of CPU time per process,
// 4096 open files and files of up to 512 MiB.
var DefaultLimits = sandbox.Limits{
	MemoryBytes:   1 << 30,
	Processes:     256,
	CPU:           1,
	CPUTime:       10 * time.Minute,
	OpenFiles:     4096,
	FileSizeBytes: 512 << 20,
}

// Config configures a Builder. Zero fields take their defaults.
type Config struct {
	// Dir holds the builds, one directory each. Required.
	Dir string
	// HTTPClient downloads archives. Default: a client dialing under egress.Policy{} (the public internet
	// only); a satellite passes the client it dials remote servers with, under the same policy.
	HTTPClient *http.Client
	// Driver runs builds, in the sandbox the server would run in. Default sandbox.Direct{}.
	Driver sandbox.Driver
	// MaxArchiveBytes bounds a downloaded archive. Default DefaultMaxArchiveBytes (100 MiB).
	MaxArchiveBytes int64
	// Unpack bounds an archive's entries and bytes. Defaults DefaultMaxFiles (20000) and
	// DefaultMaxUnpackedBytes (512 MiB).
	Unpack Limits
	// FetchTimeout bounds a download. Default DefaultFetchTimeout (2 min).
	FetchTimeout time.Duration
	// BuildTimeout bounds a build command's wall time. Default DefaultBuildTimeout (10 min).
	BuildTimeout time.Duration
	// Limits are a build's sandbox limits; zero fields take DefaultLimits.
	Limits sandbox.Limits
	// Uploaded fetches an archive a team uploaded to the control plane (Source.uploaded), by SHA-256.
	// Default: none, and such sources fail.
	Uploaded func(ctx context.Context, teamID, sha256 string) ([]byte, error)
	// Keep is how many builds not in use stay cached; older ones are removed after each build. Default
	// DefaultKeep (5).
	Keep int
}

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Transport: egress.Policy{}.Transport()}
	}
	if c.Driver == nil {
		c.Driver = sandbox.Direct{}
	}
	if c.MaxArchiveBytes <= 0 {
		c.MaxArchiveBytes = DefaultMaxArchiveBytes
	}
	if c.Unpack.Files <= 0 {
		c.Unpack.Files = DefaultMaxFiles
	}
	if c.Unpack.Bytes <= 0 {
		c.Unpack.Bytes = DefaultMaxUnpackedBytes
	}
	if c.FetchTimeout <= 0 {
		c.FetchTimeout = DefaultFetchTimeout
	}
	if c.BuildTimeout <= 0 {
		c.BuildTimeout = DefaultBuildTimeout
	}
	c.Limits = c.Limits.Or(DefaultLimits)
	if c.Keep <= 0 {
		c.Keep = DefaultKeep
	}
	return c
}

// Builder builds servers from source archives. Its methods are safe for concurrent use.
type Builder struct {
	logger *slog.Logger
	cfg    Config

	mu      sync.Mutex
	entries map[string]*entry // by cache key: builds running or in use
}

// entry is one cache key's build, while someone builds or uses it.
type entry struct {
	mu   sync.Mutex // held while building
	refs int
}

// New returns a Builder. A nil logger discards logs.
func New(logger *slog.Logger, cfg Config) (*Builder, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.WithDefaults()
	if cfg.Dir == "" {
		return nil, errors.New("build: no directory for builds")
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("build: %w", err)
	}
	return &Builder{logger: logger, cfg: cfg, entries: make(map[string]*entry)}, nil
}

// Request is a build to make, or to find in the cache.
type Request struct {
	// TeamID is the team whose server it is: builds are cached per team, and run in its sandbox.
	TeamID string
	// InstanceID names the instance the build is for, in the sandbox's records.
	InstanceID string
	// Source is the archive and how to build it. Required.
	Source *satellitev1.Source
	// Network lets the build reach the network, as the server may; EgressAllow narrows it the same way.
	Network     bool
	EgressAllow []string
	// Limits are the template's running limits; the build gets whichever is higher, field by field, of
	// these and the Builder's.
	Limits *sandbox.Limits
	// Log receives the build's output, line by line, and the steps it takes. Nil drops them.
	Log func(line string)
}

// Result is a finished build. Release it once the server no longer runs from it.
type Result struct {
	// Dir is the built tree: the server's working directory.
	Dir string
	// Cached says the build was found in the cache.
	Cached bool

	release func()
}

// Release says the build is no longer used, so that pruning may remove it. It may be called more than
// once.
func (r *Result) Release() {
	if r != nil && r.release != nil {
		r.release()
		r.release = nil
	}
}

// Key is the cache key of a build: a digest of the team, the archive's checksum and the build command.
// Builds are never shared between teams: a build runs the team's code, which could leave anything in
// its tree.
func Key(teamID string, src *satellitev1.Source) string {
	h := sha256.Sum256([]byte(teamID + "\x00" + src.GetSha256() + "\x00" + src.GetBuildCommand()))
	return hex.EncodeToString(h[:16])
}

// marker names the file in a build's directory that says it finished; it holds the built tree's path
// relative to the directory.
const marker = "built"

// Build returns the built tree for req, building it unless the cache has it. Concurrent requests for the
// same build wait for one another. A failed build is not cached: the next request tries again.
func (b *Builder) Build(ctx context.Context, req Request) (*Result, error) {
	src := req.Source
	switch {
	case len(src.GetSha256()) != 64:
		return nil, errors.New("build: the source needs a sha256")
	case src.GetUploaded():
		if b.cfg.Uploaded == nil {
			return nil, errors.New("build: this satellite cannot fetch uploaded archives")
		}
	case !strings.HasPrefix(src.GetUrl(), "https://"):
		return nil, errors.New("build: the source url must be https")
	}
	logf := func(format string, args ...any) {
		if req.Log != nil {
			req.Log(fmt.Sprintf(format, args...))
		}
	}
	key := Key(req.TeamID, src)
	e := b.acquire(key)
	release := sync.OnceFunc(func() { b.releaseKey(key) })
	e.mu.Lock()
	defer e.mu.Unlock()

	dir := filepath.Join(b.cfg.Dir, key)
	if app, ok := b.finished(dir); ok {
		now := time.Now()
		_ = os.Chtimes(filepath.Join(dir, marker), now, now)
		logf("build: using the cached build of sha256 %s", src.GetSha256())
		return &Result{Dir: app, Cached: true, release: release}, nil
	}
	app, err := b.make(ctx, req, dir, logf)
	if err != nil {
		_ = os.RemoveAll(dir)
		release()
		return nil, err
	}
	b.prune()
	return &Result{Dir: app, release: release}, nil
}

// finished returns the built tree of a finished build in dir.
func (b *Builder) finished(dir string) (string, bool) {
	rel, err := os.ReadFile(filepath.Join(dir, marker))
	if err != nil {
		return "", false
	}
	app := filepath.Join(dir, filepath.FromSlash(string(rel)))
	if !strings.HasPrefix(app, dir+string(filepath.Separator)) {
		return "", false
	}
	return app, true
}

// make fetches, unpacks and builds req into dir.
func (b *Builder) make(ctx context.Context, req Request, dir string, logf func(string, ...any)) (string, error) {
	src := req.Source
	start := time.Now()
	_ = os.RemoveAll(dir) // an unfinished build left by a crash
	tree := filepath.Join(dir, "src")
	if err := os.MkdirAll(tree, 0o755); err != nil {
		return "", fmt.Errorf("build: %w", err)
	}
	logf("build: downloading the archive (sha256 %s)", src.GetSha256())
	var archive *os.File
	var err error
	if src.GetUploaded() {
		archive, err = b.fetchUploaded(ctx, req.TeamID, src.GetSha256(), dir)
	} else {
		archive, err = b.fetch(ctx, src.GetUrl(), src.GetSha256(), dir)
	}
	if err != nil {
		return "", err
	}
	err = unpack(archive, tree, b.cfg.Unpack)
	_ = archive.Close()
	_ = os.Remove(archive.Name())
	if err != nil {
		return "", fmt.Errorf("unpack: %w", err)
	}
	app, err := topLevel(tree)
	if err != nil {
		return "", fmt.Errorf("unpack: %w", err)
	}
	script, what, err := plan(app, src.GetBuildCommand())
	if err != nil {
		return "", err
	}
	if script != "" {
		logf("build: %s", what)
		if err := b.run(ctx, req, app, script, logf); err != nil {
			return "", err
		}
	}
	rel, err := filepath.Rel(dir, app)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, marker), []byte(filepath.ToSlash(rel)), 0o600); err != nil {
		return "", fmt.Errorf("build: %w", err)
	}
	logf("build: done in %v", time.Since(start).Round(time.Millisecond))
	return app, nil
}

// topLevel returns the one directory tree holds when it holds nothing else, as GitHub's archives do,
// else tree.
func topLevel(tree string) (string, error) {
	list, err := os.ReadDir(tree)
	if err != nil {
		return "", err
	}
	if len(list) == 1 && list[0].IsDir() {
		return filepath.Join(tree, list[0].Name()), nil
	}
	return tree, nil
}

// logTail is how many of a failed build's last lines its error carries.
const logTail = 10

// run runs script with /bin/sh in the sandbox, in app.
func (b *Builder) run(ctx context.Context, req Request, app, script string, logf func(string, ...any)) error {
	limits := b.cfg.Limits
	if req.Limits != nil {
		limits = maxLimits(*req.Limits, limits)
	}
	ctx, cancel := context.WithTimeoutCause(ctx, b.cfg.BuildTimeout,
		fmt.Errorf("the build did not finish within %v", b.cfg.BuildTimeout))
	defer cancel()
	proc, err := b.cfg.Driver.Start(sandbox.Spec{
		Command: "/bin/sh", Args: []string{"-c", script},
		Env: map[string]string{
			"CI": "true", "npm_config_update_notifier": "false", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
			"PIP_NO_INPUT": "1",
		},
		App: app, AppWritable: true,
		TeamID: req.TeamID, InstanceID: "build-" + req.InstanceID,
		Network: req.Network, EgressAllow: req.EgressAllow,
		Limits: &limits,
	})
	if err != nil {
		return fmt.Errorf("build: %w", err)
	}
	_ = proc.Stdin.Close()
	for _, n := range proc.Notes() {
		logf("build: sandbox: %s", n)
	}
	var mu sync.Mutex
	var tail []string
	var wg sync.WaitGroup
	for _, r := range []io.Reader{proc.Stdout, proc.Stderr} {
		wg.Go(func() {
			_ = lines.Read(r, 1024, func(line string) {
				mu.Lock()
				tail = append(tail, line)
				if len(tail) > logTail {
					tail = tail[1:]
				}
				mu.Unlock()
				logf("%s", line)
			})
		})
	}
	select {
	case <-proc.Done():
	case <-ctx.Done():
		proc.Stop(5 * time.Second)
	}
	wg.Wait()
	if proc.ExitCode() != 0 || context.Cause(ctx) != nil {
		why := proc.ExitStatus()
		if r := proc.Reason(); r != "" {
			why = r + "; " + why
		}
		if cause := context.Cause(ctx); cause != nil {
			why = cause.Error()
		}
		return fmt.Errorf("build failed (%s): %s", why, strings.Join(tail, " | "))
	}
	return nil
}

// maxLimits returns, field by field, the higher of a and b.
func maxLimits(a, b sandbox.Limits) sandbox.Limits {
	return sandbox.Limits{
		MemoryBytes: max(a.MemoryBytes, b.MemoryBytes), Processes: max(a.Processes, b.Processes),
		CPU: max(a.CPU, b.CPU), CPUTime: max(a.CPUTime, b.CPUTime), OpenFiles: max(a.OpenFiles, b.OpenFiles),
		FileSizeBytes: max(a.FileSizeBytes, b.FileSizeBytes),
	}
}

func (b *Builder) acquire(key string) *entry {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.entries[key]
	if e == nil {
		e = &entry{}
		b.entries[key] = e
	}
	e.refs++
	return e
}

func (b *Builder) releaseKey(key string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if e := b.entries[key]; e != nil {
		e.refs--
		if e.refs == 0 {
			delete(b.entries, key)
		}
	}
}

// prune removes the builds nobody uses beyond the Keep most recently used, and what unfinished builds
// left behind.
func (b *Builder) prune() {
	list, err := os.ReadDir(b.cfg.Dir)
	if err != nil {
		return
	}
	type build struct {
		name string
		used time.Time
	}
	var idle []build
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, d := range list {
		if _, busy := b.entries[d.Name()]; busy {
			continue
		}
		path := filepath.Join(b.cfg.Dir, d.Name())
		info, err := os.Stat(filepath.Join(path, marker))
		if err != nil {
			_ = os.RemoveAll(path)
			continue
		}
		idle = append(idle, build{d.Name(), info.ModTime()})
	}
	slices.SortFunc(idle, func(x, y build) int { return y.used.Compare(x.used) })
	for _, old := range idle[min(len(idle), b.cfg.Keep):] {
		b.logger.Info("removing an unused build", slog.String("build", old.name))
		_ = os.RemoveAll(filepath.Join(b.cfg.Dir, old.name))
	}
}
