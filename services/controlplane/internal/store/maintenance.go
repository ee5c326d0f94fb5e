package store

import (
	"context"
	"slices"
	"time"

	"github.com/google/uuid"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/services/controlplane/internal/store/internal/dbsqlc"
)

// SweepCommands expires and fails commands of every satellite, not only of those that poll, so stored states
// stay true for satellites that went away.
func (s *Store) SweepCommands(ctx context.Context) (expired, failed int64, err error) {
	if expired, err = s.q.ExpireAllCommands(ctx); err != nil {
		return 0, 0, translate(err, "expire commands")
	}
	if failed, err = s.q.FailAllExhaustedCommands(ctx); err != nil {
		return expired, 0, translate(err, "fail exhausted commands")
	}
	return expired, failed, nil
}

// Retention says how long history is kept.
type Retention struct {
	// Heartbeats is the heartbeat history; the satellite row keeps the latest values regardless.
	Heartbeats time.Duration
	// ReceivedEvents is how long event ids are remembered to drop retried batches; it must outlast any
	// satellite's retries.
	ReceivedEvents time.Duration
	// FinishedCommands is how long completed, failed and expired commands stay listed.
	FinishedCommands time.Duration
	// InstanceEvents is how long status changes and lifecycle events are kept.
	InstanceEvents time.Duration
	// ExpiredOAuthTokens is how long OAuth codes and tokens are kept past their expiry.
	ExpiredOAuthTokens time.Duration
	// UnusedOAuthClients is how long a dynamically registered client is kept while no consent or token
	// names it.
	UnusedOAuthClients time.Duration
	// ExpiredInvitations is how long team invitations are kept past their expiry.
	ExpiredInvitations time.Duration
}

// Pruned counts the rows a Prune removed.
type Pruned struct {
	Heartbeats, ReceivedEvents, FinishedCommands, InstanceEvents, OAuthTokens, OAuthClients, Invitations int64
}

// Prune deletes history older than r allows at now.
func (s *Store) Prune(ctx context.Context, now time.Time, r Retention) (Pruned, error) {
	var p Pruned
	var err error
	if p.Heartbeats, err = s.q.PruneHeartbeats(ctx, now.Add(-r.Heartbeats)); err != nil {
		return p, translate(err, "prune heartbeats")
	}
	if p.ReceivedEvents, err = s.q.PruneReceivedEvents(ctx, now.Add(-r.ReceivedEvents)); err != nil {
		return p, translate(err, "prune received events")
	}
	before := now.Add(-r.FinishedCommands)
	if p.FinishedCommands, err = s.q.PruneFinishedCommands(ctx, &before); err != nil {
		return p, translate(err, "prune finished commands")
	}
	if p.InstanceEvents, err = s.q.PruneInstanceEvents(ctx, now.Add(-r.InstanceEvents)); err != nil {
		return p, translate(err, "prune instance events")
	}
	if p.OAuthTokens, err = s.q.PruneExpiredOAuthTokens(ctx, now.Add(-r.ExpiredOAuthTokens)); err != nil {
		return p, translate(err, "prune expired oauth tokens")
	}
	if p.OAuthClients, err = s.q.PruneUnusedOAuthClients(ctx, now.Add(-r.UnusedOAuthClients)); err != nil {
		return p, translate(err, "prune unused oauth clients")
	}
	if p.Invitations, err = s.q.PruneExpiredInvitations(ctx, now.Add(-r.ExpiredInvitations)); err != nil {
		return p, translate(err, "prune expired invitations")
	}
	return p, nil
}

// TrimLogs keeps the newest keep server-log lines and request logs of every installation.
func (s *Store) TrimLogs(ctx context.Context, keep int) (serverLogs, requestLogs int64, err error) {
	if serverLogs, err = s.q.TrimAllServerLogs(ctx, int32(keep)); err != nil {
		return 0, 0, translate(err, "trim server logs")
	}
	if requestLogs, err = s.q.TrimAllRequestLogs(ctx, int32(keep)); err != nil {
		return serverLogs, 0, translate(err, "trim request logs")
	}
	return serverLogs, requestLogs, nil
}

// AggregateTemplateHealth recomputes every template's health from its instances' statuses and returns how
// many templates it covered.
func (s *Store) AggregateTemplateHealth(ctx context.Context) (int64, error) {
	n, err := s.q.AggregateTemplateHealth(ctx)
	return n, translate(err, "aggregate template health")
}

// TemplateHealth is a template's aggregated health.
type TemplateHealth struct {
	Instances, Online, Failing int
	Status                     string // unused, healthy, degraded or failing
	AggregatedAt               time.Time
}

// GetTemplateHealth returns a template's health as last aggregated.
func (s *Store) GetTemplateHealth(ctx context.Context, catalogEntryID uuid.UUID) (TemplateHealth, error) {
	r, err := s.q.GetTemplateHealth(ctx, catalogEntryID)
	if err != nil {
		return TemplateHealth{}, translate(err, "get template health")
	}
	return TemplateHealth{Instances: int(r.Instances), Online: int(r.Online), Failing: int(r.Failing), Status: r.Status,
		AggregatedAt: r.AggregatedAt}, nil
}

