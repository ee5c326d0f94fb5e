package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/internal/egress"
	"github.com/orrery/orrery/services/satellite/internal/identity"
	"github.com/orrery/orrery/services/satellite/internal/sandbox"
)

// homesDirName is the directory of the state directory that holds the sandboxed servers' homes. Only each
// home is ever mounted into a sandbox, never its parents, so the identity beside it stays out of sight.
const homesDirName = "homes"

// openSandbox makes the driver cfg.Sandbox asks for and returns it with the mode it resolved to.
func openSandbox(ctx context.Context, logger *slog.Logger, cfg Config, stateDir string) (sandbox.Driver, sandbox.Mode, error) {
	mode, err := sandbox.ParseMode(cfg.Sandbox)
	if err != nil {
		return nil, "", err
	}
	driver, resolved, err := sandbox.Select(ctx, logger, sandbox.SelectConfig{
		Mode: mode,
		// The state directory is unique to this satellite, so it marks the processes a crashed run of it
		// left behind.
		Owner:     stateDir,
		HomeRoot:  filepath.Join(stateDir, homesDirName),
		ReadOnly:  cfg.SandboxReadOnly,
		Egress:    egressPolicy(cfg),
		Ceilings:  cfg.SandboxCeilings,
		HomeQuota: cfg.SandboxHomeQuota,
	})
	if err != nil {
		return nil, "", fmt.Errorf("sandbox %s: %w", mode, err)
	}
	return driver, resolved, nil
}

// egressPolicy is what the satellite's MCP servers, sandboxed and remote, may connect to.
func egressPolicy(cfg Config) egress.Policy {
	return egress.Policy{Allow: cfg.SandboxEgressAllow, Deny: cfg.SandboxEgressDeny}
}

// requireLimits makes a satellite that serves many teams refuse servers whose limits cannot be enforced,
// rather than let one of them take the machine from the others; a team satellite runs them with a warning.
func requireLimits(driver sandbox.Driver, id identity.Identity, dev bool) {
	if b, ok := driver.(interface{ RequireLimits(bool) }); ok { // bwrap
		b.RequireLimits(id.Type != "team" && !dev)
	}
}

// checkIsolation decides whether a satellite with identity id may run servers with the isolation it has. A
// global satellite runs the code of every team it serves side by side: without isolation any of them could
// read the others' credentials and the satellite's API key, so it runs so only in a development setup. A
// team satellite runs one team's code, which may read its own satellite's key; that is the team's risk to
// take, and it is warned of.
func checkIsolation(ctx context.Context, logger *slog.Logger, id identity.Identity, isolation sandbox.Mode, dev bool) error {
	if isolation != sandbox.ModeDirect {
		return nil
	}
	switch {
	case id.Type == "team":
		logger.WarnContext(ctx, "stdio MCP servers run without isolation: they can read this satellite's state, "+
			"its API key included, and are not limited; install bubblewrap (apt-get install bubblewrap) and use "+
			"ORRERY_SANDBOX=auto or bwrap to isolate them")
		return nil
	case dev:
		logger.WarnContext(ctx, "development setup: this global satellite runs every team's stdio MCP servers "+
			"without isolation; never serve real teams like this")
		return nil
	}
	return fmt.Errorf("a %s satellite runs many teams' MCP servers and refuses to run them without isolation "+
		"(sandbox %s): install bubblewrap (apt-get install bubblewrap) and set ORRERY_SANDBOX=auto or bwrap, "+
		"or set ORRERY_DEV=true for a development setup", id.Type, isolation)
}

// isolationOf is the heartbeat's name for a sandbox mode.
func isolationOf(m sandbox.Mode) satellitev1.Isolation {
	switch m {
	case sandbox.ModeBwrap:
		return satellitev1.Isolation_ISOLATION_BWRAP
	case sandbox.ModeDirect:
		return satellitev1.Isolation_ISOLATION_DIRECT
	}
	return satellitev1.Isolation_ISOLATION_UNSPECIFIED
}
