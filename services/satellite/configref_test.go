package main

import (
	"flag"
	"path/filepath"
	"slices"
	"testing"

	"github.com/orrery/orrery/internal/configref"
	"github.com/orrery/orrery/internal/telemetry"
)

var update = flag.Bool("update", false, "rewrite the satellite's section of docs/configuration.md")

// TestConfigurationReference keeps docs/configuration.md in step with the flags and variables the
// satellite reads.
func TestConfigurationReference(t *testing.T) {
	fs := flag.NewFlagSet("satellite", flag.ContinueOnError)
	defineFlags(fs, &Config{}, &rawFlags{})
	ref := configref.Reference{
		Program: "satellite",
		Summary: "`satellite [flags]` runs a satellite. Every flag can be set by its environment variable; a flag given " +
			"on the command line wins.",
		Flags: fs,
		Env:   slices.Concat(secretEnv, telemetry.Environment),
	}
	if err := configref.Check(ref, filepath.Join("..", "..", "docs", "configuration.md"), *update, "config.go"); err != nil {
		t.Fatal(err)
	}
}
