package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/services/controlplane/internal/placement"
	"github.com/orrery/orrery/services/controlplane/internal/store/internal/dbsqlc"
)

// Audit actions of placement.
const (
	ActionTeamPlaced         = "team.placed"
	ActionSatelliteDrain     = "satellite.drain"
	ActionSatelliteUndrain   = "satellite.undrain"
	ActionSatelliteDrained   = "satellite.drained"
	ActionTeamReplicasSet    = "team.placement_replicas_set"
	ActionTeamGlobalFallback = "team.global_fallback_set"
	placementActor           = "system"
	maxPlacementReplicas     = 16
)

// ErrNotGlobal is returned when an operation meant for global satellites names a team satellite.
var ErrNotGlobal = errors.New("not a global satellite")

// PlacementOptions tune a placement computation.
type PlacementOptions struct {
	// Grace is how long a satellite may go unheard before its teams move. A satellite heard within Grace
	// keeps its teams even while it shows as offline.
	Grace time.Duration
	// Slack is placement.Options.Slack.
	Slack float64
}

// PlacementResult says what a computation changed.
type PlacementResult struct {
	// Teams is how many teams were considered, Moved how many had their satellites changed.
	Teams, Moved int
	// Satellites is how many global satellites could be given teams.
	Satellites int
	// Drained lists the satellites that finished draining.
	Drained []uuid.UUID
}

// RecomputePlacement places every team on the global satellites that may serve it, one computation at a time
// across replicas, keeping what it can of the stored placement. Each team whose satellites change gets an
// audit event naming them before and after, and each satellite that gains or loses a team with instances
// gets a configure command, so it fetches its configuration at once. A draining satellite a team leaves keeps
// it as a leaving placement (its configuration still carries the team, so its open sessions keep their tools)
// until the satellite reports no open session in a heartbeat after its drain began: then it is marked
// drained, and its leaving placements go, as do those of a satellite undrained meanwhile, each with a
// configure command.
func (s *Store) RecomputePlacement(ctx context.Context, opts PlacementOptions) (PlacementResult, error) {
	var res PlacementResult
	err := s.inTx(ctx, func(q *dbsqlc.Queries) error {
		if err := q.LockPlacement(ctx); err != nil {
			return translate(err, "lock placement")
		}
		grace := opts.Grace.Seconds()
		satRows, err := q.ListPlacementSatellites(ctx, grace)
		if err != nil {
			return translate(err, "list placement satellites")
		}
		teamRows, err := q.ListPlacementTeams(ctx, grace)
		if err != nil {
			return translate(err, "list placement teams")
		}
		drainingIDs, err := q.ListDrainingSatellites(ctx)
		if err != nil {
			return translate(err, "list draining satellites")
		}
		draining := make(map[uuid.UUID]bool, len(drainingIDs))
		for _, id := range drainingIDs {
			draining[id] = true
		}
		res.Satellites, res.Teams = len(satRows), len(teamRows)
		sats := make([]placement.Satellite, len(satRows))
		for i, r := range satRows {
			sats[i] = placement.Satellite{ID: r.ID, Weight: uint32(r.Capacity)}
		}
		// Teams that global satellites may not serve are left out and lose their global placement.
		var teams []placement.Team
		var placed []int
		for i, r := range teamRows {
			if !r.Eligible {
				continue
			}
			t := placement.Team{ID: r.ID, Load: uint32(max(r.InstanceCount, 0))}
			if r.PlacementReplicas != nil {
				t.Replicas = int(*r.PlacementReplicas)
			}
			for _, p := range r.PlacedOn {
				t.Previous = append(t.Previous, p)
			}
			teams = append(teams, t)
			placed = append(placed, i)
		}
		result := placement.Place(sats, teams, placement.Options{Slack: opts.Slack})
		after := make([][]uuid.UUID, len(teamRows))
		for j, i := range placed {
			for _, id := range result[j] {
				after[i] = append(after[i], id)
			}
		}
		var changedTeams, insTeams, insSats, leaveTeams, leaveSats []uuid.UUID
		var insRanks, leaveRanks []int32
		touched := map[uuid.UUID]bool{}
		for i, r := range teamRows {
			if slices.Equal(r.PlacedOn, after[i]) {
				continue
			}
			changedTeams = append(changedTeams, r.ID)
			for rank, id := range after[i] {
				insTeams, insSats, insRanks = append(insTeams, r.ID), append(insSats, id), append(insRanks, int32(rank))
			}
			// A draining satellite the team leaves keeps it until drained, so that its open sessions keep
			// their tools; its configuration does not change.
			for rank, id := range r.PlacedOn {
				if draining[id] && !slices.Contains(after[i], id) {
					leaveTeams, leaveSats, leaveRanks = append(leaveTeams, r.ID), append(leaveSats, id), append(leaveRanks, int32(rank))
				}
			}
			// A team without instances changes no satellite's configuration: nothing to fetch.
			if r.InstanceCount > 0 {
				for _, id := range symmetricDifference(r.PlacedOn, after[i]) {
					if !draining[id] {
						touched[id] = true
					}
				}
			}
			teamID := r.ID
			if err := audit(ctx, q, AuditEvent{Actor: placementActor, TeamID: &teamID, Action: ActionTeamPlaced,
				Target:  "team:" + r.ID.String(),
				Details: map[string]string{"from": joinIDs(r.PlacedOn), "to": joinIDs(after[i])}}); err != nil {
				return err
			}
		}
		res.Moved = len(changedTeams)
		if len(changedTeams) > 0 {
			if err := q.DeleteTeamPlacements(ctx, changedTeams); err != nil {
				return translate(err, "delete placements")
			}
			if err := q.InsertTeamPlacements(ctx, insTeams, insSats, insRanks); err != nil {
				return translate(err, "insert placements")
			}
		}
		if len(leaveTeams) > 0 {
			if err := q.InsertLeavingPlacements(ctx, leaveTeams, leaveSats, leaveRanks); err != nil {
				return translate(err, "insert leaving placements")
			}
		}
		drained, err := q.MarkDrained(ctx)
		if err != nil {
			return translate(err, "mark drained")
		}
		for _, id := range drained {
			if err := audit(ctx, q, AuditEvent{Actor: placementActor, Action: ActionSatelliteDrained,
				Target: "satellite:" + id.String()}); err != nil {
				return err
			}
		}
		res.Drained = drained
		// Satellites drained or undrained drop the teams they kept while draining.
		stale, err := q.DeleteStaleLeavingPlacements(ctx)
		if err != nil {
			return translate(err, "delete leaving placements")
		}
		for _, r := range stale {
			touched[r.SatelliteID] = true
		}
		ids := make([]uuid.UUID, 0, len(touched))
		for id := range touched {
			ids = append(ids, id)
		}
		slices.SortFunc(ids, func(a, b uuid.UUID) int { return strings.Compare(a.String(), b.String()) })
		for _, id := range ids {
			if _, err := insertCommand(ctx, q, id, NewCommand{Action: &satellitev1.Command{
				Action: &satellitev1.Command_Configure{Configure: &satellitev1.ConfigureAction{Event: EventInstallationUpdated}},
			}}); err != nil {
				return err
			}
		}
		return nil
	})
	return res, err
}

