// Package e2e runs Orrery's services as the separate processes they are in production, built from this
// tree, and tests them together: a control plane on a fresh pgtest database and satellites dialing it.
//
// The tests and benchmarks are in this package's _test files. The helpers in this file build, start and
// stop the service binaries. They are exported because tests inside a service sometimes need the other
// service for real too, and Go's internal rule (rightly) keeps them from importing its packages:
//
//	cp := e2e.StartControlPlane(t, pgtest.NewDatabase(t))
//	token := cp.RegistrationToken(t)
//	cp.Stop(t)  // SIGTERM; it must exit 0
//	cp.Start(t) // a new process on the same address and database
//
// Every process is started with Pdeathsig, so it dies with the test binary even when that is killed, and is
// stopped at the end of its test; its output is logged when the test fails.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"

	adminv1 "github.com/orrery/orrery/gen/orrery/admin/v1"
	"github.com/orrery/orrery/gen/orrery/admin/v1/adminv1connect"
	"github.com/orrery/orrery/gen/orrery/api/v1/apiv1connect"
	"github.com/orrery/orrery/internal/filelock"
)

const (
	// buildTimeout allows for a cold build cache on a small machine.
	buildTimeout = 10 * time.Minute
	// startTimeout bounds how long a process may take to announce its address and become ready.
	startTimeout = 30 * time.Second
	// stopTimeout bounds a graceful stop. Both services shut down in well under a second when healthy.
	stopTimeout = 15 * time.Second
	// binPrefix names the directories holding the binaries of one test process.
	binPrefix = "orrery-e2e-bin-"
)

// Commands of this repository that Binary builds, by name.
var commands = map[string]string{
	"controlplane": "github.com/orrery/orrery/services/controlplane",
	"satellite":    "github.com/orrery/orrery/services/satellite",
	"orreryctl":    "github.com/orrery/orrery/services/orreryctl",
}

var (
	binDirOnce sync.Once
	binDir     string
	binDirErr  error
	builds     sync.Map // name → *build
)

type build struct {
	once sync.Once
	path string
	err  error
}

// Binary returns the path of the named command ("controlplane", "satellite" or "orreryctl") built from this tree, once
// per test process.
func Binary(t testing.TB, name string) string {
	t.Helper()
	if _, ok := commands[name]; !ok {
		t.Fatalf("e2e: no command named %q", name)
	}
	v, _ := builds.LoadOrStore(name, new(build))
	b := v.(*build)
	b.once.Do(func() { b.path, b.err = buildCommand(name) })
	if b.err != nil {
		t.Fatalf("e2e: %v", b.err)
	}
	return b.path
}

func buildCommand(name string) (string, error) {
	binDirOnce.Do(func() { binDir, binDirErr = filelock.ProcessDir(binPrefix) })
	if binDirErr != nil {
		return "", fmt.Errorf("directory for binaries: %w", binDirErr)
	}
	path := filepath.Join(binDir, name)
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	// go test puts its own toolchain first on PATH, so this is the go command running the tests.
	cmd := exec.CommandContext(ctx, "go", "build", "-o", path, commands[name])
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return "", fmt.Errorf("building %s took longer than %v (a cold build cache on a slow machine? "+
			"run `go build ./services/...` once first): %s", name, buildTimeout, out)
	}
	if err != nil {
		return "", fmt.Errorf("go build %s: %v\n%s", commands[name], err, out)
	}
	return path, nil
}

// Process is a running service binary. Its stdout and stderr are kept for the test to inspect.
type Process struct {
	name string
	cmd  *exec.Cmd
	out  *output
	done chan struct{}
}

