package store

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/internal/policy"
	"github.com/orrery/orrery/services/controlplane/internal/store/internal/dbsqlc"
)

// Policy is a stored policy.
type Policy struct {
	policy.Definition
	CreatedAt, UpdatedAt time.Time
}

func policyFromRow(r dbsqlc.Policy) Policy {
	p := Policy{Definition: policy.Definition{
		ID: r.ID.String(), Name: r.Name, Kind: policy.Kind(r.Kind), Expression: r.Expression,
		RedactPaths: r.RedactPaths, RedactPatterns: r.RedactPatterns, CallsPerMinute: int(r.CallsPerMinute),
		RateKey: policy.RateKey(r.RateLimitKey),
	}, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt}
	if r.TeamID != nil {
		p.TeamID = r.TeamID.String()
	}
	return p
}

func policiesFromRows(rows []dbsqlc.Policy) []Policy {
	out := make([]Policy, len(rows))
	for i, r := range rows {
		out[i] = policyFromRow(r)
	}
	return out
}

// ListPolicies returns the global policies and, when teamID is not nil, the team's, global first, by name.
func (s *Store) ListPolicies(ctx context.Context, teamID *uuid.UUID) ([]Policy, error) {
	rows, err := s.q.ListPolicies(ctx, teamID)
	if err != nil {
		return nil, translate(err, "list policies")
	}
	return policiesFromRows(rows), nil
}

// PoliciesForTeams returns the global policies and those of teams, as a satellite's configuration
// carries them.
func (s *Store) PoliciesForTeams(ctx context.Context, teams []uuid.UUID) ([]Policy, error) {
	rows, err := s.q.ListPoliciesForTeams(ctx, teams)
	if err != nil {
		return nil, translate(err, "list policies of teams")
	}
	return policiesFromRows(rows), nil
}

// SetPolicy creates or replaces the policy of d's name in its scope (d.TeamID, or global when empty), which
// the caller has compiled. In the same transaction it tells the satellites concerned to fetch their
// configuration and appends actor (with ActorID and Actor set) to the audit log. A scope that holds
// policy.MaxPerScope policies takes no new one: ErrLimit.
func (s *Store) SetPolicy(ctx context.Context, d policy.Definition, actor AuditEvent) (Policy, bool, error) {
	teamID, err := policyScope(d.TeamID)
	if err != nil {
		return Policy{}, false, err
	}
	var (
		p       Policy
		created bool
	)
	err = s.inTx(ctx, func(q *dbsqlc.Queries) error {
		if err := q.LockPolicyScope(ctx, teamID); err != nil {
			return translate(err, "lock policies")
		}
		r, err := q.UpsertPolicy(ctx, dbsqlc.UpsertPolicyParams{
			TeamID: teamID, Name: d.Name, Kind: string(d.Kind), Expression: d.Expression,
			RedactPaths: nonNil(d.RedactPaths), RedactPatterns: nonNil(d.RedactPatterns),
			CallsPerMinute: int32(d.CallsPerMinute), RateLimitKey: string(d.RateKey),
		})
		if err != nil {
			return translate(err, "save policy")
		}
		created = r.Inserted
		p = policyFromRow(dbsqlc.Policy{ID: r.ID, TeamID: r.TeamID, Name: r.Name, Kind: r.Kind, Expression: r.Expression,
			RedactPaths: r.RedactPaths, RedactPatterns: r.RedactPatterns, CallsPerMinute: r.CallsPerMinute,
			RateLimitKey: r.RateLimitKey, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt})
		if created {
			n, err := q.CountPolicies(ctx, teamID)
			if err != nil {
				return translate(err, "count policies")
			}
			if n > policy.MaxPerScope {
				return fmt.Errorf("save policy: %w: a scope holds at most %d policies", ErrLimit, policy.MaxPerScope)
			}
		}
		if err := policiesChanged(ctx, q, teamID); err != nil {
			return err
		}
		e := actor
		e.TeamID, e.Action, e.Target = teamID, "policy.set", d.Name
		e.Details = map[string]string{"kind": string(d.Kind), "created": fmt.Sprint(created)}
		return audit(ctx, q, e)
	})
	return p, created, err
}

// DeletePolicy deletes the policy of name in the scope of teamID (global when empty), telling the satellites
// concerned and appending actor to the audit log. A policy that does not exist is ErrNotFound.
func (s *Store) DeletePolicy(ctx context.Context, teamIDText, name string, actor AuditEvent) error {
	teamID, err := policyScope(teamIDText)
	if err != nil {
		return err
	}
	return s.inTx(ctx, func(q *dbsqlc.Queries) error {
		if _, err := q.DeletePolicy(ctx, teamID, name); err != nil {
			return translate(err, "delete policy")
		}
		if err := policiesChanged(ctx, q, teamID); err != nil {
			return err
		}
		e := actor
		e.TeamID, e.Action, e.Target = teamID, "policy.deleted", name
		return audit(ctx, q, e)
	})
}

func policyScope(teamID string) (*uuid.UUID, error) {
	if teamID == "" {
		return nil, nil
	}
	id, err := uuid.Parse(teamID)
	if err != nil {
		return nil, fmt.Errorf("%w: team id %q", ErrInvalid, teamID)
	}
	return &id, nil
}

// policiesChanged queues, inside the caller's transaction, a configure command for every satellite that a
// change of the scope's policies concerns: those serving the team, or every live satellite for a global
// policy. It is an installation update of no particular installation, which makes a satellite fetch its
// configuration.
func policiesChanged(ctx context.Context, q *dbsqlc.Queries, teamID *uuid.UUID) error {
	if teamID != nil {
		return configure(ctx, q, *teamID, EventInstallationUpdated, uuid.Nil)
	}
	ids, err := q.ListLiveSatellites(ctx)
	if err != nil {
		return translate(err, "list satellites")
	}
	for _, id := range ids {
		_, err := insertCommand(ctx, q, id, NewCommand{Action: &satellitev1.Command{
			Action: &satellitev1.Command_Configure{Configure: &satellitev1.ConfigureAction{Event: EventInstallationUpdated}},
		}})
		if err != nil {
			return err
		}
	}
	return nil
}
