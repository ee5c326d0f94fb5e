package sandbox

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/orrery/orrery/internal/egress"
)

// Mode is a choice of driver.
type Mode string

// The driver choices. ModeAuto is resolved by Select to one of the others.
const (
	// ModeAuto is ModeBwrap where bubblewrap works on this machine, else ModeDirect.
	ModeAuto Mode = "auto"
	// ModeBwrap isolates every server with bubblewrap, and fails where it cannot.
	ModeBwrap Mode = "bwrap"
	// ModeDirect runs servers as plain subprocesses, without isolation.
	ModeDirect Mode = "direct"
)

// ParseMode parses "auto", "bwrap" or "direct"; empty means auto.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case "":
		return ModeAuto, nil
	case ModeAuto, ModeBwrap, ModeDirect:
		return m, nil
	}
	return "", fmt.Errorf("sandbox %q: want auto, bwrap or direct", s)
}

// SelectConfig says which driver Select makes, and how.
type SelectConfig struct {
	// Mode is the choice. Empty means ModeAuto.
	Mode Mode
	// Owner marks the processes the driver starts, so that a satellite started again sweeps away what a
	// crashed run left behind; see Direct.Owner.
	Owner string
	// HomeRoot holds the servers' homes under bwrap; see BwrapConfig.HomeRoot. Required unless Mode is
	// ModeDirect.
	HomeRoot string
	// ReadOnly are host paths every bwrap server sees read-only, such as where server packages are installed.
	ReadOnly []string
	// Egress is the bwrap servers' egress policy; see BwrapConfig.Egress.
	Egress egress.Policy
	// Ceilings cap the bwrap servers' limits; see BwrapConfig.Ceilings.
	Ceilings Limits
	// RequireLimits refuses servers whose limits cannot be enforced; see BwrapConfig.RequireLimits.
	RequireLimits bool
	// HomeQuota bounds each bwrap home's size; see BwrapConfig.HomeQuota.
	HomeQuota int64
}

// Select makes the driver cfg asks for and returns it with the mode it resolved to: ModeBwrap or
// ModeDirect. For ModeAuto it starts one empty bwrap sandbox to see that bubblewrap works here (installed,
// and allowed to create namespaces), and settles for Direct, with a warning, when it does not. log nil
// discards.
func Select(ctx context.Context, log *slog.Logger, cfg SelectConfig) (Driver, Mode, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	direct := Direct{Owner: cfg.Owner}
	mode := cfg.Mode
	if mode == "" {
		mode = ModeAuto
	}
	if mode == ModeDirect {
		return direct, ModeDirect, nil
	}
	b, err := newProbedBwrap(log, cfg)
	switch {
	case err == nil:
		return b, ModeBwrap, nil
	case mode == ModeBwrap:
		return nil, "", err
	}
	log.WarnContext(ctx, "bubblewrap does not work on this machine; stdio MCP servers run without isolation",
		slog.Any("error", err))
	return direct, ModeDirect, nil
}
