-- name: ListPolicies :many
-- ListPolicies lists the global policies and, when team_id is not null, the team's, global first.
select * from policies
where team_id is null or team_id = sqlc.narg(team_id)::uuid
order by team_id nulls first, name;

-- name: ListPoliciesForTeams :many
-- ListPoliciesForTeams lists the global policies and those of the given teams, for a satellite's
-- configuration, by team (global first) and name.
select * from policies
where team_id is null or team_id = any(@team_ids::uuid[])
order by team_id nulls first, name;

-- name: CountPolicies :one
-- CountPolicies counts the policies of one scope: a team's, or the global ones when team_id is null.
select count(*) from policies where team_id is not distinct from sqlc.narg(team_id)::uuid;

-- name: UpsertPolicy :one
-- UpsertPolicy creates or replaces the policy of a name in a scope. inserted is true for a new policy.
insert into policies (team_id, name, kind, expression, redact_paths, redact_patterns, calls_per_minute, rate_limit_key)
values (sqlc.narg(team_id)::uuid, @name, @kind, @expression, @redact_paths::text[], @redact_patterns::text[],
        @calls_per_minute, @rate_limit_key)
on conflict (team_id, name) do update set
    kind = excluded.kind, expression = excluded.expression, redact_paths = excluded.redact_paths,
    redact_patterns = excluded.redact_patterns, calls_per_minute = excluded.calls_per_minute,
    rate_limit_key = excluded.rate_limit_key, updated_at = now()
returning policies.*, (xmax = 0) as inserted;

-- name: DeletePolicy :one
-- DeletePolicy deletes the policy of a name in a scope.
delete from policies where team_id is not distinct from sqlc.narg(team_id)::uuid and name = @name
returning id;

-- name: ListLiveSatellites :many
-- ListLiveSatellites lists every live satellite, where a change to global policies is announced.
select id from satellites where revoked_at is null order by created_at, id;

-- name: LockPolicyScope :exec
-- LockPolicyScope serializes, until the transaction ends, the saves of one scope's policies, so that two at
-- once cannot both take the last place under the scope's bound.
select pg_advisory_xact_lock(hashtextextended('orrery.policies:' || coalesce(sqlc.narg(team_id)::uuid::text, 'global'), 0));
