// Package selfupdate replaces the satellite's binary with a signed release and restarts on it, rolling back
// to the binary it had when the new one does not prove itself.
//
// An update runs in three steps:
//
//  1. Stage (Updater.Update): the release's signature (package release) is checked against the configured
//     keys before anything is downloaded; the binary is downloaded beside the running one in bounded pieces,
//     checked against its size and SHA-256, and swapped in by rename, the old binary kept as
//     <binary>.previous. A marker in the state directory (update.json) records the command, both versions
//     and the deadline.
//  2. Hand off (Restart.Exec): once the satellite has drained its HTTP server without closing the listening
//     socket and stopped its MCP servers, it starts a watchdog from the previous binary and re-executes
//     itself, keeping its process id (which systemd expects) and handing the socket to the new process,
//     so clients that connect meanwhile wait in the socket's backlog instead of being refused.
//  3. Confirm or roll back: the new process confirms to the watchdog after its first heartbeat on the new
//     version (Updater.Heartbeat). If it exits first, or the deadline passes, the watchdog (RunWatchdog)
//     stops it, restores the previous binary and starts that again; the restored satellite reports the
//     command failed with the reason.
package selfupdate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/orrery/orrery/internal/release"
)

// Environment variables between the old process, the watchdog and the new process.
const (
	// EnvListenFD names the inherited listening socket's descriptor.
	EnvListenFD = "ORRERY_LISTEN_FD"
	// EnvConfirmFD names the descriptor of the pipe on which the new process confirms to the watchdog.
	EnvConfirmFD = "ORRERY_UPDATE_CONFIRM_FD"
	// EnvWatchdogPID is the watchdog's process id, so the new process reaps it.
	EnvWatchdogPID = "ORRERY_UPDATE_WATCHDOG_PID"
	// EnvWatchdog makes the binary run as a watchdog over the state directory's marker it names.
	EnvWatchdog = "ORRERY_UPDATE_WATCHDOG"
	// envWatchdogTarget is the pid the watchdog watches: the process that re-executes itself.
	envWatchdogTarget = "ORRERY_UPDATE_WATCHDOG_TARGET"
)

// MarkerName is the marker's file name in the state directory.
const MarkerName = "update.json"

// Marker states.
const (
	StateStaged     = "staged"
	StateConfirmed  = "confirmed"
	StateRolledBack = "rolled_back"
)

// Marker records an update across the restart.
type Marker struct {
	CommandID string    `json:"command_id"`
	From      string    `json:"from"`
	To        string    `json:"to"`
	Binary    string    `json:"binary"`
	Previous  string    `json:"previous"`
	Timeout   Duration  `json:"timeout"`
	State     string    `json:"state"`
	Reason    string    `json:"reason,omitempty"`
	Reported  bool      `json:"reported,omitempty"`
	StartedAt time.Time `json:"started_at"`
}

// Duration is a time.Duration written as text in JSON.
type Duration time.Duration

// MarshalText writes d as time.Duration does.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText reads what MarshalText wrote.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	*d = Duration(v)
	return err
}

// ReadMarker reads the marker at path; a missing marker is (nil, nil).
func ReadMarker(path string) (*Marker, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read update marker: %w", err)
	}
	var m Marker
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("read update marker %s: %w", path, err)
	}
	return &m, nil
}

// WriteMarker writes m to path atomically.
func WriteMarker(path string, m *Marker) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("write update marker: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write update marker: %w", err)
	}
	return nil
}

// Downloader fetches one piece of a release's binary at offset; the control plane's DownloadRelease.
type Downloader interface {
	DownloadRelease(ctx context.Context, version, platform string, offset int64) (release.Release, []byte, error)
}

// Reporter reports a command's result on behalf of the process that confirms or rolls back an update.
type Reporter interface {
	ReportResult(ctx context.Context, commandID string, output map[string]any, failure string) error
}

// Config configures an Updater.
type Config struct {
	// Keys are the trusted release keys. Empty: every update is refused.
	Keys release.Keys
	// Version is the running version.
	Version string
	// StateDir holds the marker. Required.
	StateDir string
	// Executable is the binary to replace. Default: os.Executable with symbolic links resolved.
	Executable string
	// HealthyTimeout is how long the new version has to heartbeat before it is rolled back. Default 2 min.
	HealthyTimeout time.Duration
	// Download fetches releases. Required.
	Download Downloader
	// Now returns the current time. Default time.Now.
	Now func() time.Time
}

// Request is an update command.
type Request struct {
	CommandID      string
	Version        string
	AllowDowngrade bool
}

// Updater carries out update commands and confirms or reports them after a restart.
type Updater struct {
	logger   *slog.Logger
	cfg      Config
	restarts chan *Restart

	mu        sync.Mutex
	reporter  Reporter
	confirmed bool
	confirm   *os.File
	watchdog  int
}

