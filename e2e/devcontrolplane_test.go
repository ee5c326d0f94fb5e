package e2e_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/orrery/orrery/e2e"
)

// devControlPlane is a control plane in development mode, keeping its data in its private PostgreSQL under
// a data directory, started again on the same address and data after a stop or a kill.
type devControlPlane struct {
	dataDir, addr string
	proc          *e2e.Process
	runs          int
}

func newDevControlPlane(t *testing.T) *devControlPlane {
	t.Helper()
	return &devControlPlane{dataDir: newDataDir(t), addr: freeAddr(t)}
}

// newDataDir makes a data directory for a development control plane, removed at cleanup.
func newDataDir(t *testing.T) string {
	t.Helper()
	dataDir, err := os.MkdirTemp("", "orrery-dev-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dataDir) })
	// The private PostgreSQL runs as the postgres user when the tests run as root; it must reach its files.
	if err := os.Chmod(dataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dataDir
}

// start starts the control plane and waits until it is ready.
func (d *devControlPlane) start(t *testing.T) {
	t.Helper()
	d.runs++
	d.proc = e2e.StartProcess(t, fmt.Sprintf("controlplane -dev #%d", d.runs), e2e.Binary(t, "controlplane"),
		[]string{"-dev", "-data-dir", d.dataDir, "-listen", d.addr, "-log-format", "json"}, nil)
	e2e.WaitFor(t, 2*time.Minute, "the control plane to be ready", func() error {
		if d.proc.Exited() {
			t.Fatalf("the control plane exited:\n%s", d.proc.Output())
		}
		return e2e.HTTPOK(d.url() + "/readyz")
	})
}

func (d *devControlPlane) url() string { return "http://" + d.addr }

// adminToken is the admin token development mode generated and keeps in the data directory.
func (d *devControlPlane) adminToken(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(d.dataDir, "dev-secrets.json"))
	if err != nil {
		t.Fatal(err)
	}
	var secrets struct {
		AdminToken string `json:"admin_token"`
	}
	if err := json.Unmarshal(raw, &secrets); err != nil {
		t.Fatal(err)
	}
	return secrets.AdminToken
}

// databaseURL reaches the private PostgreSQL's orrery database through the socket in its data directory.
func (d *devControlPlane) databaseURL() string {
	q := url.Values{"host": {filepath.Join(d.dataDir, "postgres")}, "port": {"5432"}, "sslmode": {"disable"}}
	return (&url.URL{Scheme: "postgres", User: url.User("postgres"), Path: "/orrery", RawQuery: q.Encode()}).String()
}

// kill kills the control plane with SIGKILL and waits until its PostgreSQL, which dies with it, is gone.
func (d *devControlPlane) kill(t *testing.T) {
	t.Helper()
	d.proc.Signal(t, sigkill)
	d.proc.Wait(t, stopTimeoutKill)
	e2e.WaitFor(t, 30*time.Second, "the killed control plane's PostgreSQL to exit", func() error {
		if _, err := os.Stat(filepath.Join(d.dataDir, "postgres", "postmaster.pid")); err == nil {
			return errors.New("postmaster.pid is still there")
		}
		return nil
	})
}
