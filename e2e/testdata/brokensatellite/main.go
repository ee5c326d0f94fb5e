// Command brokensatellite stands in for a broken satellite release, for the self-update rollback test:
// built with -ldflags "-X main.mode=hang" it starts and never heartbeats; otherwise it fails on start.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// mode is set at build time.
var mode = "exit"

func main() {
	if mode == "hang" {
		fmt.Fprintln(os.Stderr, "brokensatellite: running without ever heartbeating, as a hung release would")
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM)
		<-sig
		os.Exit(0)
	}
	fmt.Fprintln(os.Stderr, "brokensatellite: failing on start, as a broken release would")
	os.Exit(3)
}
