// Command orreryctl drives an Orrery control plane from the terminal: sign in, manage teams, the MCP
// server catalog, installations and instances, and write MCP client configurations. Run
// 'orreryctl --help' for the commands and their exit codes.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/orrery/orrery/services/orreryctl/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.NewApp().Main(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}
