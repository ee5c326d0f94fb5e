package main

import (
	"flag"
	"path/filepath"
	"slices"
	"testing"

	"github.com/orrery/orrery/internal/configref"
	"github.com/orrery/orrery/internal/telemetry"
)

var update = flag.Bool("update", false, "rewrite the control plane's section of docs/configuration.md")

// TestConfigurationReference keeps docs/configuration.md in step with the flags and variables the control
// plane reads.
func TestConfigurationReference(t *testing.T) {
	fs := flag.NewFlagSet("controlplane", flag.ContinueOnError)
	defineFlags(fs, &config{}, &rawFlags{}, func(string) string { return "" })
	ref := configref.Reference{
		Program: "controlplane",
		Summary: "`controlplane [flags] [command]` runs a control-plane replica. Every flag can be set by its environment " +
			"variable; a flag given on the command line wins.",
		Flags: fs,
		Env:   slices.Concat(secretEnv, telemetry.Environment),
	}
	if err := configref.Check(ref, filepath.Join("..", "..", "docs", "configuration.md"), *update, "config.go"); err != nil {
		t.Fatal(err)
	}
}