// StartProcess starts the binary at path with args and env (added to a copy of this process's environment
// without its ORRERY_ variables). The process is stopped when the test ends, and its output is logged if the
// test failed.
func StartProcess(t testing.TB, name, path string, args, env []string) *Process {
	t.Helper()
	p := &Process{name: name, out: newOutput(), done: make(chan struct{})}
	p.cmd = exec.Command(path, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ORRERY_") {
			p.cmd.Env = append(p.cmd.Env, kv)
		}
	}
	p.cmd.Env = append(p.cmd.Env, env...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	// Pdeathsig fires when the thread that started the process exits; Go does not end its threads while the
	// test binary runs, so in practice it fires when the test binary dies, however it dies.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("e2e: start %s: %v", name, err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if !p.Exited() {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(stopTimeout):
				t.Errorf("e2e: %s did not stop within %v of SIGTERM; killing it", name, stopTimeout)
				_ = p.cmd.Process.Kill()
				<-p.done
			}
		}
		if t.Failed() {
			t.Logf("output of %s (pid %d, %s):\n%s", name, p.cmd.Process.Pid, p.cmd.ProcessState, p.Output())
		}
	})
	return p
}

// Name is the name the process was started with.
func (p *Process) Name() string { return p.name }

// Pid is the process's id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Output returns what the process has written to stdout and stderr so far.
func (p *Process) Output() string { return p.out.String() }

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Done is closed once the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Signal sends sig to the process.
func (p *Process) Signal(t testing.TB, sig os.Signal) {
	t.Helper()
	// ErrProcessDone: reaped already, though done may not be closed yet.
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) && !p.Exited() {
		t.Fatalf("e2e: signal %s: %v", p.name, err)
	}
}

// Wait waits up to timeout for the process to exit and returns its exit code (-1 if a signal ended it). It
// fails the test if the process is still running then.
func (p *Process) Wait(t testing.TB, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		t.Fatalf("e2e: %s still running after %v", p.name, timeout)
		return 0
	}
}

// Stop sends SIGTERM and waits for the process to exit, failing the test unless it exits with status 0
// within a few seconds.
func (p *Process) Stop(t testing.TB) {
	t.Helper()
	p.Signal(t, syscall.SIGTERM)
	if code := p.Wait(t, stopTimeout); code != 0 {
		t.Fatalf("e2e: %s exited with status %d after SIGTERM, want 0", p.name, code)
	}
}

// LogEntry is one line of a service's JSON log.
type LogEntry map[string]any

// String returns the entry's attribute key as a string, or "".
func (e LogEntry) String(key string) string {
	s, _ := e[key].(string)
	return s
}

// WaitLog waits up to timeout for a JSON log line for which match returns true, and returns it. It fails the
// test if none comes or the process exits first.
func (p *Process) WaitLog(t testing.TB, timeout time.Duration, what string, match func(LogEntry) bool) LogEntry {
	t.Helper()
	deadline := time.After(timeout)
	for {
		changed := p.out.Changed()
		sc := bufio.NewScanner(strings.NewReader(p.Output()))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var e LogEntry
			if json.Unmarshal(sc.Bytes(), &e) == nil && match(e) {
				return e
			}
		}
		select {
		case <-changed:
		case <-p.done:
			// The last output may have arrived with the exit: look once more before giving up.
			if p.out.Changed() != changed {
				continue
			}
			t.Fatalf("e2e: %s exited (%s) before logging %s", p.name, p.cmd.ProcessState, what)
		case <-deadline:
			t.Fatalf("e2e: %s did not log %s within %v", p.name, what, timeout)
		}
	}
}

// output collects a process's output and tells waiters when more arrives.
type output struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
}

func newOutput() *output { return &output{changed: make(chan struct{})} }

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.buf.Write(p)
	close(o.changed)
	o.changed = make(chan struct{})
	return len(p), nil
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// Changed returns a channel closed at the next write.
func (o *output) Changed() chan struct{} {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.changed
}

// ControlPlane is a control-plane process serving one database with fresh secrets. It can be stopped and
// started again on the same address and database, as a restarted replica would be.
type ControlPlane struct {
	// URL is the base URL, the same across restarts.
	URL string
	// DatabaseURL is the database it serves.
	DatabaseURL string
	// AdminToken authenticates AdminService calls.
	AdminToken string

	bin  string
	env  []string
	addr string
	proc *Process
	runs int
}

