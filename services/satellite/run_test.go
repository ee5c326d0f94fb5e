package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/internal/aptget"
	"github.com/orrery/orrery/internal/mcptest"
	"github.com/orrery/orrery/services/satellite/internal/backend"
	"github.com/orrery/orrery/services/satellite/internal/backendtest"
	"github.com/orrery/orrery/services/satellite/internal/sandbox"
)

const testToken = "orreg_run-test-registration-token"

func testConfig(t *testing.T, srv *backendtest.Server) Config {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	metricsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return Config{
		ControlPlaneURL:   srv.URL,
		RegistrationToken: testToken,
		Name:              "run-test",
		StateDir:          filepath.Join(t.TempDir(), "state"),
		PollWait:          2 * time.Second,
		BackoffMin:        5 * time.Millisecond,
		BackoffMax:        20 * time.Millisecond,
		ShutdownTimeout:   time.Second,
		// The servers these tests run live in the test's npm cache, which a sandbox does not show; the
		// sandboxed satellite has tests of its own.
		Sandbox:         "direct",
		Dev:             true,
		listener:        ln,
		metricsListener: metricsLn,
	}
}

// quickBackend is a control plane that accepts testToken for a global satellite and asks for heartbeats
// every 10 ms.
func quickBackend(t *testing.T) *backendtest.Server {
	srv := backendtest.New(t)
	srv.AddToken(testToken, satellitev1.SatelliteType_SATELLITE_TYPE_GLOBAL, "")
	srv.SetConfiguration("v1")
	srv.SetNextHeartbeat(10 * time.Millisecond)
	return srv
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), nil))
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestRunServesHealthAndReadiness(t *testing.T) {
	t.Parallel()
	srv := quickBackend(t)
	srv.SetDown(true)
	cfg := testConfig(t, srv)
	base := "http://" + cfg.listener.Addr().String()

	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- run(ctx, cfg, testLogger(t)) }()

	if code, _ := get(t, base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d, want 200 while the control plane is down", code)
	}
	if code, body := get(t, base+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "not registered") {
		t.Errorf("/readyz = %d %q, want 503 saying it is not registered", code, body)
	}

	srv.SetDown(false)
	srv.Wait(t.Context(), "readiness and a heartbeat", 5*time.Second, func() bool {
		code, _ := get(t, base+"/readyz")
		return code == http.StatusOK && len(srv.Heartbeats()) > 0
	})
	if hbs := srv.Heartbeats(); hbs[0].GetUrl() != base {
		t.Errorf("first heartbeat url = %q, want the listener's %q", hbs[0].GetUrl(), base)
	}

	// Metrics are served on their own listener only, never to MCP clients. The control plane has the
	// heartbeat before the satellite has its answer and counts it, so wait for the count.
	metricsURL := "http://" + cfg.metricsListener.Addr().String() + "/metrics"
	heartbeatCounted := `orrery_satellite_control_plane_calls_total{call="heartbeat",code="ok"} `
	var code int
	var body string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if code, body = get(t, metricsURL); strings.Contains(body, heartbeatCounted) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics lacks %q 5 s after the first heartbeat:\n%s", heartbeatCounted, body)
		}
	}
	if code != http.StatusOK {
		t.Errorf("/metrics = %d, want 200", code)
	}
	for _, want := range []string{"go_goroutines ", "process_cpu_seconds_total ", `orrery_satellite_instances{state="online"} 0`,
		"orrery_satellite_events_buffered ", "orrery_satellite_events_dropped_total 0", "orrery_satellite_mcp_sessions_open 0"} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if code, _ := get(t, base+"/metrics"); code != http.StatusNotFound {
		t.Errorf("/metrics on the MCP listener = %d, want 404", code)
	}

	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("run after cancel = %v, want nil", err)
	}
	// Asked of the listener itself: a dial could reach another test's listener that got the port since.
	_ = cfg.listener.(*net.TCPListener).SetDeadline(time.Now().Add(100 * time.Millisecond))
	if _, err := cfg.listener.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("HTTP listener still open after run returned: Accept = %v", err)
	}
	_ = cfg.metricsListener.(*net.TCPListener).SetDeadline(time.Now().Add(100 * time.Millisecond))
	if _, err := cfg.metricsListener.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("metrics listener still open after run returned: Accept = %v", err)
	}
}

