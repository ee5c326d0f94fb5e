// Command fleet measures what a fleet of satellites costs one control-plane replica, from a process of its
// own. It starts a private PostgreSQL and a control plane on it (or uses one already running), creates the
// satellites in bulk, and holds every one of them long-polling over its own HTTP/2 (h2c) connection, as
// satellites do. Then it prints the replica's memory and CPU, the PostgreSQL connections in use, the dispatch
// latency of commands while the whole fleet is connected, and the Heartbeat + PollCommands throughput; and
// last the same throughput against an empty Connect handler, the ceiling of the HTTP stack on this machine.
//
//	go build -o bin/ ./services/controlplane && go run ./bench/fleet -satellites 10000
//
// `go tool task bench-fleet` does exactly that.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	serveBareIfAsked()
	cfg := Config{}
	flag.IntVar(&cfg.Satellites, "satellites", 10_000, "satellites to hold long-polling")
	flag.StringVar(&cfg.ControlPlane, "controlplane", "bin/controlplane", "control-plane binary to start")
	flag.IntVar(&cfg.Commands, "commands", 1000, "commands whose dispatch latency is measured, one after another")
	flag.DurationVar(&cfg.Throughput, "throughput", 10*time.Second, "how long to measure Heartbeat + PollCommands throughput")
	flag.IntVar(&cfg.Workers, "workers", 64, "concurrent callers in the throughput phase")
	flag.DurationVar(&cfg.ThroughputPollWait, "throughput-poll-wait", time.Millisecond, "how long each poll of the throughput phase may be held; 0: polls that do not wait, and read the database every time")
	flag.DurationVar(&cfg.Idle, "idle", 30*time.Second, "how long the connected fleet idles before the measurements, measuring the replica's CPU")
	flag.IntVar(&cfg.PoolMaxConns, "pool-max-conns", 0, "the replica's database pool size; 0 keeps its default")
	flag.StringVar(&cfg.ReplicaMemoryLimit, "replica-memory-limit", "", `the replica's soft memory limit (GOMEMLIMIT, e.g. "800MiB"); empty keeps the environment's`)
	flag.BoolVar(&cfg.NoCeiling, "no-ceiling", false, "skip the throughput phase against an empty Connect handler")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := Run(ctx, cfg, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fleet:", err)
		os.Exit(1)
	}
	res.Print(os.Stdout)
}