// placeNewTeam places a team just created on its best-ranked global satellites, inside the caller's
// transaction, so it is served at once rather than at the next recomputation. A new team has no instances
// and weighs least of all; the next recomputation keeps this placement unless a satellite is over its bound.
// It takes no placement lock: a computation running meanwhile did not read the new team and leaves its rows
// alone, so sign-ups never wait for one.
func (s *Store) placeNewTeam(ctx context.Context, q *dbsqlc.Queries, teamID uuid.UUID) error {
	rows, err := q.ListPlacementSatellites(ctx, s.PlacementGrace().Seconds())
	if err != nil {
		return translate(err, "list placement satellites")
	}
	if len(rows) == 0 {
		return nil
	}
	sats := make([]placement.Satellite, len(rows))
	for i, r := range rows {
		sats[i] = placement.Satellite{ID: r.ID, Weight: uint32(r.Capacity)}
	}
	chosen := placement.Place(sats, []placement.Team{{ID: teamID}}, placement.Options{Slack: 1e9})[0]
	teams, ids, ranks := make([]uuid.UUID, len(chosen)), make([]uuid.UUID, len(chosen)), make([]int32, len(chosen))
	for i, id := range chosen {
		teams[i], ids[i], ranks[i] = teamID, id, int32(i)
	}
	if err := q.InsertTeamPlacements(ctx, teams, ids, ranks); err != nil {
		return translate(err, "insert placements")
	}
	return audit(ctx, q, AuditEvent{Actor: placementActor, TeamID: &teamID, Action: ActionTeamPlaced,
		Target: "team:" + teamID.String(), Details: map[string]string{"from": "", "to": joinIDs(ids)}})
}