// TestRunRefusesABusyStateDir starts a second satellite on the state directory of a running one: it stops
// at once, saying why, and the directory is free again once the first has stopped.
func TestRunRefusesABusyStateDir(t *testing.T) {
	t.Parallel()
	srv := quickBackend(t)
	first := testConfig(t, srv)
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- run(ctx, first, testLogger(t)) }()
	srv.Wait(t.Context(), "a heartbeat", 10*time.Second, func() bool { return len(srv.Heartbeats()) > 0 })

	second := testConfig(t, srv)
	second.StateDir = first.StateDir
	if err := run(t.Context(), second, testLogger(t)); err == nil || !strings.Contains(err.Error(), "in use by another satellite") {
		t.Fatalf("second satellite on the same state directory: %v, want an error saying it is in use", err)
	}

	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("run after cancel = %v, want nil", err)
	}
	unlock, err := lockStateDir(first.StateDir)
	if err != nil {
		t.Fatalf("state directory after the satellite stopped: %v", err)
	}
	unlock()
}

func TestRunStopsWhenKeyRefused(t *testing.T) {
	t.Parallel()
	srv := backendtest.New(t)
	srv.AddToken(testToken, satellitev1.SatelliteType_SATELLITE_TYPE_TEAM, "6f1c8a52-3c1e-4a8e-9d0f-6a1f2b3c4d5e")
	srv.SetNextHeartbeat(10 * time.Millisecond)
	cfg := testConfig(t, srv)

	errc := make(chan error, 1)
	go func() { errc <- run(t.Context(), cfg, testLogger(t)) }()
	srv.Wait(t.Context(), "a heartbeat", 5*time.Second, func() bool { return len(srv.Heartbeats()) > 0 })
	srv.Revoke()

	select {
	case err := <-errc:
		if !errors.Is(err, backend.ErrKeyRefused) || !strings.Contains(err.Error(), cfg.StateDir) {
			t.Fatalf("run = %v, want ErrKeyRefused naming the state directory", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("run kept going with a refused key")
	}
}

// TestRunIsolation starts satellites of both types with each kind of isolation: a global one refuses to run
// servers unisolated outside a development setup, saying what to do; the others run and report their
// isolation in heartbeats.
func TestRunIsolation(t *testing.T) {
	t.Parallel()
	hasBwrap := func() bool { _, err := exec.LookPath("bwrap"); return err == nil }
	if err := aptget.Install(t.Context(), nil, "bubblewrap", hasBwrap); err != nil {
		t.Fatalf("bwrap not found (%v): install it (e.g. `sudo apt-get install bubblewrap`)", err)
	}
	const team = "6f1c8a52-3c1e-4a8e-9d0f-6a1f2b3c4d5e"
	for _, tc := range []struct {
		name    string
		typ     satellitev1.SatelliteType
		sandbox string
		dev     bool
		want    satellitev1.Isolation
		wantErr string
	}{
		{"global, direct", satellitev1.SatelliteType_SATELLITE_TYPE_GLOBAL, "direct", false, 0, "set ORRERY_DEV=true for a development setup"},
		{"global, direct, development", satellitev1.SatelliteType_SATELLITE_TYPE_GLOBAL, "direct", true, satellitev1.Isolation_ISOLATION_DIRECT, ""},
		{"team, direct", satellitev1.SatelliteType_SATELLITE_TYPE_TEAM, "direct", false, satellitev1.Isolation_ISOLATION_DIRECT, ""},
		// The test installs bubblewrap where it may (and fails where it cannot), so auto finds it.
		{"global, auto", satellitev1.SatelliteType_SATELLITE_TYPE_GLOBAL, "auto", false, satellitev1.Isolation_ISOLATION_BWRAP, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := backendtest.New(t)
			teamID := ""
			if tc.typ == satellitev1.SatelliteType_SATELLITE_TYPE_TEAM {
				teamID = team
			}
			srv.AddToken(testToken, tc.typ, teamID)
			srv.SetConfiguration("v1")
			srv.SetNextHeartbeat(10 * time.Millisecond)
			cfg := testConfig(t, srv)
			cfg.Sandbox, cfg.Dev = tc.sandbox, tc.dev

			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			errc := make(chan error, 1)
			go func() { errc <- run(ctx, cfg, testLogger(t)) }()
			if tc.wantErr != "" {
				select {
				case err := <-errc:
					if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
						t.Fatalf("run = %v, want an error saying %q", err, tc.wantErr)
					}
				case <-time.After(10 * time.Second):
					t.Fatal("a global satellite without isolation kept running")
				}
				if n := len(srv.Heartbeats()); n != 0 {
					t.Errorf("it sent %d heartbeats", n)
				}
				return
			}
			srv.Wait(t.Context(), "a heartbeat", 10*time.Second, func() bool { return len(srv.Heartbeats()) > 0 })
			if got := srv.Heartbeats()[0].GetSystem().GetIsolation(); got != tc.want {
				t.Errorf("heartbeat reports isolation %v, want %v", got, tc.want)
			}
			cancel()
			if err := <-errc; err != nil {
				t.Fatalf("run after cancel = %v, want nil", err)
			}
		})
	}
}

