// Command satellite is Orrery's edge worker. It dials out to the control plane, registers once with a
// registration token, then sends heartbeats, long-polls for commands and keeps its desired configuration
// in sync, running the MCP servers that configuration asks for. It serves /healthz and /readyz on its listen
// address, and Prometheus metrics at /metrics on a listen address of their own (ORRERY_METRICS_LISTEN).
//
// Configuration comes from the environment (ORRERY_CONTROL_PLANE_URL, ORRERY_REGISTRATION_TOKEN,
// ORRERY_SATELLITE_NAME, ORRERY_STATE_DIR, ORRERY_SATELLITE_LISTEN, ORRERY_SATELLITE_PUBLIC_URL,
// ORRERY_LOG_FORMAT, ORRERY_LOG_LEVEL, ORRERY_MCP_IDLE_TIMEOUT, ORRERY_SANDBOX, ORRERY_SANDBOX_READ_ONLY,
// ORRERY_DEV) or the matching flags; run with -h for the list.
//
// Stdio MCP servers run in a bubblewrap sandbox wherever bubblewrap works (package bubblewrap). A global
// satellite runs many teams' code and refuses to run it without isolation unless ORRERY_DEV=true; a team
// satellite may, with a warning.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/orrery/orrery/internal/buildinfo"
	"github.com/orrery/orrery/internal/logging"
	"github.com/orrery/orrery/internal/telemetry"
	"github.com/orrery/orrery/services/satellite/internal/heapfloor"
	"github.com/orrery/orrery/services/satellite/internal/selfupdate"
)

func main() {
	if marker := os.Getenv(selfupdate.EnvWatchdog); marker != "" {
		// Started by an update from the previous binary, to roll back to it should the new one fail.
		logger, _ := logging.New(os.Stderr, os.Getenv("ORRERY_LOG_FORMAT"), "info")
		if logger == nil {
			logger, _ = logging.New(os.Stderr, "auto", "info")
		}
		if err := selfupdate.RunWatchdog(logger, marker); err != nil {
			logger.Error("update watchdog failed", "error", err)
			os.Exit(1)
		}
		return
	}
	// Before anything can start a process: the descriptors an update passed down must not leak into one.
	inherited, err := selfupdate.TakeInherited()
	if err != nil {
		fmt.Fprintf(os.Stderr, "satellite: %v\n", err)
		os.Exit(2)
	}
	cfg, err := loadConfig(os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "satellite: %v\n", err)
		os.Exit(2)
	}
	logger, err := logging.New(os.Stderr, cfg.LogFormat, cfg.LogLevel)
	if err != nil {
		fmt.Fprintf(os.Stderr, "satellite: %v\n", err)
		os.Exit(2)
	}
	cfg.inherited = inherited
	if inherited.Listener != nil {
		cfg.listener = inherited.Listener
	}

	// The GC percent is the process's, so main sets it rather than run, which tests call in parallel.
	stopFloor := heapfloor.Start(int64(cfg.GCHeapFloorMiB) << 20)
	defer stopFloor()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	stopTracing, err := telemetry.Setup(ctx, "orrery-satellite", buildinfo.Version())
	if err != nil {
		fmt.Fprintf(os.Stderr, "satellite: %v\n", err)
		os.Exit(2)
	}
	err = run(ctx, cfg, logger)
	_ = stopTracing(context.WithoutCancel(ctx))
	stop()
	if restart, ok := errors.AsType[*selfupdate.Restart](err); ok {
		err = restart.Exec()
	}
	if err != nil {
		logger.Error("satellite stopped", "error", err)
		os.Exit(1)
	}
}
