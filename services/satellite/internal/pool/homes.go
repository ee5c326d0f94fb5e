package pool

import (
	"context"
	"log/slog"
	"time"
)

// DefaultHomeGrace is how long the homes of a team's members are kept after the team's instances leave a
// satellite's configuration, in case placement brings the team back.
const DefaultHomeGrace = time.Hour

// Member is one user of one team with instances on the satellite.
type Member struct{ TeamID, UserID string }

// HomeJanitor deletes what the sandbox keeps for a team's members (their homes) once none of the team's
// instances has been in the configuration for Grace: the satellite lost the team, as placement moved it
// elsewhere, and the runtime has stopped its instances already. A member who keeps no instance while the
// team stays keeps their home (a member who leaves the team is forgotten by a command of its own).
type HomeJanitor struct {
	// Members lists the members with instances in the current configuration.
	Members func() []Member
	// Changes signals every configuration applied.
	Changes <-chan struct{}
	// Forget deletes a member's home unless the member has instances again; it reports whether it did.
	Forget func(teamID, userID string) (bool, error)
	// Grace is how long a member must be gone. Default DefaultHomeGrace.
	Grace time.Duration
	// Now is the clock. Default time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// Run keeps watch until ctx is done, and returns nil then. Members gone before the satellite started are
// not known to it: their homes stay until the member is forgotten by a command.
func (j *HomeJanitor) Run(ctx context.Context) error {
	grace, now, logger := j.Grace, j.Now, j.Logger
	if grace <= 0 {
		grace = DefaultHomeGrace
	}
	if now == nil {
		now = time.Now
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	present := map[Member]bool{}
	gone := map[Member]time.Time{}
	tick := time.NewTicker(max(grace/4, 100*time.Millisecond))
	defer tick.Stop()
	for {
		current, teams := map[Member]bool{}, map[string]bool{}
		for _, m := range j.Members() {
			current[m], teams[m.TeamID] = true, true
		}
		for m := range present {
			// A member who uninstalled their servers keeps their home while the team is here.
			if teams[m.TeamID] {
				current[m] = true
			} else if _, ok := gone[m]; !ok {
				gone[m] = now()
			}
		}
		for m := range gone {
			if teams[m.TeamID] {
				delete(gone, m)
				current[m] = true
			}
		}
		present = current
		for m, since := range gone {
			if now().Sub(since) < grace {
				continue
			}
			delete(gone, m)
			deleted, err := j.Forget(m.TeamID, m.UserID)
			switch {
			case err != nil:
				logger.WarnContext(ctx, "cannot delete the home of a member whose team left this satellite",
					slog.String("team_id", m.TeamID), slog.String("user_id", m.UserID), slog.Any("error", err))
			case deleted:
				logger.InfoContext(ctx, "home deleted: the member's team left this satellite",
					slog.String("team_id", m.TeamID), slog.String("user_id", m.UserID))
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-j.Changes:
		case <-tick.C:
		}
	}
}
