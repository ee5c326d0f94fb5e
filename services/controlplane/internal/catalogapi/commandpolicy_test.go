package catalogapi_test

import (
	"testing"

	"github.com/orrery/orrery/services/controlplane/internal/catalogapi"
)

func TestCommandPolicyAllows(t *testing.T) {
	t.Parallel()
	p, err := catalogapi.NewCommandPolicy([]string{"npx", " uvx ", "bin/tool", "/opt/mcp/", "/srv//servers/../mcp/"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		command string
		want    bool
	}{
		{"npx", true},
		{"uvx", true},                     // the entry's spaces are the operator's, trimmed
		{"sh", false},                     // a bare name that is not listed
		{"/usr/bin/npx", false},           // a listed name allows only itself, not a path ending in it
		{"/opt/mcp/server", true},         // under an allowed directory
		{"/opt/mcp/sub/dir/server", true}, // deeper under it
		{"/opt/mcp/./server", true},       // cleaned before judging
		{"/opt/mcp/../../bin/sh", false},  // .. climbs out
		{"/opt/mcp/../mcp-evil/x", false}, // a sibling sharing the prefix
		{"/opt/mcp", false},               // the directory itself
		{"/opt/mcpx/server", false},       // a directory whose name starts the same
		{"/srv/mcp/server", true},         // a configured directory is cleaned too
		{"./server", false},               // relative paths are never under a directory
		{"bin/x", false},                  // relative, not listed
		{"bin/tool", true},                // relative, listed exactly
		{"npx ", false},                   // trailing space: a different program
		{" npx", false},                   // leading space
		{"", false},                       // nothing to run
		{"/bin/sh", false},                // absolute, under no allowed directory
	} {
		if got := p.Allows(tc.command); got != tc.want {
			t.Errorf("Allows(%q) = %v, want %v", tc.command, got, tc.want)
		}
	}
}

func TestCommandPolicyZeroAllowsAny(t *testing.T) {
	t.Parallel()
	var p catalogapi.CommandPolicy
	for _, command := range []string{"/bin/sh", "npx", ""} {
		if !p.Allows(command) {
			t.Errorf("zero policy refuses %q", command)
		}
	}
	if p.String() != "any command" {
		t.Errorf("String() = %q", p.String())
	}
}

func TestNewCommandPolicyRefuses(t *testing.T) {
	t.Parallel()
	for _, entries := range [][]string{
		nil,
		{"", " "},
		{"opt/mcp/"}, // a directory must be absolute
	} {
		if _, err := catalogapi.NewCommandPolicy(entries); err == nil {
			t.Errorf("NewCommandPolicy(%q) accepted", entries)
		}
	}
}

func TestDefaultTemplateCommands(t *testing.T) {
	t.Parallel()
	p, err := catalogapi.NewCommandPolicy(catalogapi.DefaultTemplateCommands)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Allows("npx") || p.Allows("docker") || p.Allows("/bin/sh") {
		t.Errorf("default policy %v", p)
	}
}
