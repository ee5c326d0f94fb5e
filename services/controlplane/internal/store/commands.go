package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"buf.build/go/protovalidate"
	"github.com/google/uuid"
	"google.golang.org/protobuf/encoding/protojson"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/services/controlplane/internal/command"
	"github.com/orrery/orrery/services/controlplane/internal/store/internal/dbsqlc"
)

// Command states.
const (
	CommandPending    = "pending"
	CommandDispatched = "dispatched"
	CommandCompleted  = "completed"
	CommandFailed     = "failed"
	CommandExpired    = "expired"
)

// Command is an instruction for one satellite.
type Command struct {
	ID          uuid.UUID
	SatelliteID uuid.UUID
	TeamID      *uuid.UUID
	// Kind names the action.
	Kind     command.Kind
	Priority int16
	// Action holds the command's action and nothing else; nil for a command stored in a format
	// before typed actions.
	Action         *satellitev1.Command
	State          string
	Attempts       int32
	LeaseExpiresAt *time.Time
	ExpiresAt      time.Time
	CreatedAt      time.Time
	CompletedAt    *time.Time
	Output         json.RawMessage
	// Outcomes are what a completed command left each instance it acted on in.
	Outcomes []*satellitev1.InstanceOutcome
	Error    string
}

func commandFromRow(r dbsqlc.SatelliteCommand) Command {
	return Command{
		ID: r.ID, SatelliteID: r.SatelliteID, TeamID: r.TeamID, Kind: command.Kind(r.Type), Priority: r.Priority,
		Action: decodeAction(r.Action), State: r.State, Attempts: r.Attempts, LeaseExpiresAt: r.LeaseExpiresAt,
		ExpiresAt: r.ExpiresAt, CreatedAt: r.CreatedAt, CompletedAt: r.CompletedAt, Output: r.Output,
		Outcomes: decodeOutcomes(r.Outcomes), Error: r.Error,
	}
}

// decodeAction reads a stored action, or returns nil for one that is not a command's action.
func decodeAction(raw []byte) *satellitev1.Command {
	action := &satellitev1.Command{}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(raw, action); err != nil ||
		command.KindOf(action) == "" {
		return nil
	}
	return action
}

// encodeOutcomes stores outcomes as a JSON array of protojson objects; none is SQL NULL.
func encodeOutcomes(outcomes []*satellitev1.InstanceOutcome) ([]byte, error) {
	if len(outcomes) == 0 {
		return nil, nil
	}
	var buf bytes.Buffer
	buf.WriteByte('[')
	for i, o := range outcomes {
		raw, err := protojson.Marshal(o)
		if err != nil {
			return nil, fmt.Errorf("encode outcome: %w", err)
		}
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.Write(raw)
	}
	buf.WriteByte(']')
	return buf.Bytes(), nil
}

// decodeOutcomes reads what encodeOutcomes stored, skipping what does not fit.
func decodeOutcomes(raw []byte) []*satellitev1.InstanceOutcome {
	var items []json.RawMessage
	if len(raw) == 0 || json.Unmarshal(raw, &items) != nil {
		return nil
	}
	outcomes := make([]*satellitev1.InstanceOutcome, 0, len(items))
	for _, item := range items {
		o := &satellitev1.InstanceOutcome{}
		if protojson.Unmarshal(item, o) == nil {
			outcomes = append(outcomes, o)
		}
	}
	return outcomes
}

func commandsFromRows(rows []dbsqlc.SatelliteCommand) []Command {
	cmds := make([]Command, len(rows))
	for i, r := range rows {
		cmds[i] = commandFromRow(r)
	}
	return cmds
}

// NewCommand describes a command to enqueue.
type NewCommand struct {
	TeamID *uuid.UUID
	// Action is a Command holding only its action. Required.
	Action *satellitev1.Command
	// Priority overrides the action's policy (see package command); zero keeps it.
	Priority satellitev1.CommandPriority
	// TTL overrides the action's policy; zero keeps it.
	TTL time.Duration
}

// ErrUnknownAction reports a command whose action has no policy, or none at all.
var ErrUnknownAction = fmt.Errorf("%w: the command carries no known action", ErrInvalid)

// EnqueueCommand queues c for one satellite.
func (s *Store) EnqueueCommand(ctx context.Context, satelliteID uuid.UUID, c NewCommand) (Command, error) {
	var cmd Command
	err := s.inTx(ctx, func(q *dbsqlc.Queries) error {
		var err error
		cmd, err = insertCommand(ctx, q, satelliteID, c)
		return err
	})
	return cmd, err
}

