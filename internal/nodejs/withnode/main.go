// Command withnode runs a command with the project's pinned Node.js first on PATH, so that npm, npx and
// scripts starting with "#!/usr/bin/env node" all run on it:
//
//	go run ./internal/nodejs/withnode npm ci --prefix web
package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/orrery/orrery/internal/nodejs"
)

func main() {
	if err := run(context.Background(), os.Args[1:]); err != nil {
		if exit, ok := err.(*exec.ExitError); ok {
			os.Exit(exit.ExitCode())
		}
		fmt.Fprintln(os.Stderr, "withnode:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: withnode COMMAND [ARG...]")
	}
	node, err := nodejs.Node22(ctx)
	if err != nil {
		return err
	}
	path := filepath.Dir(node) + string(os.PathListSeparator) + os.Getenv("PATH")
	if err := os.Setenv("PATH", path); err != nil {
		return err
	}
	command, err := exec.LookPath(args[0])
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, command, args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	return cmd.Run()
}
