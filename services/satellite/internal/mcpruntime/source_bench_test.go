package mcpruntime_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/services/satellite/internal/desired"
	"github.com/orrery/orrery/services/satellite/internal/mcpruntime"
	"github.com/orrery/orrery/services/satellite/internal/sandbox"
)

// BenchmarkSourceNode measures the Node fixture (build/testdata/node-server, on @modelcontextprotocol/sdk)
// deployed from source through the runtime: a cold build (npm ci, npm run build) to the first answered
// call, the same archive again from the build cache, and blue/green redeploys to new archives, each until
// a call answers from the new version. npm's own cache is the machine's, so "cold" means a new build
// directory, not an empty npm cache.
//
//	go test -run '^$' -bench SourceNode -benchtime 3x ./services/satellite/internal/mcpruntime/
func BenchmarkSourceNode(b *testing.B) {
	if _, err := exec.LookPath("npm"); err != nil {
		b.Skip("npm not found")
	}
	b.Run("direct", func(b *testing.B) { benchmarkSourceNode(b, sandbox.Direct{}) })
	b.Run("bwrap", func(b *testing.B) {
		path, err := sandbox.FindBwrap(b.Context(), nil, false)
		if err != nil {
			b.Skip("bubblewrap not found")
		}
		driver, err := sandbox.NewBwrap(nil, sandbox.BwrapConfig{Path: path, HomeRoot: b.TempDir()})
		if err != nil {
			b.Skip(err)
		}
		benchmarkSourceNode(b, driver)
	})
}

func benchmarkSourceNode(b *testing.B, driver sandbox.Driver) {
	src := newSources(b)
	view := desired.New()
	rt, err := mcpruntime.New(slog.New(slog.DiscardHandler), mcpruntime.Config{
		Desired: view, Driver: driver, WorkDir: filepath.Join(b.TempDir(), "instances"),
		Builds: src.builder(b, driver), StartTimeout: 2 * time.Minute, CallStartWait: 10 * time.Minute,
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx) }()
	defer func() { cancel(); <-done }()

	const fixture = "../build/testdata/node-server"
	instance := func(version string) *satellitev1.Instance {
		in := stdioInstance("node", "node", "dist/server.js")
		in.Source = src.pack(b, version+".tar.gz", fixture, "", map[string]string{"VERSION": version})
		in.ContentHash = version
		return in
	}
	// until calls the version tool until it answers want.
	until := func(id, want string) time.Duration {
		start := time.Now()
		for {
			callCtx, stop := context.WithTimeout(ctx, 10*time.Minute)
			session, err := rt.Session(callCtx, id)
			var got string
			if err == nil {
				res, cerr := session.CallTool(callCtx, &mcp.CallToolParams{Name: "version"})
				if cerr == nil {
					got = text(res)
				}
			}
			stop()
			if got == want {
				return time.Since(start)
			}
			if err != nil && !errors.Is(err, mcpruntime.ErrUnknownInstance) { // not yet reconciled
				b.Fatalf("call: %v", err)
			}
			time.Sleep(20 * time.Millisecond) // polling a version change; nothing else says when it lands
		}
	}
	first := instance("v1")
	if _, err := view.Apply([]*satellitev1.Instance{first}); err != nil {
		b.Fatal(err)
	}
	cold := until(first.Id, "v1")

	// The same archive for another instance of the team: the build comes from the cache.
	again := instance("v1")
	again.Source = first.Source
	if _, err := view.Apply([]*satellitev1.Instance{first, again}); err != nil {
		b.Fatal(err)
	}
	cached := until(again.Id, "v1")

	var redeploys time.Duration
	b.ResetTimer()
	for i := range b.N {
		next := instance(fmt.Sprintf("v%d", i+2))
		next.Id = first.Id
		if _, err := view.Apply([]*satellitev1.Instance{next, again}); err != nil {
			b.Fatal(err)
		}
		redeploys += until(first.Id, fmt.Sprintf("v%d", i+2))
	}
	b.ReportMetric(cold.Seconds(), "cold-build-to-first-call-s")
	b.ReportMetric(cached.Seconds(), "cached-build-to-first-call-s")
	b.ReportMetric(redeploys.Seconds()/float64(b.N), "redeploy-s")
}