// EnqueueTeamCommand queues c for every live satellite that serves teamID: the team's own satellites and the
// global ones. It returns no commands when none serves the team.
func (s *Store) EnqueueTeamCommand(ctx context.Context, teamID uuid.UUID, c NewCommand) ([]Command, error) {
	var cmds []Command
	err := s.inTx(ctx, func(q *dbsqlc.Queries) error {
		var err error
		cmds, err = enqueueForTeam(ctx, q, teamID, c)
		return err
	})
	return cmds, err
}

// EnqueueGlobalCommand queues c for every live global satellite. It returns no commands when there is none.
func (s *Store) EnqueueGlobalCommand(ctx context.Context, c NewCommand) ([]Command, error) {
	var cmds []Command
	err := s.inTx(ctx, func(q *dbsqlc.Queries) error {
		ids, err := q.ListGlobalSatellites(ctx)
		if err != nil {
			return translate(err, "list global satellites")
		}
		cmds = make([]Command, 0, len(ids))
		for _, id := range ids {
			cmd, err := insertCommand(ctx, q, id, c)
			if err != nil {
				return err
			}
			cmds = append(cmds, cmd)
		}
		return nil
	})
	return cmds, err
}

// enqueueForTeam queues c, inside the caller's transaction, for every live satellite that serves teamID.
func enqueueForTeam(ctx context.Context, q *dbsqlc.Queries, teamID uuid.UUID, c NewCommand) ([]Command, error) {
	ids, err := q.ListSatellitesServingTeam(ctx, &teamID)
	if err != nil {
		return nil, translate(err, "list satellites serving team")
	}
	cmds := make([]Command, 0, len(ids))
	for _, id := range ids {
		cmd, err := insertCommand(ctx, q, id, c)
		if err != nil {
			return nil, err
		}
		cmds = append(cmds, cmd)
	}
	return cmds, nil
}

// insertCommand inserts a command and announces it. PostgreSQL delivers the notification on commit, to every
// replica, which wakes whichever replica holds the satellite's long poll.
func insertCommand(ctx context.Context, q *dbsqlc.Queries, satelliteID uuid.UUID, c NewCommand) (Command, error) {
	kind, action, policy, err := prepareAction(c)
	if err != nil {
		return Command{}, err
	}
	row, err := q.InsertCommand(ctx, dbsqlc.InsertCommandParams{
		SatelliteID: satelliteID, TeamID: c.TeamID, Type: string(kind), Priority: int16(policy.Priority),
		Action: action, TtlSeconds: policy.TTL.Seconds(),
	})
	if err != nil {
		return Command{}, translate(err, "insert command")
	}
	if err := q.NotifyCommand(ctx, CommandChannel, satelliteID.String()); err != nil {
		return Command{}, translate(err, "notify command")
	}
	return commandFromRow(row), nil
}

// prepareAction checks c's action as satellites will, encodes it for storage, and settles its priority and
// lifetime: the policy's unless c overrides them.
func prepareAction(c NewCommand) (command.Kind, []byte, command.Policy, error) {
	policy, ok := command.PolicyFor(c.Action)
	if !ok {
		return "", nil, command.Policy{}, ErrUnknownAction
	}
	kind := command.KindOf(c.Action)
	field := command.ActionField(kind)
	if err := protovalidate.Validate(c.Action.ProtoReflect().Get(field).Message().Interface()); err != nil {
		return "", nil, command.Policy{}, fmt.Errorf("%w: %s command: %v", ErrInvalid, kind, err)
	}
	only := &satellitev1.Command{}
	only.ProtoReflect().Set(field, c.Action.ProtoReflect().Get(field))
	action, err := protojson.Marshal(only)
	if err != nil {
		return "", nil, command.Policy{}, fmt.Errorf("encode %s command: %w", kind, err)
	}
	if c.Priority != satellitev1.CommandPriority_COMMAND_PRIORITY_UNSPECIFIED {
		policy.Priority = c.Priority
	}
	if c.TTL > 0 {
		policy.TTL = c.TTL
	}
	return kind, action, policy, nil
}

// ErrInactive reports a satellite that has not sent its first heartbeat; it gets no commands yet.
var ErrInactive = errors.New("satellite is not active yet")