// New returns an Updater. confirm and watchdogPID come from the process's environment (TakeInherited):
// the pipe to the watchdog and its pid, when this process was started by an update.
func New(logger *slog.Logger, cfg Config) (*Updater, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.StateDir == "" || cfg.Download == nil {
		return nil, errors.New("selfupdate: StateDir and Download are required")
	}
	if cfg.HealthyTimeout <= 0 {
		cfg.HealthyTimeout = 2 * time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Updater{logger: logger, cfg: cfg, restarts: make(chan *Restart, 1)}, nil
}

// Inherit hands the updater what the process that started this one passed down: the confirmation pipe
// and the watchdog's pid. Both may be zero.
func (u *Updater) Inherit(confirm *os.File, watchdogPID int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.confirm, u.watchdog = confirm, watchdogPID
}

// SetReporter sets where results of updates finished by this process are reported.
func (u *Updater) SetReporter(r Reporter) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.reporter = r
}

// Restarts delivers the restart an update has staged; the satellite then drains and calls Restart.Exec.
func (u *Updater) Restarts() <-chan *Restart { return u.restarts }

func (u *Updater) markerPath() string { return filepath.Join(u.cfg.StateDir, MarkerName) }

func (u *Updater) executable() (string, error) {
	if u.cfg.Executable != "" {
		return u.cfg.Executable, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	return filepath.EvalSymlinks(exe)
}

// ErrRestarting is returned by Update when the satellite restarts on the new binary: the command's result
// is reported later, by the process that confirms the update or rolls it back.
var ErrRestarting = errors.New("restarting on the new version")

// Update carries out an update command. It returns the command's output, ErrRestarting once the new
// binary is in place and the restart is handed to the satellite, or why the update was refused.
func (u *Updater) Update(ctx context.Context, req Request) (map[string]any, error) {
	if m, err := ReadMarker(u.markerPath()); err == nil && m != nil && m.CommandID == req.CommandID {
		// Delivered again: say what became of it rather than updating twice.
		switch m.State {
		case StateConfirmed:
			return map[string]any{"from": m.From, "to": m.To}, nil
		case StateRolledBack:
			return nil, fmt.Errorf("rolled back to %s: %s", m.From, m.Reason)
		default:
			return nil, ErrRestarting
		}
	}
	if req.Version == "" {
		return nil, errors.New("the command names no version")
	}
	if req.Version == u.cfg.Version {
		return map[string]any{"from": u.cfg.Version, "to": req.Version, "already_running": true}, nil
	}
	if len(u.cfg.Keys) == 0 {
		return nil, release.ErrNoKeys
	}
	if err := release.CheckVersion(u.cfg.Version, req.Version, req.AllowDowngrade); err != nil {
		return nil, err
	}
	exe, err := u.executable()
	if err != nil {
		return nil, fmt.Errorf("find the running binary: %w", err)
	}
	started := u.cfg.Now()
	staged, rel, err := u.download(ctx, exe, req.Version)
	if err != nil {
		return nil, err
	}
	m := &Marker{
		CommandID: req.CommandID, From: u.cfg.Version, To: rel.Version, Binary: exe, Previous: exe + ".previous",
		Timeout: Duration(u.cfg.HealthyTimeout), State: StateStaged, StartedAt: started,
	}
	if err := swap(exe, m.Previous, staged); err != nil {
		_ = os.Remove(staged)
		return nil, err
	}
	if err := WriteMarker(u.markerPath(), m); err != nil {
		// Without the marker nobody could roll back: put the old binary back.
		_ = os.Rename(m.Previous, exe)
		return nil, err
	}
	u.logger.InfoContext(ctx, "new version staged; restarting on it", slog.String("from", m.From), slog.String("to", m.To),
		slog.Int64("bytes", rel.Size), slog.Duration("download", u.cfg.Now().Sub(started)))
	u.restarts <- &Restart{logger: u.logger, marker: m, markerPath: u.markerPath()}
	return nil, ErrRestarting
}

// maxPiece bounds one downloaded piece, matching the control plane's answer size.
const maxPiece = 1 << 20

// maxBinary bounds a release's binary, as the control plane bounds the releases it stores (256 MiB).
const maxBinary = 256 << 20

// download fetches version into a temporary file beside exe and returns its path once its signature,
// size and checksum are verified. The signature is checked first, from the first piece's description,
// so an unsigned release costs one piece.
func (u *Updater) download(ctx context.Context, exe, version string) (string, release.Release, error) {
	rel, data, err := u.cfg.Download.DownloadRelease(ctx, version, release.Platform(), 0)
	if err != nil {
		return "", rel, fmt.Errorf("download release %s: %w", version, err)
	}
	switch {
	case rel.Version != version:
		return "", rel, fmt.Errorf("asked for release %s, got %s", version, rel.Version)
	case rel.Platform != release.Platform():
		return "", rel, fmt.Errorf("%w: %s, this satellite runs on %s", release.ErrPlatform, rel.Platform, release.Platform())
	}
	if err := u.cfg.Keys.Verify(rel); err != nil {
		return "", rel, err
	}
	// The size is not signed: bound it before writing anything, as the control plane bounds what it stores.
	if rel.Size <= 0 || rel.Size > maxBinary {
		return "", rel, fmt.Errorf("%w: a release of %d bytes (at most %d)", release.ErrChecksum, rel.Size, int64(maxBinary))
	}
	f, err := os.CreateTemp(filepath.Dir(exe), "."+filepath.Base(exe)+".update-*")
	if err != nil {
		return "", rel, fmt.Errorf("stage the new binary beside %s (its directory must be writable by the satellite): %w", exe, err)
	}
	fail := func(err error) (string, release.Release, error) {
		f.Close()
		os.Remove(f.Name())
		return "", rel, err
	}
	h := sha256.New()
	var offset int64
	for {
		if int64(len(data)) > maxPiece || offset+int64(len(data)) > rel.Size {
			return fail(fmt.Errorf("%w: the download is longer than the release's %d bytes", release.ErrChecksum, rel.Size))
		}
		if _, err := f.Write(data); err != nil {
			return fail(fmt.Errorf("stage the new binary: %w", err))
		}
		h.Write(data)
		offset += int64(len(data))
		if offset == rel.Size {
			break
		}
		if len(data) == 0 {
			return fail(fmt.Errorf("%w: the download ended at %d of %d bytes", release.ErrChecksum, offset, rel.Size))
		}
		var next release.Release
		next, data, err = u.cfg.Download.DownloadRelease(ctx, version, release.Platform(), offset)
		if err != nil {
			return fail(fmt.Errorf("download release %s at %d: %w", version, offset, err))
		}
		if next.SHA256 != rel.SHA256 || next.Size != rel.Size {
			return fail(errors.New("the release changed during the download"))
		}
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != rel.SHA256 {
		return fail(fmt.Errorf("%w: got %s, want %s", release.ErrChecksum, got, rel.SHA256))
	}
	if err := f.Chmod(0o755); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		return fail(err)
	}
	return f.Name(), rel, nil
}

// swap puts staged in exe's place, keeping the old binary as previous. exe names a working binary at every
// instant: the old one is linked to previous before the rename replaces exe in one step.
func swap(exe, previous, staged string) error {
	_ = os.Remove(previous)
	if err := os.Link(exe, previous); err != nil {
		return fmt.Errorf("keep the running binary as %s: %w", previous, err)
	}
	if err := os.Rename(staged, exe); err != nil {
		return fmt.Errorf("swap in the new binary: %w", err)
	}
	return nil
}

// Heartbeat is called after every heartbeat the control plane accepted. The first one on a version an
// update started confirms the update to the watchdog and reports the command completed; the first one
// after a rollback reports the command failed.
func (u *Updater) Heartbeat(ctx context.Context) {
	u.mu.Lock()
	if u.confirmed {
		u.mu.Unlock()
		return
	}
	u.confirmed = true
	confirm, watchdog, reporter := u.confirm, u.watchdog, u.reporter
	u.confirm = nil
	u.mu.Unlock()

	if confirm != nil {
		// The watchdog stands down on this byte; should it be gone already, the update stands anyway.
		_, _ = confirm.Write([]byte{'k'})
		confirm.Close()
	}
	if watchdog > 0 {
		go reap(watchdog)
	}
	m, err := ReadMarker(u.markerPath())
	if err != nil || m == nil || m.Reported {
		if err != nil {
			u.logger.WarnContext(ctx, "update marker unreadable", slog.Any("error", err))
		}
		return
	}
	var (
		output  map[string]any
		failure string
	)
	switch {
	case m.State == StateStaged && m.To == u.cfg.Version:
		m.State = StateConfirmed
		took := u.cfg.Now().Sub(m.StartedAt)
		output = map[string]any{"from": m.From, "to": m.To, "seconds_to_first_heartbeat": took.Seconds()}
		u.logger.InfoContext(ctx, "update confirmed: first heartbeat on the new version", slog.String("from", m.From),
			slog.String("to", m.To), slog.Duration("since_command", took))
	case m.State == StateRolledBack:
		failure = fmt.Sprintf("rolled back to %s: %s", m.From, m.Reason)
	case m.State == StateStaged:
		// Restarted on another version than the update put in place, without the watchdog saying why.
		m.State, m.Reason = StateRolledBack, fmt.Sprintf("the satellite came back on %s instead of %s", u.cfg.Version, m.To)
		failure = m.Reason
	default:
		return
	}
	if failure != "" {
		u.logger.WarnContext(ctx, "update failed", slog.String("command_id", m.CommandID), slog.String("error", failure))
	}
	m.Reported = true
	if err := WriteMarker(u.markerPath(), m); err != nil {
		u.logger.WarnContext(ctx, "update marker not written", slog.Any("error", err))
	}
	if reporter != nil {
		go func() {
			if err := reporter.ReportResult(ctx, m.CommandID, output, failure); err != nil {
				u.logger.WarnContext(ctx, "update result not reported", slog.Any("error", err))
			}
		}()
	}
}

// reap waits for the watchdog, a child of this process since the exec, so it does not linger as a zombie.
func reap(pid int) {
	if p, err := os.FindProcess(pid); err == nil {
		_, _ = p.Wait()
	}
}
