package e2e_test

import (
	"net/http"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"

	adminv1 "github.com/orrery/orrery/gen/orrery/admin/v1"
	"github.com/orrery/orrery/gen/orrery/admin/v1/adminv1connect"
)

// TestAcknowledgedWritesSurviveKill writes through a development control plane, which keeps its data in
// the private PostgreSQL, kills it with SIGKILL in the middle of the writes (its PostgreSQL goes down with
// it), and starts it again on the same data: every write that was answered must be there.
func TestAcknowledgedWritesSurviveKill(t *testing.T) {
	t.Parallel()
	dev := newDevControlPlane(t)
	dev.start(t)
	proc := dev.proc
	admin := adminv1connect.NewAdminServiceClient(http.DefaultClient, dev.url(), connect.WithInterceptors(bearerAuth(dev.adminToken(t))))

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
	dev.kill(t) // already killed: this waits for it and its PostgreSQL to be gone
	dev.start(t)
	defer dev.proc.Stop(t)
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
