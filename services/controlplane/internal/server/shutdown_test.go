package server_test

import (
	"context"
	"net"
	"net/http"
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

// TestDrainFailsReadinessBeforeClosing: told to stop, a replica fails /readyz but keeps serving for its
// drain period, asking clients to close their connections, still waking held long polls when a command is
// created on another replica, and only then refuses connections.
func TestDrainFailsReadinessBeforeClosing(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	sat := b.activeSatellite(t, "")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	const drain = 4 * time.Second
	srv, err := server.New(t.Context(), nil, server.Config{
		DatabaseURL: b.dbURL, AdminToken: adminToken, TokenSigner: b.signer, Keyring: b.keyring,
		OAuth: oauth.Config{Issuer: base}, DrainPeriod: drain,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln, 5*time.Second) }()
	b.replicas = append(b.replicas, &replica{srv: srv, url: base})
	poller := b.connect(len(b.replicas)-1, sat.id, sat.apiKey)
	client := &http.Client{Transport: &http.Transport{}}
	get := func(path string) (*http.Response, error) {
		resp, err := client.Get(base + path)
		if err == nil {
			resp.Body.Close()
		}
		return resp, err
	}
	waitFor(t, 30*time.Second, "the replica to be ready", func() bool {
		resp, err := get("/readyz")
		return err == nil && resp.StatusCode == http.StatusOK
	})

	stop()
	stopped := time.Now()
	waitFor(t, drain/2, "/readyz to fail", func() bool {
		resp, err := get("/readyz")
		return err == nil && resp.StatusCode == http.StatusServiceUnavailable
	})
	resp, err := get("/healthz")
	switch {
	case err != nil:
		t.Fatalf("request while draining: %v, want it served", err)
	case resp.StatusCode != http.StatusOK || !resp.Close:
		t.Fatalf("request while draining: %s, close=%v; want 200 asking the client to close the connection",
			resp.Status, resp.Close)
	}
	// A poll held by the draining replica is still woken by a command created on another.
	polled := make(chan []*satellitev1.Command, 1)
	go func() {
		resp, err := poller.client.PollCommands(context.Background(), connect.NewRequest(&satellitev1.PollCommandsRequest{
			Wait: durationpb.New(20 * time.Second),
		}))
		if err != nil {
			t.Errorf("poll while draining: %v", err)
		}
		polled <- resp.Msg.GetCommands()
	}()
	time.Sleep(100 * time.Millisecond) // let the poll reach its wait
	created := b.enqueue(t, 0, sat.id, configure,
		satellitev1.CommandPriority_COMMAND_PRIORITY_IMMEDIATE, time.Minute)
	select {
	case cmds := <-polled:
		if len(cmds) != 1 || cmds[0].Id != created.Command.Id {
			t.Errorf("poll while draining answered %v, want the new command", cmds)
		}
	case <-time.After(drain / 2): // well before the drain ends, when the poll would be answered without it
		t.Error("a command created while the replica drained did not wake the poll it held")
	}
	waitFor(t, drain+5*time.Second, "connections to be refused", func() bool {
		_, err := get("/healthz")
		return err != nil
	})
	if elapsed := time.Since(stopped); elapsed < drain {
		t.Errorf("connections refused %v after the stop, before the drain period of %v ended", elapsed, drain)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
}
