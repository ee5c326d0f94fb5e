package mcpruntime

import "time"

// crashPolicy decides what follows a crash of a stdio server: a restart after a delay, or giving up.
type crashPolicy struct {
	delays       []time.Duration
	stableUptime time.Duration
	limit        int
	window       time.Duration
}

func (c Config) crashPolicy() crashPolicy {
	return crashPolicy{delays: c.RestartDelays, stableUptime: c.StableUptime, limit: c.CrashLimit, window: c.CrashWindow}
}

// crashHistory holds the times of recent crashes, oldest first.
type crashHistory []time.Time

// record adds a crash at now, forgets crashes that left the window, and returns how many remain.
func (p crashPolicy) record(h crashHistory, now time.Time) (crashHistory, int) {
	kept := h[:0]
	for _, t := range h {
		if now.Sub(t) < p.window {
			kept = append(kept, t)
		}
	}
	kept = append(kept, now)
	return kept, len(kept)
}

// next says what follows the n-th crash within the window of a process that ran for uptime: give up once n
// reaches the limit; otherwise restart at once if the process had been stable, else after the n-th delay
// (the last delay repeats).
func (p crashPolicy) next(n int, uptime time.Duration) (delay time.Duration, giveUp bool) {
	if n >= p.limit {
		return 0, true
	}
	if uptime >= p.stableUptime || len(p.delays) == 0 {
		return 0, false
	}
	return p.delays[min(n, len(p.delays))-1], false
}