// SetPlacementGrace sets how long a global satellite may go unheard before its teams move. Default 90 s.
func (s *Store) SetPlacementGrace(d time.Duration) { s.placementGrace.Store(int64(d)) }

// PlacementGrace is the grace period set by SetPlacementGrace.
func (s *Store) PlacementGrace() time.Duration {
	if d := s.placementGrace.Load(); d > 0 {
		return time.Duration(d)
	}
	return 90 * time.Second
}

func symmetricDifference(a, b []uuid.UUID) []uuid.UUID {
	var out []uuid.UUID
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	for _, x := range b {
		if !slices.Contains(a, x) {
			out = append(out, x)
		}
	}
	return out
}

func joinIDs(ids []uuid.UUID) string {
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = id.String()
	}
	return strings.Join(parts, ",")
}

// PlacedSatellite is a global satellite that serves a team.
type PlacedSatellite struct {
	ID          uuid.UUID
	Name        string
	URL         string
	InternalURL string
	Draining    bool
	Live        bool
	Rank        int
	PlacedAt    time.Time
}

// TeamPlacement lists the global satellites a team is placed on, best first, without the draining ones that
// keep it only until drained; live counts a satellite heard from within offlineAfter.
func (s *Store) TeamPlacement(ctx context.Context, teamID uuid.UUID, offlineAfter time.Duration) ([]PlacedSatellite, error) {
	rows, err := s.q.ListTeamPlacement(ctx, offlineAfter.Seconds(), teamID)
	if err != nil {
		return nil, translate(err, "list team placement")
	}
	out := make([]PlacedSatellite, len(rows))
	for i, r := range rows {
		out[i] = PlacedSatellite{ID: r.ID, Name: r.Name, URL: r.Url, InternalURL: r.InternalUrl, Draining: r.Draining,
			Live: r.Live, Rank: int(r.Rank), PlacedAt: r.PlacedAt}
	}
	return out, nil
}

// PlacedTeam is a team placed on a satellite.
type PlacedTeam struct {
	TeamID   uuid.UUID
	TeamSlug string
	Rank     int
	PlacedAt time.Time
}

// SatellitePlacements pages through the teams placed on a satellite, by team id after afterTeamID.
func (s *Store) SatellitePlacements(ctx context.Context, satelliteID, afterTeamID uuid.UUID, limit int) ([]PlacedTeam, error) {
	rows, err := s.q.ListSatellitePlacements(ctx, satelliteID, afterTeamID, int32(limit))
	if err != nil {
		return nil, translate(err, "list satellite placements")
	}
	out := make([]PlacedTeam, len(rows))
	for i, r := range rows {
		out[i] = PlacedTeam{TeamID: r.TeamID, TeamSlug: r.TeamSlug, Rank: int(r.Rank), PlacedAt: r.PlacedAt}
	}
	return out, nil
}

// IsLeaving reports whether a draining satellite still holds a team it served when its drain began: its
// open sessions of the team go on there, new ones go to the satellites the team is placed on.
func (s *Store) IsLeaving(ctx context.Context, teamID, satelliteID uuid.UUID) (bool, error) {
	ok, err := s.q.IsLeaving(ctx, teamID, satelliteID)
	return ok, translate(err, "check leaving placement")
}

// Peer is a live global satellite as the others of its pool reach it.
type Peer struct {
	ID          uuid.UUID
	InternalURL string
	Draining    bool
}

// PoolPeers lists the global satellites heard from within offlineAfter, by id.
func (s *Store) PoolPeers(ctx context.Context, offlineAfter time.Duration) ([]Peer, error) {
	rows, err := s.q.ListPoolPeers(ctx, offlineAfter.Seconds())
	if err != nil {
		return nil, translate(err, "list pool peers")
	}
	out := make([]Peer, len(rows))
	for i, r := range rows {
		out[i] = Peer{ID: r.ID, InternalURL: r.InternalUrl, Draining: r.Draining}
	}
	return out, nil
}

