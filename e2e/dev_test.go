package e2e_test

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/orrery/orrery/e2e"
	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	"github.com/orrery/orrery/gen/orrery/api/v1/apiv1connect"
)

// freeAddr returns a loopback address no one listens on at the moment, for a process that cannot be handed
// a listener; another process taking the port meanwhile is unlikely.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestDevelopmentMode runs what `go tool task dev` runs, with nothing configured but a data directory and
// free ports: a private PostgreSQL, the control plane and a registered satellite come up, and SIGINT (a
// terminal's Ctrl-C) stops them in moments, the satellite first, so that its last events still arrive.
func TestDevelopmentMode(t *testing.T) {
	t.Parallel()
	dataDir := newDataDir(t)
	cpAddr, satAddr := freeAddr(t), freeAddr(t)
	proc := e2e.StartProcess(t, "controlplane -dev", e2e.Binary(t, "controlplane"), []string{
		"-dev", "-dev-satellite", e2e.Binary(t, "satellite"), "-data-dir", dataDir,
		"-listen", cpAddr, "-dev-satellite-listen", satAddr, "-log-format", "json",
	}, nil)

	e2e.WaitFor(t, 2*time.Minute, "the summary of what runs where", func() error {
		if proc.Exited() {
			t.Fatalf("the control plane exited:\n%s", proc.Output())
		}
		if !strings.Contains(proc.Output(), "Orrery is running.") {
			return errors.New("not yet")
		}
		return nil
	})
	proc.WaitLog(t, 30*time.Second, "the satellite's activation", func(e e2e.LogEntry) bool {
		return e.String("msg") == "satellite status" && e.String("status") == "SATELLITE_STATUS_ACTIVE"
	})
	e2e.WaitFor(t, 10*time.Second, "the satellite to be ready", func() error { return e2e.HTTPOK("http://" + satAddr + "/readyz") })

	// The console is served, and the summary's development user signs in to it.
	raw, err := os.ReadFile(filepath.Join(dataDir, "dev-secrets.json"))
	if err != nil {
		t.Fatal(err)
	}
	var secrets struct {
		ConsolePassword string `json:"console_password"`
	}
	if err := json.Unmarshal(raw, &secrets); err != nil || secrets.ConsolePassword == "" ||
		!strings.Contains(proc.Output(), "sign in as dev@localhost, password "+secrets.ConsolePassword) {
		t.Fatalf("console password %q (%v) not in the summary:\n%s", secrets.ConsolePassword, err, proc.Output())
	}
	if err := e2e.HTTPOK("http://" + cpAddr + "/"); err != nil {
		t.Errorf("console: %v", err)
	}
	if _, err := apiv1connect.NewAccountServiceClient(http.DefaultClient, "http://"+cpAddr).Login(t.Context(), connect.NewRequest(&apiv1.LoginRequest{
		Email: "dev@localhost", Password: secrets.ConsolePassword,
	})); err != nil {
		t.Errorf("sign in as dev@localhost: %v", err)
	}

	begin := time.Now()
	proc.Signal(t, syscall.SIGINT)
	if code := proc.Wait(t, 20*time.Second); code != 0 {
		t.Fatalf("exit status %d after SIGINT, want 0:\n%s", code, proc.Output())
	}
	t.Logf("stopped %v after SIGINT", time.Since(begin).Round(time.Millisecond))
	out := proc.Output()
	satelliteStopped, controlPlaneStopping := strings.Index(out, `"msg":"satellite stopped"`), strings.Index(out, `"msg":"shutting down"`)
	if satelliteStopped < 0 || controlPlaneStopping < satelliteStopped {
		t.Errorf("the satellite must stop (at %d in the output) before the control plane stops serving (at %d)",
			satelliteStopped, controlPlaneStopping)
	}
	if strings.Contains(out, "events lost") {
		t.Error("the satellite lost events at shutdown")
	}
	if e2e.HTTPOK("http://"+satAddr+"/healthz") == nil {
		t.Error("the satellite still serves after the control plane exited")
	}
}

// TestProductionStartNeedsDatabaseURL runs the control plane as an operator would in production, with its
// secrets but no database URL: it must refuse to start, say what to set, and start no PostgreSQL of its own.
func TestProductionStartNeedsDatabaseURL(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	proc := e2e.StartProcess(t, "controlplane", e2e.Binary(t, "controlplane"),
		[]string{"-data-dir", dataDir, "-listen", freeAddr(t)},
		[]string{"ORRERY_ADMIN_TOKEN=" + strings.Repeat("a", 32), "ORRERY_TOKEN_SIGNING_KEY=" + strings.Repeat("k", 32)})
	if code := proc.Wait(t, 30*time.Second); code != 2 {
		t.Fatalf("exit status %d, want 2:\n%s", code, proc.Output())
	}
	if out := proc.Output(); !strings.Contains(out, "ORRERY_DATABASE_URL") {
		t.Errorf("the error does not say what to set:\n%s", out)
	}
	if entries, err := os.ReadDir(dataDir); err != nil || len(entries) > 0 {
		t.Errorf("the data directory holds %d entries (%v), want none", len(entries), err)
	}
}