// StartControlPlane builds the control plane if needed, starts it on a free loopback port against
// databaseURL, with env added to its environment (ORRERY_* settings), and waits until /readyz answers 200.
func StartControlPlane(t testing.TB, databaseURL string, env ...string) *ControlPlane {
	t.Helper()
	cp := &ControlPlane{
		DatabaseURL: databaseURL,
		AdminToken:  "orrery_admin_" + randomBase64(24, base64.RawURLEncoding),
		bin:         Binary(t, "controlplane"),
	}
	cp.env = []string{
		"ORRERY_ADMIN_TOKEN=" + cp.AdminToken,
		"ORRERY_TOKEN_SIGNING_KEY=" + randomBase64(32, base64.RawURLEncoding),
		"ORRERY_SECRET_KEYS=e2e1:" + randomBase64(32, base64.StdEncoding),
		"ORRERY_LOG_FORMAT=json",
		// Nothing balances these replicas unless a test says so; draining would only slow its stops.
		"ORRERY_DRAIN_PERIOD=0s",
	}
	cp.env = append(cp.env, env...)
	cp.Start(t)
	return cp
}

// Replica starts another control-plane process on cp's database with cp's keys and admin token, as a second
// replica behind a load balancer would run, with env added to its environment (ORRERY_* settings).
func (cp *ControlPlane) Replica(t testing.TB, env ...string) *ControlPlane {
	t.Helper()
	r := &ControlPlane{DatabaseURL: cp.DatabaseURL, AdminToken: cp.AdminToken, bin: cp.bin,
		env: append(slices.Clone(cp.env), env...)}
	r.Start(t)
	return r
}

// Start starts a new control-plane process: on a free port the first time, on the same address after a
// Stop. It waits until /readyz answers 200.
func (cp *ControlPlane) Start(t testing.TB) {
	t.Helper()
	if cp.proc != nil && !cp.proc.Exited() {
		t.Fatal("e2e: control plane is already running")
	}
	listen := cp.addr
	if listen == "" {
		// Port 0 spares a free-port guess that another process could win; the log says what was bound.
		listen = "127.0.0.1:0"
	}
	cp.runs++
	cp.proc = StartProcess(t, fmt.Sprintf("controlplane#%d", cp.runs), cp.bin,
		[]string{"-listen", listen, "-database-url", cp.DatabaseURL, "-shutdown-timeout", "5s"}, cp.env)
	serving := cp.proc.WaitLog(t, startTimeout, `"control plane serving"`, func(e LogEntry) bool {
		return e.String("msg") == "control plane serving" && e.String("url") != ""
	})
	if cp.URL == "" {
		cp.URL = serving.String("url")
		cp.addr = strings.TrimPrefix(cp.URL, "http://")
	} else if got := serving.String("url"); got != cp.URL {
		t.Fatalf("e2e: restarted control plane serves %s, want %s", got, cp.URL)
	}
	WaitFor(t, startTimeout, "control plane /readyz", func() error {
		if cp.proc.Exited() {
			t.Fatalf("e2e: control plane exited while starting (%s)", cp.proc.cmd.ProcessState)
		}
		return HTTPOK(cp.URL + "/readyz")
	})
}

// Stop sends the control plane SIGTERM and waits for it to exit with status 0.
func (cp *ControlPlane) Stop(t testing.TB) {
	t.Helper()
	cp.proc.Stop(t)
}

// Process is the control plane's current process.
func (cp *ControlPlane) Process() *Process { return cp.proc }

// Admin returns an AdminService client that sends the admin token.
func (cp *ControlPlane) Admin() adminv1connect.AdminServiceClient {
	return adminv1connect.NewAdminServiceClient(http.DefaultClient, cp.URL,
		connect.WithInterceptors(bearer(cp.AdminToken)))
}

// Users returns a UserService client that sends the admin token.
func (cp *ControlPlane) Users() apiv1connect.UserServiceClient {
	return apiv1connect.NewUserServiceClient(http.DefaultClient, cp.URL, connect.WithInterceptors(bearer(cp.AdminToken)))
}

// Instances returns an InstanceService client that sends the admin token.
func (cp *ControlPlane) Instances() apiv1connect.InstanceServiceClient {
	return apiv1connect.NewInstanceServiceClient(http.DefaultClient, cp.URL, connect.WithInterceptors(bearer(cp.AdminToken)))
}