func TestRunWithoutTokenOrIdentity(t *testing.T) {
	t.Parallel()
	srv := backendtest.New(t)
	cfg := testConfig(t, srv)
	cfg.RegistrationToken = ""
	err := run(t.Context(), cfg, testLogger(t))
	if err == nil || !strings.Contains(err.Error(), "set ORRERY_REGISTRATION_TOKEN") {
		t.Fatalf("run = %v, want an error saying to set ORRERY_REGISTRATION_TOKEN", err)
	}
}

// TestRunRunsMCPServers runs a satellite whose configuration holds a real stdio MCP server: the server comes
// online, its status and tools reach the control plane as events, heartbeats describe its process, a restart
// command restarts it, and nothing of it survives the satellite's shutdown.
func TestRunRunsMCPServers(t *testing.T) {
	t.Parallel()
	srv := backendtest.New(t)
	srv.AddToken(testToken, satellitev1.SatelliteType_SATELLITE_TYPE_GLOBAL, "")
	srv.SetNextHeartbeat(20 * time.Millisecond)
	command, args := mcptest.Everything(t)
	in := &satellitev1.Instance{
		Id: "everything-platform-ada-1", ContentHash: "h1", InstallationId: uuid.NewString(), TeamId: uuid.NewString(),
		UserId: uuid.NewString(), ServerSlug: "everything", ToolPrefix: "everything", Transport: satellitev1.Transport_TRANSPORT_STDIO,
		Command: command, Args: args,
	}
	srv.SetConfiguration("v1", in)
	cfg := testConfig(t, srv)
	cfg.EventFlushDelay = 10 * time.Millisecond

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- run(ctx, cfg, testLogger(t)) }()

	var pid int32
	srv.Wait(t.Context(), "a heartbeat with the server online", 30*time.Second, func() bool {
		hbs := srv.Heartbeats()
		if len(hbs) == 0 {
			return false
		}
		for _, p := range hbs[len(hbs)-1].GetProcesses() {
			if p.GetStatus() == satellitev1.InstanceStatus_INSTANCE_STATUS_ONLINE && p.GetPid() > 0 && p.GetMemoryBytes() > 0 {
				pid = p.GetPid()
				return true
			}
		}
		return false
	})
	srv.Wait(t.Context(), "status and tool events", 10*time.Second, func() bool {
		var online, tools bool
		for _, ev := range srv.Events() {
			online = online || ev.GetStatusChanged().GetStatus() == satellitev1.InstanceStatus_INSTANCE_STATUS_ONLINE
			tools = tools || len(ev.GetToolsDiscovered().GetTools()) > 0
		}
		return online && tools
	})

	restart := &satellitev1.Command{Id: uuid.NewString(), Action: &satellitev1.Command_Restart{Restart: &satellitev1.RestartAction{
		Instances: &satellitev1.InstanceSelector{Target: &satellitev1.InstanceSelector_InstanceId{InstanceId: in.GetId()}},
		Reason:    satellitev1.RestartReason_RESTART_REASON_MANUAL_RESTART,
	}}}
	srv.Enqueue(restart)
	srv.Wait(t.Context(), "the restart result", 30*time.Second, func() bool { return len(srv.Reports()) == 1 })
	report := srv.Reports()[0]
	if outcomes := report.GetOutcomes(); report.GetResult() != satellitev1.CommandResult_COMMAND_RESULT_COMPLETED ||
		len(outcomes) != 1 || outcomes[0].GetStatus() != satellitev1.InstanceStatus_INSTANCE_STATUS_ONLINE {
		t.Errorf("restart reported %v %s: %v", report.GetResult(), report.GetError(), outcomes)
	}
	if sandbox.ProcessAlive(int(pid)) {
		t.Errorf("the server's old process %d survived the restart", pid)
	}
	var newPid int
	srv.Wait(t.Context(), "a heartbeat with the new process", 10*time.Second, func() bool {
		hbs := srv.Heartbeats()
		for _, p := range hbs[len(hbs)-1].GetProcesses() {
			if p.GetPid() > 0 && p.GetPid() != pid {
				newPid = int(p.GetPid())
				return true
			}
		}
		return false
	})

	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("run after cancel = %v, want nil", err)
	}
	if sandbox.ProcessAlive(newPid) || sandbox.GroupAlive(newPid) {
		t.Errorf("the server (pid %d) survived the satellite's shutdown", newPid)
	}
}
