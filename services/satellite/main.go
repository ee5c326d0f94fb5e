// Command satellite is Orrery's edge worker. It dials out to the control plane, registers once with a
// registration token, then sends heartbeats, long-polls for commands and keeps its desired configuration
// in sync. It serves /healthz and /readyz on its listen address.
//
// Configuration comes from the environment (ORRERY_CONTROL_PLANE_URL, ORRERY_REGISTRATION_TOKEN,
// ORRERY_SATELLITE_NAME, ORRERY_STATE_DIR, ORRERY_SATELLITE_LISTEN, ORRERY_SATELLITE_PUBLIC_URL,
// ORRERY_LOG_FORMAT, ORRERY_LOG_LEVEL) or the matching flags; run with -h for the list.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/orrery/orrery/internal/logging"
)

// buildVersion is set at link time: -ldflags "-X main.buildVersion=v1.2.3".
var buildVersion = ""

func main() {
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

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err = run(ctx, cfg, logger)
	stop()
	if err != nil {
		logger.Error("satellite stopped", "error", err)
		os.Exit(1)
	}
}

// version is the link-time version, else the module version go install recorded, else "dev".
func version() string {
	if buildVersion != "" {
		return buildVersion
	}
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" && info.Main.Version != "(devel)" {
		return info.Main.Version
	}
	return "dev"
}