// RegistrationToken creates a global registration token through the AdminService.
func (cp *ControlPlane) RegistrationToken(t testing.TB) string {
	t.Helper()
	resp, err := cp.Admin().CreateRegistrationToken(t.Context(), connect.NewRequest(&adminv1.CreateRegistrationTokenRequest{
		Name: "e2e", Scope: adminv1.TokenScope_TOKEN_SCOPE_GLOBAL, Ttl: durationpb.New(time.Hour),
	}))
	if err != nil {
		t.Fatalf("e2e: create registration token: %v", err)
	}
	return resp.Msg.GetToken()
}

// SatelliteConfig says how to start a satellite.
type SatelliteConfig struct {
	// Name is the satellite's name. Default "e2e-satellite".
	Name string
	// StateDir holds its identity. Default: a new temporary directory, removed at cleanup.
	StateDir string
	// RegistrationToken registers it on its first start.
	RegistrationToken string
	// Env is added to the satellite's environment last, so it overrides the defaults above and the
	// isolation: by default a development satellite without a sandbox, since the test servers live in the
	// test user's npm cache, which a sandbox does not show. Tests of the sandbox set ORRERY_SANDBOX.
	Env []string
}

// Satellite is a satellite process.
type Satellite struct {
	*Process
	// URL is the public URL the satellite announced, where it serves /healthz and /readyz.
	URL string
	// StateDir holds its identity.
	StateDir string
	// MetricsURL is where it serves Prometheus metrics.
	MetricsURL string
}

// StartSatellite builds the satellite if needed and starts it against cp, listening on a free loopback
// port. It returns once the satellite has logged its address.
func StartSatellite(t testing.TB, cp *ControlPlane, cfg SatelliteConfig) *Satellite {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "e2e-satellite"
	}
	if cfg.StateDir == "" {
		cfg.StateDir = t.TempDir()
	}
	env := append([]string{
		"ORRERY_CONTROL_PLANE_URL=" + cp.URL,
		"ORRERY_REGISTRATION_TOKEN=" + cfg.RegistrationToken,
		"ORRERY_STATE_DIR=" + cfg.StateDir,
		"ORRERY_SATELLITE_NAME=" + cfg.Name,
		"ORRERY_SATELLITE_LISTEN=127.0.0.1:0",
		// Tests run several satellites at once; the default metrics port would let only one start.
		"ORRERY_METRICS_LISTEN=127.0.0.1:0",
		"ORRERY_LOG_FORMAT=json",
		"ORRERY_SANDBOX=direct",
		"ORRERY_DEV=true",
	}, cfg.Env...)
	proc := StartProcess(t, "satellite "+cfg.Name, Binary(t, "satellite"), nil, env)
	started := proc.WaitLog(t, startTimeout, `"satellite starting"`, func(e LogEntry) bool {
		return e.String("msg") == "satellite starting" && e.String("public_url") != ""
	})
	return &Satellite{Process: proc, URL: started.String("public_url"), StateDir: cfg.StateDir,
		MetricsURL: "http://" + started.String("metrics_listen") + "/metrics"}
}

// WaitFor calls check until it returns nil, failing the test with check's last error if that takes longer
// than timeout. Processes are observed from outside, so there is nothing to wait on but their answers.
func WaitFor(t testing.TB, timeout time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("e2e: timed out after %v waiting for %s: %v", timeout, what, err)
		}
		select {
		case <-t.Context().Done():
			t.Fatalf("e2e: test ended while waiting for %s", what)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// HTTPOK returns nil if GET url answers 200, and otherwise an error with the status and the start of the
// body.
func HTTPOK(url string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var body [256]byte
		n, _ := resp.Body.Read(body[:])
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, bytes.TrimSpace(body[:n]))
	}
	return nil
}

func bearer(token string) connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			req.Header().Set("Authorization", "Bearer "+token)
			return next(ctx, req)
		}
	}
}

func randomBase64(n int, enc *base64.Encoding) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails on Linux
	return enc.EncodeToString(b)
}
