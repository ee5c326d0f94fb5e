package catalogapi

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
)

// DefaultTemplateCommands are the commands team-private stdio templates may run unless the operator says
// otherwise: the runtimes MCP servers are published for (npm, PyPI, Deno and Bun packages). The policy
// picks programs, not what they run: "node -e" or "python3 -c" runs any code a tenant writes, so the
// sandbox (files, network, limits, uid) is the boundary, and this list only keeps out programs that reach
// past it. docker is left out on purpose: on a shared satellite it reaches far beyond the sandbox.
var DefaultTemplateCommands = []string{"npx", "uvx", "node", "python3", "python", "deno", "bun"}

// CommandPolicy decides which commands team-private stdio templates may run. Any signed-in user
// administers a personal team, and its templates run on shared satellites, so which programs they start
// is the operator's choice, not the tenant's. Global templates are written by global admins and are not
// subject to it.
//
// An entry without a trailing slash allows exactly that command, as written (so "npx" allows "npx" but
// not "/usr/bin/npx"). An entry ending in "/" is an absolute directory: any absolute command under it is
// allowed, judged after the command is cleaned, so ".." cannot climb out of it.
//
// The zero CommandPolicy allows any command.
type CommandPolicy struct {
	restricted bool
	entries    []string // as configured, for messages
	names      map[string]bool
	dirs       []string // cleaned, each ending in "/"
}

// NewCommandPolicy returns a policy allowing only the given entries, of which there must be at least one;
// directory entries must be absolute. Blank entries are skipped.
func NewCommandPolicy(allowed []string) (CommandPolicy, error) {
	p := CommandPolicy{restricted: true, names: map[string]bool{}}
	for _, entry := range allowed {
		if entry = strings.TrimSpace(entry); entry == "" {
			continue
		}
		p.entries = append(p.entries, entry)
		if !strings.HasSuffix(entry, "/") {
			p.names[entry] = true
			continue
		}
		if !path.IsAbs(entry) {
			return CommandPolicy{}, fmt.Errorf("directory %q is not absolute", entry)
		}
		p.dirs = append(p.dirs, strings.TrimSuffix(path.Clean(entry), "/")+"/")
	}
	if len(p.entries) == 0 {
		return CommandPolicy{}, errors.New("no commands listed")
	}
	return p, nil
}

// Allows reports whether a template may run command.
func (p CommandPolicy) Allows(command string) bool {
	if !p.restricted {
		return true
	}
	// A command is run as written, so one with surrounding spaces is a different program from the
	// listed one, not a typo to forgive.
	if command == "" || command != strings.TrimSpace(command) {
		return false
	}
	if p.names[command] {
		return true
	}
	if !path.IsAbs(command) {
		return false
	}
	clean := path.Clean(command)
	return slices.ContainsFunc(p.dirs, func(dir string) bool { return strings.HasPrefix(clean, dir) })
}

// String lists the allowed commands as configured, or says that any command is allowed.
func (p CommandPolicy) String() string {
	if !p.restricted {
		return "any command"
	}
	return strings.Join(p.entries, ", ")
}
