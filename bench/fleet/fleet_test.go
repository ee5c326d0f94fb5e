package main

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/orrery/orrery/e2e"
)

func TestMain(m *testing.M) {
	serveBareIfAsked()
	os.Exit(m.Run())
}

// TestSmallFleet runs the load generator against a real control plane with a handful of satellites: every
// command arrives, nothing fails, and the table names every figure.
func TestSmallFleet(t *testing.T) {
	t.Parallel()
	res, err := Run(t.Context(), Config{
		Satellites: 20, ControlPlane: e2e.Binary(t, "controlplane"), Commands: 20,
		Throughput: time.Second, Workers: 4, Idle: time.Second,
	}, t.Output())
	if err != nil {
		t.Fatal(err)
	}
	var table strings.Builder
	res.Print(&table)
	t.Logf("\n%s", table.String())
	if len(res.Dispatch) != 20 || res.Lost != 0 {
		t.Errorf("%d of 20 commands arrived, %d lost", len(res.Dispatch), res.Lost)
	}
	if res.Throughput <= 0 || res.Failures != 0 || res.PollErrors != 0 {
		t.Errorf("throughput %.0f req/s, %d failed, %d long polls failed", res.Throughput, res.Failures, res.PollErrors)
	}
	if res.RSS <= 0 || res.PGConnections <= 0 || res.PGConnections >= 20 {
		t.Errorf("RSS %d bytes, %d PostgreSQL connections for 20 satellites: want some memory and a pool", res.RSS, res.PGConnections)
	}
	if c := res.Ceiling; c == nil || c.Throughput <= 0 || c.Failures != 0 || c.ServerCPUPerRequest <= 0 {
		t.Errorf("ceiling %+v: want requests answered, none failed, the server's CPU measured", c)
	}
	for _, want := range []string{"dispatch latency", "throughput", "PostgreSQL connections", "replica RSS", "replica / PostgreSQL / load generator", "empty Connect handler"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q", want)
		}
	}
}
