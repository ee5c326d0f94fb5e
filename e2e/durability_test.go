package e2e_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/orrery/orrery/e2e"
	adminv1 "github.com/orrery/orrery/gen/orrery/admin/v1"
	"github.com/orrery/orrery/gen/orrery/admin/v1/adminv1connect"
)

// TestAcknowledgedWritesSurviveKill writes through a development control plane, which keeps its data in
// the private PostgreSQL, kills it with SIGKILL in the middle of the writes (its PostgreSQL goes down with
// it), and starts it again on the same data: every write that was answered must be there.
func TestAcknowledgedWritesSurviveKill(t *testing.T) {
	t.Parallel()
	dataDir, err := os.MkdirTemp("", "orrery-durable-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dataDir) })
	// The private PostgreSQL runs as the postgres user when the tests run as root; it must reach its files.
	if err := os.Chmod(dataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	start := func(run string) *e2e.Process {
		proc := e2e.StartProcess(t, "controlplane -dev "+run, e2e.Binary(t, "controlplane"),
			[]string{"-dev", "-data-dir", dataDir, "-listen", addr, "-log-format", "json"}, nil)
		e2e.WaitFor(t, 2*time.Minute, "the control plane to be ready", func() error {
			if proc.Exited() {
				t.Fatalf("the control plane exited:\n%s", proc.Output())
			}
			return e2e.HTTPOK("http://" + addr + "/readyz")
		})
		return proc
	}
	proc := start("before the kill")
	raw, err := os.ReadFile(filepath.Join(dataDir, "dev-secrets.json"))
	if err != nil {
		t.Fatal(err)
	}
	var secrets struct {
		AdminToken string `json:"admin_token"`
	}
	if err := json.Unmarshal(raw, &secrets); err != nil {
		t.Fatal(err)
	}
	admin := adminv1connect.NewAdminServiceClient(http.DefaultClient, "http://"+addr,
		connect.WithInterceptors(connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
			return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
				req.Header().Set("Authorization", "Bearer "+secrets.AdminToken)
				return next(ctx, req)
			}
		})))

	// Writers go on until the process dies; the kill comes once enough writes were answered, so it lands
	// among writes in flight.
	const answeredBeforeKill = 60
	var (
		mu       sync.Mutex
		answered []string
		wg       sync.WaitGroup
	)
	killed := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			for {
				resp, err := admin.CreateRegistrationToken(t.Context(), connect.NewRequest(&adminv1.CreateRegistrationTokenRequest{
					Name: "durable", Scope: adminv1.TokenScope_TOKEN_SCOPE_GLOBAL, Ttl: durationpb.New(time.Hour),
				}))
				if err != nil {
					return // the process is gone
				}
				mu.Lock()
				answered = append(answered, resp.Msg.RegistrationToken.Id)
				if len(answered) == answeredBeforeKill {
					proc.Signal(t, syscall.SIGKILL)
					close(killed)
				}
				mu.Unlock()
			}
		})
	}
	select {
	case <-killed:
	case <-time.After(time.Minute):
		t.Fatalf("%d writes answered in a minute, want %d", len(answered), answeredBeforeKill)
	}
	wg.Wait()
	proc.Wait(t, 10*time.Second)

	// The killed server's PostgreSQL dies with it, and may take a moment to.
	e2e.WaitFor(t, 30*time.Second, "the killed control plane's PostgreSQL to exit", func() error {
		if _, err := os.Stat(filepath.Join(dataDir, "postgres", "postmaster.pid")); err == nil {
			return errors.New("postmaster.pid is still there")
		}
		return nil
	})
	after := start("after the kill")
	defer after.Stop(t)
	stored := map[string]bool{}
	for pageToken := ""; ; {
		resp, err := admin.ListRegistrationTokens(t.Context(), connect.NewRequest(&adminv1.ListRegistrationTokensRequest{
			PageSize: 500, PageToken: pageToken,
		}))
		if err != nil {
			t.Fatal(err)
		}
		for _, tok := range resp.Msg.RegistrationTokens {
			stored[tok.Id] = true
		}
		if pageToken = resp.Msg.NextPageToken; pageToken == "" {
			break
		}
	}
	var lost []string
	for _, id := range answered {
		if !stored[id] {
			lost = append(lost, id)
		}
	}
	if len(lost) > 0 {
		t.Fatalf("%d of %d answered writes are gone after the kill, such as %s", len(lost), len(answered), lost[0])
	}
	t.Logf("all %d answered writes survived the kill (%d stored)", len(answered), len(stored))
}
