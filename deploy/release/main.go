// Command release builds Orrery's release artifacts: static binaries of the control plane and the satellite
// for each architecture, a Debian package of each service, and SHA256SUMS over all of them.
//
//	go run ./release -version v1.2.3 -out ../dist
//
// It lives in the deploy module so that nfpm and its dependencies stay out of the services' module graph.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, err := loadConfig(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "release:", err)
		os.Exit(2)
	}
	artifacts, err := run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "release:", err)
		os.Exit(1)
	}
	for _, a := range artifacts {
		fmt.Println(a)
	}
}

func loadConfig(args []string) (config, error) {
	fs := flag.NewFlagSet("release", flag.ContinueOnError)
	var c config
	var arches string
	fs.StringVar(&c.Version, "version", "", "version to stamp into the binaries and packages, such as v1.2.3 (git describe output is accepted)")
	fs.StringVar(&c.Out, "out", "dist", "directory the artifacts are written to")
	fs.StringVar(&c.Repo, "repo", "..", "root of the Orrery repository")
	fs.StringVar(&arches, "arch", "amd64,arm64", "comma-separated Linux architectures")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	for a := range strings.SplitSeq(arches, ",") {
		if a = strings.TrimSpace(a); a != "" {
			c.Arches = append(c.Arches, a)
		}
	}
	var err error
	if c.Repo, err = filepath.Abs(c.Repo); err != nil {
		return config{}, err
	}
	return c, nil
}