// ClaimCommands delivers up to limit due commands of a satellite under a lease, highest priority first, then
// oldest. Along the way it expires commands past their expiry and fails those whose last lease lapsed. When
// nothing is due and withWakeup is set, wakeup is the next lapse of a lease, or nil; it comes in the same
// round trip, so an empty poll costs one statement.
//
// It returns ErrNotFound unless the satellite is live and still has the API key whose hash is apiKeyHash, so
// callers may skip a separate key check, and ErrInactive for a satellite before its first heartbeat.
func (s *Store) ClaimCommands(ctx context.Context, satelliteID uuid.UUID, apiKeyHash string, limit int, lease time.Duration, withWakeup bool) (cmds []Command, wakeup *time.Time, err error) {
	row, err := s.q.ClaimCommands(ctx, satelliteID, apiKeyHash, int32(limit), lease.Seconds())
	if err != nil {
		return nil, nil, translate(err, "claim commands")
	}
	if !row.Active {
		return nil, nil, ErrInactive
	}
	var claimed []claimedCommand
	if err := json.Unmarshal(row.Commands, &claimed); err != nil {
		return nil, nil, fmt.Errorf("decode claimed commands: %w", err)
	}
	if len(claimed) == 0 && withWakeup {
		return nil, row.NextWakeup, nil
	}
	cmds = make([]Command, len(claimed))
	for i, c := range claimed {
		cmds[i] = Command{
			ID: c.ID, SatelliteID: c.SatelliteID, TeamID: c.TeamID, Kind: command.Kind(c.Type), Priority: c.Priority,
			Action: decodeAction(c.Action), State: c.State, Attempts: c.Attempts, LeaseExpiresAt: c.LeaseExpiresAt,
			ExpiresAt: c.ExpiresAt, CreatedAt: c.CreatedAt, CompletedAt: c.CompletedAt, Output: c.Output,
			Outcomes: decodeOutcomes(c.Outcomes), Error: c.Error,
		}
	}
	return cmds, nil, nil
}

// claimedCommand is a satellite_commands row as to_jsonb renders it.
type claimedCommand struct {
	ID             uuid.UUID       `json:"id"`
	SatelliteID    uuid.UUID       `json:"satellite_id"`
	TeamID         *uuid.UUID      `json:"team_id"`
	Type           string          `json:"type"`
	Priority       int16           `json:"priority"`
	Action         json.RawMessage `json:"action"`
	State          string          `json:"state"`
	Attempts       int32           `json:"attempts"`
	LeaseExpiresAt *time.Time      `json:"lease_expires_at"`
	ExpiresAt      time.Time       `json:"expires_at"`
	CreatedAt      time.Time       `json:"created_at"`
	CompletedAt    *time.Time      `json:"completed_at"`
	Output         json.RawMessage `json:"output"`
	Outcomes       json.RawMessage `json:"outcomes"`
	Error          string          `json:"error"`
}

// FinishCommand records a satellite's result for one of its commands. Reporting again, or reporting a command
// that already ended, changes nothing and returns the command as stored.
func (s *Store) FinishCommand(ctx context.Context, satelliteID, commandID uuid.UUID, state string, output json.RawMessage, outcomes []*satellitev1.InstanceOutcome, errMsg string) (Command, error) {
	rawOutcomes, err := encodeOutcomes(outcomes)
	if err != nil {
		return Command{}, err
	}
	row, err := s.q.FinishCommand(ctx, dbsqlc.FinishCommandParams{
		ID: commandID, SatelliteID: satelliteID, State: state, Output: output, Outcomes: rawOutcomes, Error: errMsg,
	})
	if err == nil {
		return commandFromRow(row), nil
	}
	if err := translate(err, "finish command"); !errors.Is(err, ErrNotFound) {
		return Command{}, err
	}
	row, err = s.q.GetSatelliteCommand(ctx, commandID, satelliteID)
	if err != nil {
		return Command{}, translate(err, "get command")
	}
	return commandFromRow(row), nil
}

// CommandFilter narrows ListCommands.
type CommandFilter struct {
	SatelliteID *uuid.UUID
	State       *string
}

// ListCommands returns up to limit commands before cursor, newest first.
func (s *Store) ListCommands(ctx context.Context, f CommandFilter, before *Cursor, limit int) ([]Command, error) {
	at, id := cursorArgs(before)
	rows, err := s.q.ListCommands(ctx, dbsqlc.ListCommandsParams{
		SatelliteID: f.SatelliteID, State: f.State, BeforeCreatedAt: at, BeforeID: id, MaxRows: int32(limit),
	})
	if err != nil {
		return nil, translate(err, "list commands")
	}
	return commandsFromRows(rows), nil
}
