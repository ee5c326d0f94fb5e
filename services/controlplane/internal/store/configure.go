package store

import (
	"context"
	"encoding/hex"
	"slices"
	"strings"

	"github.com/google/uuid"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"

	"github.com/orrery/orrery/services/controlplane/internal/store/internal/dbsqlc"
)

// Events of configure commands, which tell a satellite why to fetch its configuration again.
const (
	EventInstallationCreated = satellitev1.ConfigureEvent_CONFIGURE_EVENT_INSTALLATION_CREATED
	EventInstallationUpdated = satellitev1.ConfigureEvent_CONFIGURE_EVENT_INSTALLATION_UPDATED
	EventInstallationDeleted = satellitev1.ConfigureEvent_CONFIGURE_EVENT_INSTALLATION_DELETED
)

// configure queues, inside the caller's transaction, a configure command for every satellite serving the
// team. installationID is uuid.Nil when the change concerns several installations.
func configure(ctx context.Context, q *dbsqlc.Queries, teamID uuid.UUID, event satellitev1.ConfigureEvent, installationID uuid.UUID) error {
	a := &satellitev1.ConfigureAction{Event: event}
	if installationID != uuid.Nil {
		a.InstallationId = installationID.String()
	}
	_, err := enqueueForTeam(ctx, q, teamID, NewCommand{TeamID: &teamID, Action: &satellitev1.Command{
		Action: &satellitev1.Command_Configure{Configure: a},
	}})
	return err
}

// memberRemoved queues, inside the caller's transaction, the configure command that stops a former member's
// instances on every satellite serving the team and deletes what the satellites keep of the member there.
func memberRemoved(ctx context.Context, q *dbsqlc.Queries, teamID, userID uuid.UUID) error {
	_, err := enqueueForTeam(ctx, q, teamID, NewCommand{TeamID: &teamID, Action: &satellitev1.Command{
		Action: &satellitev1.Command_Configure{Configure: &satellitev1.ConfigureAction{
			Event: satellitev1.ConfigureEvent_CONFIGURE_EVENT_MEMBER_REMOVED, UserId: userID.String(),
		}},
	}})
	return err
}

// ReasonManualRestart is the reason of a restart command that a person asked for, as the audit log names it.
const ReasonManualRestart = "manual_restart"

// RestartInstance queues a manual restart of instanceID for every live satellite that serves the viewer's
// team, and appends actor (with ActorID and Actor set) to the audit log in the same transaction, so no
// restart goes unrecorded. An instance the viewer may not see is ErrNotFound. Satellites that hold a long
// poll receive it at once, whatever its priority.
// It returns the instance and the commands, none when no satellite serves the team now.
func (s *Store) RestartInstance(ctx context.Context, v Viewer, instanceID string, actor AuditEvent) (Instance, []Command, error) {
	var (
		inst Instance
		cmds []Command
	)
	err := s.inTx(ctx, func(q *dbsqlc.Queries) error {
		r, err := q.GetVisibleInstance(ctx, instanceID, v.TeamID, v.UserID)
		if err != nil {
			return translate(err, "get instance")
		}
		inst = instanceFromRow(r.Instance)
		c := NewCommand{TeamID: &inst.TeamID, Action: &satellitev1.Command{Action: &satellitev1.Command_Restart{
			Restart: &satellitev1.RestartAction{
				Instances: &satellitev1.InstanceSelector{Target: &satellitev1.InstanceSelector_InstanceId{InstanceId: inst.ID}},
				Reason:    satellitev1.RestartReason_RESTART_REASON_MANUAL_RESTART,
			},
		}}}
		if cmds, err = enqueueForTeam(ctx, q, inst.TeamID, c); err != nil {
			return err
		}
		ids := make([]string, len(cmds))
		for i, cmd := range cmds {
			ids[i] = cmd.ID.String()
		}
		e := actor
		e.TeamID, e.Action, e.Target = &inst.TeamID, "instance.restarted", inst.ID
		e.Details = map[string]string{
			"installation_id": inst.InstallationID.String(), "user_id": inst.UserID.String(),
			"status": inst.Status, "reason": ReasonManualRestart, "command_ids": strings.Join(ids, ","),
		}
		return audit(ctx, q, e)
	})
	if err != nil {
		return Instance{}, nil, err
	}
	return inst, cmds, nil
}

// maxRevokedPerCommand is how many token hashes one revoke_tokens command carries at most, as its
// validation rule allows; more are sent in several commands.
const maxRevokedPerCommand = 1000

// announceRevoked queues, inside the caller's transaction, a revoke_tokens command for every satellite
// serving the team of each token just revoked, so the token stops working there at once rather than when
// the satellite's cached introspection result runs out.
func announceRevoked(ctx context.Context, q *dbsqlc.Queries, revoked []dbsqlc.AccessToken) error {
	hashes := map[uuid.UUID][]string{}
	for _, t := range revoked {
		hashes[t.TeamID] = append(hashes[t.TeamID], hex.EncodeToString(t.TokenHash))
	}
	for teamID, teamHashes := range hashes {
		for chunk := range slices.Chunk(teamHashes, maxRevokedPerCommand) {
			c := NewCommand{TeamID: &teamID, Action: &satellitev1.Command{Action: &satellitev1.Command_RevokeTokens{
				RevokeTokens: &satellitev1.RevokeTokensAction{TokenHashes: chunk},
			}}}
			if _, err := enqueueForTeam(ctx, q, teamID, c); err != nil {
				return err
			}
		}
	}
	return nil
}

// revokeGrantAccessTokens revokes the access tokens issued under an OAuth grant and announces them.
func revokeGrantAccessTokens(ctx context.Context, q *dbsqlc.Queries, requestID string) error {
	revoked, err := q.RevokeGrantAccessTokens(ctx, requestID)
	if err != nil {
		return translate(err, "revoke oauth grant access tokens")
	}
	return announceRevoked(ctx, q, revoked)
}