// EnqueueCredentialChecks queues a credential validation health check, for the satellites serving its team,
// of every remote installation not checked within every, and returns how many installations it covered.
func (s *Store) EnqueueCredentialChecks(ctx context.Context, every time.Duration) (int, error) {
	var n int
	err := s.inTx(ctx, func(q *dbsqlc.Queries) error {
		due, err := q.ClaimCredentialChecks(ctx, every.Seconds())
		if err != nil {
			return translate(err, "claim credential checks")
		}
		for _, d := range due {
			c := NewCommand{TeamID: &d.TeamID, Action: &satellitev1.Command{Action: &satellitev1.Command_HealthCheck{
				HealthCheck: &satellitev1.HealthCheckAction{
					InstallationId: d.ID.String(),
					Check:          satellitev1.HealthCheckType_HEALTH_CHECK_TYPE_CREDENTIAL_VALIDATION,
				},
			}}}
			if _, err := enqueueForTeam(ctx, q, d.TeamID, c); err != nil {
				return err
			}
		}
		n = len(due)
		return nil
	})
	return n, err
}

// OfflineSatellite is a satellite noticed offline.
type OfflineSatellite struct {
	ID     uuid.UUID
	Name   string
	TeamID *uuid.UUID
}

// MarkSatellitesOffline notes the live satellites silent for longer than after and returns those newly
// noticed; a satellite is reported once per outage, and its next heartbeat ends the outage.
func (s *Store) MarkSatellitesOffline(ctx context.Context, after time.Duration) ([]OfflineSatellite, error) {
	rows, err := s.q.MarkSatellitesOffline(ctx, after.Seconds())
	if err != nil {
		return nil, translate(err, "mark satellites offline")
	}
	out := make([]OfflineSatellite, len(rows))
	for i, r := range rows {
		out[i] = OfflineSatellite{ID: r.ID, Name: r.Name, TeamID: r.TeamID}
	}
	return out, nil
}

// UnhealthyRemote are the statuses of a remote instance that a successful credential check finds healthy
// again: disconnected, unreachable, or refusing its credentials.
var UnhealthyRemote = []satellitev1.InstanceStatus{
	satellitev1.InstanceStatus_INSTANCE_STATUS_OFFLINE,
	satellitev1.InstanceStatus_INSTANCE_STATUS_ERROR,
	satellitev1.InstanceStatus_INSTANCE_STATUS_REQUIRES_REAUTH,
}

// RecordCredentialChecks notes, as each instance's last_health_check_at, the checks of the completed
// health_check command cmd: every outcome it reported that was not skipped (stdio servers, interrupted
// checks), at the time cmd completed. A repeated report of the same result changes nothing. Only instances
// of the command's team and installation are touched, so a satellite cannot stamp instances it was not asked
// to check. Other commands are ignored.
//
// When a check found an instance that was unhealthy before it healthy again, it queues one recovery command
// for the installation, to the satellite that checked, so the satellite reconnects and discovers the tools
// again. The satellite's outcome says what the instance was before the check: the stored status may already
// be the check's own verdict, or still lag behind it, depending on when the status events arrive.
// It returns how many instances it stamped and the recovery command, if any.
func (s *Store) RecordCredentialChecks(ctx context.Context, cmd Command) (int, *Command, error) {
	check := cmd.Action.GetHealthCheck()
	installationID, err := uuid.Parse(check.GetInstallationId())
	if check == nil || err != nil || cmd.State != CommandCompleted || cmd.TeamID == nil || cmd.CompletedAt == nil {
		return 0, nil, nil
	}
	var ids, healthy []string
	for _, o := range cmd.Outcomes {
		if o.GetSkipped() != "" {
			continue
		}
		ids = append(ids, o.GetInstanceId())
		if o.GetStatus() == satellitev1.InstanceStatus_INSTANCE_STATUS_ONLINE && slices.Contains(UnhealthyRemote, o.GetPreviousStatus()) {
			healthy = append(healthy, o.GetInstanceId())
		}
	}
	if len(ids) == 0 {
		return 0, nil, nil
	}
	var (
		stamped  int
		recovery *Command
	)
	err = s.inTx(ctx, func(q *dbsqlc.Queries) error {
		rows, err := q.RecordCredentialChecks(ctx, *cmd.CompletedAt, *cmd.TeamID, installationID, ids)
		if err != nil {
			return translate(err, "record credential checks")
		}
		stamped = len(rows)
		// Only instances of the command's team and installation count, whatever else the satellite named.
		recovered := slices.ContainsFunc(rows, func(id string) bool { return slices.Contains(healthy, id) })
		if !recovered {
			return nil
		}
		c, err := insertCommand(ctx, q, cmd.SatelliteID, NewCommand{TeamID: cmd.TeamID, Action: &satellitev1.Command{
			Action: &satellitev1.Command_Recovery{Recovery: &satellitev1.RecoveryAction{InstallationId: installationID.String()}},
		}})
		recovery = &c
		return err
	})
	if err != nil {
		return 0, nil, err
	}
	return stamped, recovery, nil
}
