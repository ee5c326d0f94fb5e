package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/services/satellite/internal/backend"
	"github.com/orrery/orrery/services/satellite/internal/backendtest"
)

const testToken = "orreg_run-test-registration-token"

func testConfig(t *testing.T, srv *backendtest.Server) Config {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
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
		listener:          ln,
	}
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
	srv := backendtest.New(t)
	srv.AddToken(testToken, satellitev1.SatelliteType_SATELLITE_TYPE_GLOBAL, "")
	srv.SetConfiguration("v1")
	srv.SetNextHeartbeat(10 * time.Millisecond)
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

	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("run after cancel = %v, want nil", err)
	}
	if _, err := net.DialTimeout("tcp", cfg.listener.Addr().String(), time.Second); err == nil {
		t.Error("HTTP listener still open after run returned")
	}
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
