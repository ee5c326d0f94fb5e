package store

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/services/controlplane/internal/store/internal/dbsqlc"
)

// Rollout states and member states.
const (
	RolloutRunning   = "running"
	RolloutCompleted = "completed"
	RolloutFailed    = "failed"

	MemberPending = "pending"
	MemberSent    = "sent"
	MemberDone    = "done"
	MemberFailed  = "failed"
)

// Rollout is a rolling update of satellites to one release.
type Rollout struct {
	ID             uuid.UUID
	Version        string
	AllowDowngrade bool
	BatchSize      int
	TeamID         *uuid.UUID
	State          string
	Error          string
	CreatedAt      time.Time
	UpdatedAt      time.Time
	Members        []RolloutMember
}

// RolloutMember is where one satellite of a rollout stands.
type RolloutMember struct {
	SatelliteID uuid.UUID
	Batch       int
	State       string
	CommandID   *uuid.UUID
}

// RolloutTarget says which satellites a rollout updates: one, a team's (its own and the global ones), or
// every global satellite.
type RolloutTarget struct {
	SatelliteID *uuid.UUID
	TeamID      *uuid.UUID
	Global      bool
}

func rolloutFromRow(r dbsqlc.SatelliteRollout) Rollout {
	return Rollout{
		ID: r.ID, Version: r.Version, AllowDowngrade: r.AllowDowngrade, BatchSize: int(r.BatchSize), TeamID: r.TeamID,
		State: r.State, Error: r.Error, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt,
	}
}

func (r Rollout) command() NewCommand {
	return NewCommand{TeamID: r.TeamID, Action: &satellitev1.Command{Action: &satellitev1.Command_Update{
		Update: &satellitev1.UpdateAction{Version: r.Version, AllowDowngrade: r.AllowDowngrade},
	}}}
}

// StartRollout creates a rolling update of the target's live satellites to version, batchSize at a time,
// and queues the first batch's update commands in the same transaction. A target with no live satellite
// is ErrNotFound.
func (s *Store) StartRollout(ctx context.Context, target RolloutTarget, version string, allowDowngrade bool, batchSize int) (Rollout, []Command, error) {
	var (
		ro   Rollout
		cmds []Command
	)
	err := s.inTx(ctx, func(q *dbsqlc.Queries) error {
		var ids []uuid.UUID
		var err error
		switch {
		case target.SatelliteID != nil:
			ids = []uuid.UUID{*target.SatelliteID}
		case target.TeamID != nil:
			ids, err = q.ListSatellitesServingTeam(ctx, target.TeamID)
		default:
			ids, err = q.ListGlobalSatellites(ctx)
		}
		if err != nil {
			return translate(err, "list the rollout's satellites")
		}
		if len(ids) == 0 {
			return fmt.Errorf("no live satellite to update: %w", ErrNotFound)
		}
		row, err := q.CreateRollout(ctx, dbsqlc.CreateRolloutParams{
			ID: uuid.New(), Version: version, AllowDowngrade: allowDowngrade, BatchSize: int32(batchSize), TeamID: target.TeamID,
		})
		if err != nil {
			return translate(err, "create rollout")
		}
		ro = rolloutFromRow(row)
		for i, id := range ids {
			if err := q.AddRolloutMember(ctx, ro.ID, id, int32(i), int32(i/batchSize)); err != nil {
				return translate(err, "add rollout satellite")
			}
			ro.Members = append(ro.Members, RolloutMember{SatelliteID: id, Batch: i / batchSize, State: MemberPending})
		}
		cmds, err = advanceRollout(ctx, q, &ro)
		return err
	})
	return ro, cmds, err
}

