package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/durationpb"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/gen/orrery/satellite/v1/satellitev1connect"
)

// The ceiling is the same fleet and the same throughput phase against a Connect server whose Heartbeat
// and PollCommands do nothing (a poll only waits out its wait): no authentication, interceptors, database
// or validation. It is what net/http's HTTP/2 server and Connect cost on this machine with that many
// connections, which no work in the replica's handlers can get under. The server is this program run
// again with bareServerEnv set, so its CPU is measured apart from the load generator's.

// bareServerEnv, when set, makes the program serve the bare SatelliteService instead: see serveBareIfAsked.
const bareServerEnv = "ORRERY_FLEET_BARE_SERVER"

// Ceiling is what the throughput phase measured against the bare server.
type Ceiling struct {
	Throughput float64
	Failures   int64
	// ServerCPUPerRequest and GeneratorCPUPerRequest are CPU time per request of the bare server and of
	// this process.
	ServerCPUPerRequest, GeneratorCPUPerRequest time.Duration
}

// serveBareIfAsked serves the bare SatelliteService on a free loopback port, with HTTP/1 and h2c as the
// control plane serves, printing its URL on the first line of its output, and does not return, when
// bareServerEnv is set; otherwise it returns at once.
func serveBareIfAsked() {
	if os.Getenv(bareServerEnv) == "" {
		return
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "bare server:", err)
		os.Exit(1)
	}
	mux := http.NewServeMux()
	// Small messages uncompressed, as the control plane serves them.
	mux.Handle(satellitev1connect.NewSatelliteServiceHandler(bareSatelliteService{}, connect.WithCompressMinBytes(1024)))
	srv := &http.Server{Handler: mux, Protocols: new(http.Protocols), ReadHeaderTimeout: 10 * time.Second}
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	fmt.Printf("http://%s\n", l.Addr())
	fmt.Fprintln(os.Stderr, "bare server:", srv.Serve(l))
	os.Exit(1)
}

// bareSatelliteService answers heartbeats at once and holds polls for their wait, with no commands.
type bareSatelliteService struct {
	satellitev1connect.UnimplementedSatelliteServiceHandler
}

func (bareSatelliteService) Heartbeat(context.Context, *connect.Request[satellitev1.HeartbeatRequest]) (*connect.Response[satellitev1.HeartbeatResponse], error) {
	return connect.NewResponse(&satellitev1.HeartbeatResponse{NextHeartbeat: durationpb.New(30 * time.Second), PollsCarryHeartbeats: true}), nil
}

func (bareSatelliteService) PollCommands(ctx context.Context, req *connect.Request[satellitev1.PollCommandsRequest]) (*connect.Response[satellitev1.PollCommandsResponse], error) {
	wait := time.NewTimer(req.Msg.Wait.AsDuration())
	defer wait.Stop()
	select {
	case <-wait.C:
		return connect.NewResponse(&satellitev1.PollCommandsResponse{NextPoll: durationpb.New(30 * time.Second)}), nil
	case <-ctx.Done():
		return nil, connect.NewError(connect.CodeCanceled, ctx.Err())
	}
}

// measureCeiling starts the bare server, holds cfg.Satellites satellites long-polling it and runs the
// throughput phase against it.
func measureCeiling(ctx context.Context, cfg Config) (Ceiling, error) {
	var c Ceiling
	// The replica's fleet is garbage now; collected here, it does not weigh on this fleet's figures.
	runtime.GC()
	self, err := os.Executable()
	if err != nil {
		return c, err
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), bareServerEnv+"=1")
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return c, err
	}
	if err := cmd.Start(); err != nil {
		return c, fmt.Errorf("start the bare server: %w", err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		return c, errors.New("the bare server did not say where it serves")
	}
	url := line[:len(line)-1]

	protocols := new(http.Protocols)
	protocols.SetUnencryptedHTTP2(true)
	sims := make([]*sim, cfg.Satellites)
	for i := range sims {
		sims[i] = newSim(fmt.Sprint(i), url, protocols, cfg.PollWait)
		sims[i].log = os.Stderr
	}
	fleet := startFleet(ctx, sims)
	defer fleet.stop()
	// Every satellite has sent its first poll, and the server has had a moment to take the last ones.
	for fleet.polls.Load() < int64(len(sims)) {
		if ctx.Err() != nil {
			return c, ctx.Err()
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second)

	pid := cmd.Process.Pid
	before, err := readProcStats(pid)
	if err != nil {
		return c, err
	}
	selfBefore := selfCPU()
	requests, failures := measureThroughput(ctx, sims, cfg.Workers, cfg.Throughput, cfg.ThroughputPollWait)
	after, err := readProcStats(pid)
	if err != nil {
		return c, err
	}
	c.Throughput, c.Failures = float64(requests)/cfg.Throughput.Seconds(), failures
	if requests > 0 {
		c.ServerCPUPerRequest = (after.cpu - before.cpu) / time.Duration(requests)
		c.GeneratorCPUPerRequest = (selfCPU() - selfBefore) / time.Duration(requests)
	}
	return c, nil
}
