package store

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/orrery/orrery/services/controlplane/internal/store/internal/dbsqlc"
)

// Events of configure commands, which tell a satellite why to fetch its configuration again.
const (
	EventInstallationCreated = "mcp_installation_created"
	EventInstallationUpdated = "mcp_installation_updated"
	EventInstallationDeleted = "mcp_installation_deleted"
	// EventMemberRemoved also asks satellites to delete what they keep of the member, such as sandbox homes.
	EventMemberRemoved = "mcp_member_removed"
)

// Command priorities, as stored (satellite.v1.CommandPriority).
const (
	PriorityLow       int16 = 1
	PriorityNormal    int16 = 2
	PriorityHigh      int16 = 3
	PriorityImmediate int16 = 4
)

// configure queues, inside the caller's transaction, a configure command for every satellite serving the
// team: immediate for creations and updates, which a user is waiting for, high for deletions, which free
// resources and expire later.
func configure(ctx context.Context, q *dbsqlc.Queries, teamID uuid.UUID, event string, installationID uuid.UUID) error {
	return enqueueConfigure(ctx, q, teamID, map[string]string{"event": event, "installation_id": installationID.String()})
}

// memberRemoved queues, inside the caller's transaction, the configure command that stops a former member's
// instances on every satellite serving the team and deletes what the satellites keep of the member there.
func memberRemoved(ctx context.Context, q *dbsqlc.Queries, teamID, userID uuid.UUID) error {
	return enqueueConfigure(ctx, q, teamID, map[string]string{"event": EventMemberRemoved, "user_id": userID.String()})
}

func enqueueConfigure(ctx context.Context, q *dbsqlc.Queries, teamID uuid.UUID, payload map[string]string) error {
	c := NewCommand{TeamID: &teamID, Type: "configure", Priority: PriorityImmediate, TTL: 5 * time.Minute}
	if e := payload["event"]; e == EventInstallationDeleted || e == EventMemberRemoved {
		c.Priority, c.TTL = PriorityHigh, 10*time.Minute
	}
	c.Payload, _ = json.Marshal(payload)
	_, err := enqueueForTeam(ctx, q, teamID, c)
	return err
}

// ReasonManualRestart is the reason of a restart command that a person asked for.
const ReasonManualRestart = "manual_restart"

// restartTTL is how long a manual restart stays deliverable: long enough for a satellite that is briefly
// away, short enough that nobody is surprised by a restart they asked for long ago.
const restartTTL = 5 * time.Minute

// RestartInstance queues a manual restart of instanceID for every live satellite that serves the viewer's
// team, and appends actor (with ActorID and Actor set) to the audit log in the same transaction, so no
// restart goes unrecorded. An instance the viewer may not see is ErrNotFound. The restart is high priority,
// as the satellite command reference gives it; satellites that hold a long poll receive it at once anyway.
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
		c := NewCommand{TeamID: &inst.TeamID, Type: "restart", Priority: PriorityHigh, TTL: restartTTL}
		c.Payload, _ = json.Marshal(map[string]string{
			"instance_id": inst.ID, "installation_id": inst.InstallationID.String(), "reason": ReasonManualRestart,
		})
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

// revokedTokensTTL is how long a revoke_tokens command stays deliverable: satellites cache introspection
// results for at most a minute, so after that none can still hold one of the tokens as active.
const revokedTokensTTL = time.Minute

// announceRevoked queues, inside the caller's transaction, a revoke_tokens command for every satellite
// serving the team of each token just revoked, so the token stops working there at once rather than when
// the satellite's cached introspection result runs out.
func announceRevoked(ctx context.Context, q *dbsqlc.Queries, revoked []dbsqlc.AccessToken) error {
	hashes := map[uuid.UUID][]string{}
	for _, t := range revoked {
		hashes[t.TeamID] = append(hashes[t.TeamID], hex.EncodeToString(t.TokenHash))
	}
	for teamID, teamHashes := range hashes {
		c := NewCommand{TeamID: &teamID, Type: "revoke_tokens", Priority: PriorityImmediate, TTL: revokedTokensTTL}
		c.Payload, _ = json.Marshal(map[string][]string{"token_hashes": teamHashes})
		if _, err := enqueueForTeam(ctx, q, teamID, c); err != nil {
			return err
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
