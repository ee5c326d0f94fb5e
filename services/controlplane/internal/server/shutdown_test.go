package server_test

import (
	"context"
	"net"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/services/controlplane/internal/oauth"
	"github.com/orrery/orrery/services/controlplane/internal/server"
)

func TestShutdownAnswersOpenLongPolls(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	sat := b.activeSatellite(t, "")

	// A second replica served by Serve, as in production, on the same database.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(t.Context(), nil, server.Config{
		DatabaseURL: b.dbURL, AdminToken: adminToken, TokenSigner: b.signer, Keyring: b.keyring,
		OAuth: oauth.Config{Issuer: "http://" + ln.Addr().String()},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln, 10*time.Second) }()
	b.replicas = append(b.replicas, &replica{srv: srv, url: "http://" + ln.Addr().String()})
	poller := b.connect(len(b.replicas)-1, sat.id, sat.apiKey)

	type answer struct {
		msg *satellitev1.PollCommandsResponse
		err error
	}
	polled := make(chan answer, 1)
	go func() {
		resp, err := poller.client.PollCommands(t.Context(), connect.NewRequest(&satellitev1.PollCommandsRequest{
			Wait: durationpb.New(20 * time.Second),
		}))
		if err != nil {
			polled <- answer{err: err}
			return
		}
		polled <- answer{msg: resp.Msg}
	}()
	time.Sleep(300 * time.Millisecond) // let the poll reach its wait
	stopped := time.Now()
	stop()
	select {
	case answer := <-polled:
		if answer.err != nil {
			t.Fatalf("open poll at shutdown: %v, want an empty answer", answer.err)
		}
		if !answer.msg.ReplicaDraining || len(answer.msg.Commands) != 0 {
			t.Fatalf("open poll at shutdown answered %v, want no commands and replica_draining", answer.msg)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("open long poll was not answered at shutdown")
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	t.Logf("shutdown with an open poll took %v", time.Since(stopped))
}