// SetSatelliteDraining starts (draining true) or ends a global satellite's drain, with its audit event. The
// caller recomputes the placement afterwards, which moves the satellite's teams away.
func (s *Store) SetSatelliteDraining(ctx context.Context, id uuid.UUID, draining bool, actor AuditEvent) (Satellite, error) {
	var sat Satellite
	err := s.inTx(ctx, func(q *dbsqlc.Queries) error {
		row, err := q.SetSatelliteDraining(ctx, draining, id)
		if err != nil {
			return translate(err, "set satellite draining")
		}
		sat = satelliteFromRow(row)
		e := actor
		e.Action, e.Target = ActionSatelliteUndrain, "satellite:"+id.String()
		if draining {
			e.Action = ActionSatelliteDrain
		}
		if err := audit(ctx, q, e); err != nil {
			return err
		}
		// It fetches its configuration at once: applying one, a satellite forgets the introspections it
		// cached, which would open new sessions there for teams that now go elsewhere.
		_, err = insertCommand(ctx, q, id, NewCommand{Action: &satellitev1.Command{
			Action: &satellitev1.Command_Configure{Configure: &satellitev1.ConfigureAction{Event: EventInstallationUpdated}},
		}, Priority: satellitev1.CommandPriority_COMMAND_PRIORITY_IMMEDIATE})
		return err
	})
	return sat, err
}

// TeamPlacementSettings are a team's placement settings.
type TeamPlacementSettings struct {
	// Replicas is R; zero means the default.
	Replicas int
	// GlobalFallback lets global satellites serve a team that has team satellites while none is live.
	GlobalFallback bool
}

// TeamPlacementSettings returns a team's placement settings.
func (s *Store) TeamPlacementSettings(ctx context.Context, teamID uuid.UUID) (TeamPlacementSettings, error) {
	row, err := s.q.GetTeamPlacementSettings(ctx, teamID)
	if err != nil {
		return TeamPlacementSettings{}, translate(err, "get team placement settings")
	}
	out := TeamPlacementSettings{GlobalFallback: row.GlobalFallback}
	if row.PlacementReplicas != nil {
		out.Replicas = int(*row.PlacementReplicas)
	}
	return out, nil
}

// SetTeamReplicas sets a team's R; zero restores the default.
func (s *Store) SetTeamReplicas(ctx context.Context, teamID uuid.UUID, replicas int, actor AuditEvent) error {
	if replicas < 0 || replicas > maxPlacementReplicas {
		return fmt.Errorf("%w: replicas must be between 0 and %d", ErrInvalid, maxPlacementReplicas)
	}
	var r *int32
	if replicas > 0 {
		v := int32(replicas)
		r = &v
	}
	return s.inTx(ctx, func(q *dbsqlc.Queries) error {
		if _, err := q.SetTeamReplicas(ctx, r, teamID); err != nil {
			return translate(err, "set team replicas")
		}
		e := actor
		e.TeamID, e.Action, e.Target = &teamID, ActionTeamReplicasSet, "team:"+teamID.String()
		e.Details = map[string]string{"replicas": fmt.Sprint(replicas)}
		return audit(ctx, q, e)
	})
}

// SetTeamGlobalFallback sets whether global satellites serve the team while none of its own is live.
func (s *Store) SetTeamGlobalFallback(ctx context.Context, teamID uuid.UUID, enabled bool, actor AuditEvent) (Team, error) {
	var team Team
	err := s.inTx(ctx, func(q *dbsqlc.Queries) error {
		row, err := q.SetTeamGlobalFallback(ctx, enabled, teamID)
		if err != nil {
			return translate(err, "set team global fallback")
		}
		team = teamFromRow(row)
		e := actor
		e.TeamID, e.Action, e.Target = &teamID, ActionTeamGlobalFallback, "team:"+teamID.String()
		e.Details = map[string]string{"enabled": fmt.Sprint(enabled)}
		return audit(ctx, q, e)
	})
	return team, err
}

// TeamEndpointBases returns where a team's endpoint is: the URL of its own satellite when it has one, and
// whether global satellites serve it.
func (s *Store) TeamEndpointBases(ctx context.Context, teamID uuid.UUID) (own string, global bool, err error) {
	own, err = s.q.TeamOwnEndpointBase(ctx, teamID)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return "", false, translate(err, "get team endpoint")
	}
	global, err = s.q.TeamPlacedGlobally(ctx, teamID)
	return own, global, translate(err, "get team placement")
}
