-- name: LockPlacement :exec
-- LockPlacement makes one placement computation at a time across control-plane replicas.
select pg_advisory_xact_lock(hashtextextended('orrery.placement', 0));

-- name: ListPlacementSatellites :many
-- ListPlacementSatellites lists the global satellites that may be given teams: active, not draining, and
-- heard from within the grace period.
select id, capacity from satellites
where type = 'global' and revoked_at is null and activated_at is not null and draining_at is null
  and last_heartbeat_at > now() - make_interval(secs => @grace_seconds::float8)
order by id;

-- name: ListPlacementTeams :many
-- ListPlacementTeams lists every team with its load (instances), R, whether global satellites may serve it
-- (it has no active team satellite, or its admins allow the fallback and none is live), and the global
-- satellites it is placed on, best first. Aggregates joined by hash, not subqueries per team: the periodic
-- run reads every team.
with counts as (
    select team_id, count(*)::int as n from instances group by team_id
), own as (
    select team_id, bool_or(last_heartbeat_at > now() - make_interval(secs => @grace_seconds::float8)) as live
    from satellites
    where type = 'team' and revoked_at is null and activated_at is not null
    group by team_id
), placed as (
    select team_id, array_agg(satellite_id order by rank) as ids from team_placements where not leaving
    group by team_id
)
select t.id, t.placement_replicas, coalesce(c.n, 0)::int as instance_count,
       (o.team_id is null or (t.global_fallback and not coalesce(o.live, false)))::bool as eligible,
       coalesce(p.ids, '{}')::uuid[] as placed_on
from teams t
left join counts c on c.team_id = t.id
left join own o on o.team_id = t.id
left join placed p on p.team_id = t.id
order by t.id;

-- name: DeleteTeamPlacements :exec
-- DeleteTeamPlacements deletes the placements of teams, not their leaving rows.
delete from team_placements where team_id = any(@team_ids::uuid[]) and not leaving;

-- name: InsertTeamPlacements :exec
-- InsertTeamPlacements places teams; a leaving row of the same satellite serves the team again.
insert into team_placements (team_id, satellite_id, rank)
select unnest(@team_ids::uuid[]), unnest(@satellite_ids::uuid[]), unnest(@ranks::int[])
on conflict (team_id, satellite_id) do update set rank = excluded.rank, leaving = false, placed_at = now();

-- name: InsertLeavingPlacements :exec
-- InsertLeavingPlacements keeps teams on draining satellites they no longer are placed on, until those are
-- drained.
insert into team_placements (team_id, satellite_id, rank, leaving)
select unnest(@team_ids::uuid[]), unnest(@satellite_ids::uuid[]), unnest(@ranks::int[]), true
on conflict (team_id, satellite_id) do nothing;

-- name: ListDrainingSatellites :many
-- ListDrainingSatellites lists the global satellites draining and not yet drained.
select id from satellites
where type = 'global' and revoked_at is null and draining_at is not null and drained_at is null
order by id;

-- name: DeleteStaleLeavingPlacements :many
-- DeleteStaleLeavingPlacements deletes the leaving rows of satellites no longer draining (drained,
-- undrained or revoked), returning the satellites whose configuration changes.
delete from team_placements p
using satellites s
where p.leaving and s.id = p.satellite_id
  and (s.draining_at is null or s.drained_at is not null or s.revoked_at is not null)
returning p.satellite_id, p.team_id;

-- name: ListTeamPlacement :many
-- ListTeamPlacement lists the global satellites a team is placed on, best first, with how other satellites
-- reach them and whether they are live.
select s.id, s.name, s.internal_url, s.url, (s.draining_at is not null)::bool as draining,
       (s.last_heartbeat_at > now() - make_interval(secs => @offline_seconds::float8))::bool as live, p.rank,
       p.placed_at
from team_placements p
join satellites s on s.id = p.satellite_id
where p.team_id = @team_id and not p.leaving
order by p.rank;

-- name: ListSatellitePlacements :many
-- ListSatellitePlacements pages through the teams placed on a satellite, by team id.
select p.team_id, t.slug as team_slug, p.rank, p.placed_at
from team_placements p
join teams t on t.id = p.team_id
where p.satellite_id = @satellite_id and p.team_id > @after_team_id and not p.leaving
order by p.team_id
limit @max_rows;

-- name: IsLeaving :one
-- IsLeaving reports whether a draining satellite still holds a team it served when its drain began.
select exists (select 1 from team_placements where team_id = @team_id and satellite_id = @satellite_id and leaving);

-- name: ListPoolPeers :many
-- ListPoolPeers lists the live global satellites, by id: the peers of a pool.
select id, internal_url, (draining_at is not null)::bool as draining from satellites
where type = 'global' and revoked_at is null and activated_at is not null
  and last_heartbeat_at > now() - make_interval(secs => @offline_seconds::float8)
order by id;

-- name: SetSatelliteDraining :one
-- SetSatelliteDraining starts or ends a global satellite's drain.
update satellites
set draining_at = case when @draining::bool then coalesce(draining_at, now()) end,
    drained_at  = null
where id = @id and type = 'global' and revoked_at is null
returning *;

-- name: MarkDrained :many
-- MarkDrained marks drained the draining satellites placed for no team that report no open session in a
-- heartbeat received after their drain began: a count sent before then may be stale.
update satellites s set drained_at = now()
where s.draining_at is not null and s.drained_at is null and s.open_sessions = 0
  and s.last_heartbeat_at > s.draining_at
  and not exists (select 1 from team_placements p where p.satellite_id = s.id and not p.leaving)
returning s.id;

-- name: SetTeamReplicas :one
update teams set placement_replicas = sqlc.narg(replicas) where id = @id returning id;

-- name: SetTeamGlobalFallback :one
update teams set global_fallback = @global_fallback where id = @id returning *;

-- name: TeamPlacedGlobally :one
-- TeamPlacedGlobally reports whether global satellites serve the team.
select exists (select 1 from team_placements where team_id = @team_id and not leaving);

-- name: GetTeamPlacementSettings :one
select placement_replicas, global_fallback from teams where id = @id;