// AdvanceRollouts moves every running rollout on: satellites heartbeating on the new version are done, a
// failed or expired update command fails its rollout, and once a batch is done the next batch's commands are
// queued. Replicas advancing at once skip each other's rollouts.
func (s *Store) AdvanceRollouts(ctx context.Context) (moved []Rollout, err error) {
	err = s.inTx(ctx, func(q *dbsqlc.Queries) error {
		rows, err := q.RunningRollouts(ctx)
		if err != nil {
			return translate(err, "running rollouts")
		}
		for _, row := range rows {
			ro := rolloutFromRow(row)
			before := ro.State
			cmds, err := advanceRollout(ctx, q, &ro)
			if err != nil {
				return err
			}
			if len(cmds) > 0 || ro.State != before {
				moved = append(moved, ro)
			}
		}
		return nil
	})
	return moved, err
}

// advanceRollout moves ro on inside the caller's transaction and returns the commands it queued.
func advanceRollout(ctx context.Context, q *dbsqlc.Queries, ro *Rollout) ([]Command, error) {
	members, err := q.RolloutMembers(ctx, ro.ID)
	if err != nil {
		return nil, translate(err, "rollout satellites")
	}
	setMember := func(m dbsqlc.RolloutMembersRow, state string, cmd *uuid.UUID) error {
		return translate(q.SetRolloutMember(ctx, state, cmd, ro.ID, m.SatelliteID), "rollout satellite")
	}
	inFlight, failure := 0, ""
	for i, m := range members {
		if m.State != MemberSent {
			continue
		}
		switch {
		case m.SatelliteVersion == ro.Version:
			members[i].State = MemberDone
		case m.Revoked:
			members[i].State, failure = MemberFailed, fmt.Sprintf("satellite %s was revoked during the rollout", m.SatelliteID)
		case m.CommandState == "failed" || m.CommandState == "expired":
			members[i].State = MemberFailed
			failure = fmt.Sprintf("satellite %s: update %s: %s", m.SatelliteID, m.CommandState, m.CommandError)
		default:
			inFlight++
			continue
		}
		if err := setMember(m, members[i].State, nil); err != nil {
			return nil, err
		}
	}
	var cmds []Command
	switch {
	case failure != "":
		ro.State, ro.Error = RolloutFailed, failure
	case inFlight == 0:
		next := -1
		for _, m := range members {
			if m.State == MemberPending && (next < 0 || int(m.Batch) < next) {
				next = int(m.Batch)
			}
		}
		if next < 0 {
			ro.State = RolloutCompleted
			break
		}
		for i, m := range members {
			if m.State != MemberPending || int(m.Batch) != next {
				continue
			}
			cmd, err := insertCommand(ctx, q, m.SatelliteID, ro.command())
			if err != nil {
				return nil, err
			}
			if err := setMember(m, MemberSent, &cmd.ID); err != nil {
				return nil, err
			}
			members[i].State, members[i].CommandID = MemberSent, &cmd.ID
			cmds = append(cmds, cmd)
		}
	}
	if ro.State != RolloutRunning || len(cmds) > 0 {
		if err := q.SetRolloutState(ctx, ro.State, ro.Error, ro.ID); err != nil {
			return nil, translate(err, "rollout")
		}
	}
	ro.Members = ro.Members[:0]
	for _, m := range members {
		ro.Members = append(ro.Members, RolloutMember{SatelliteID: m.SatelliteID, Batch: int(m.Batch), State: m.State, CommandID: m.CommandID})
	}
	return cmds, nil
}

// ListRollouts returns up to limit rollouts before cursor, newest first, with their satellites.
func (s *Store) ListRollouts(ctx context.Context, before *Cursor, limit int) ([]Rollout, error) {
	at, id := cursorArgs(before)
	rows, err := s.q.ListRollouts(ctx, at, id, int32(limit))
	if err != nil {
		return nil, translate(err, "list rollouts")
	}
	out := make([]Rollout, len(rows))
	for i, r := range rows {
		out[i] = rolloutFromRow(r)
		members, err := s.q.RolloutMembers(ctx, r.ID)
		if err != nil {
			return nil, translate(err, "rollout satellites")
		}
		for _, m := range members {
			out[i].Members = append(out[i].Members, RolloutMember{SatelliteID: m.SatelliteID, Batch: int(m.Batch), State: m.State, CommandID: m.CommandID})
		}
	}
	return out, nil
}
