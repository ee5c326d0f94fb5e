-- name: CreateSatellite :one
insert into satellites (name, type, team_id, api_key_id, api_key_hash, version, registration_token_id)
values (@name, @type, sqlc.narg(team_id), @api_key_id, @api_key_hash, @version, @registration_token_id)
returning *;

-- name: GetSatellite :one
select * from satellites where id = @id;

-- name: GetSatelliteByKeyID :one
select * from satellites where api_key_id = @api_key_id;

-- name: RecordHeartbeat :one
-- RecordHeartbeat activates a new satellite, keeps the newest URL a satellite sent, appends the heartbeat to
-- the history and drops processes the satellite no longer reports, in one round trip. It matches no row
-- unless the satellite is live and still has the API key whose hash is given.
with beat as (
    update satellites s
    set activated_at      = coalesce(s.activated_at, now()),
        last_heartbeat_at = now(),
        offline_since     = null,
        url               = case when @url::text <> '' then @url::text else s.url end,
        version           = case when @version::text <> '' then @version::text else s.version end,
        system_metrics    = @system_metrics,
        process_count     = @process_count,
        capacity          = @capacity,
        internal_url      = @internal_url,
        open_sessions     = @open_sessions
    where s.id = @id and s.api_key_hash = @api_key_hash and s.revoked_at is null
    returning s.*
), history as (
    insert into satellite_heartbeats (satellite_id, system_metrics, process_counts)
    select beat.id, @system_metrics, @process_counts from beat
), stale as (
    delete from satellite_processes p
    using beat
    where p.satellite_id = beat.id and not (p.instance_id = any(@keep_instance_ids::text[]))
)
select * from beat;

-- name: RecordHeartbeatBatch :many
-- RecordHeartbeatBatch stores in one statement the heartbeats a replica held back, of active satellites
-- whose URL, version, capacity and internal URL they left unchanged, each as RecordHeartbeat would store it;
-- the processes each reported ((process_satellite_ids, instance_ids) pairs) are kept and are for
-- UpsertSatelliteProcesses to store. It returns the satellites it stored: one it leaves out was revoked, or
-- its key replaced, since the heartbeat was taken.
with beat as (
    update satellites s
    set last_heartbeat_at = greatest(s.last_heartbeat_at, b.received_at),
        offline_since     = null,
        system_metrics    = b.system_metrics,
        process_count     = b.process_count,
        open_sessions     = b.open_sessions
    from (select unnest(@ids::uuid[]) as id, unnest(@api_key_hashes::text[]) as api_key_hash,
                 unnest(@received_at::timestamptz[]) as received_at, unnest(@system_metrics::jsonb[]) as system_metrics,
                 unnest(@process_count::int[]) as process_count, unnest(@process_counts::jsonb[]) as process_counts,
                 unnest(@open_sessions::int[]) as open_sessions) as b
    where s.id = b.id and s.api_key_hash = b.api_key_hash and s.revoked_at is null
    returning s.id, b.received_at, b.system_metrics, b.process_counts
), history as (
    insert into satellite_heartbeats (satellite_id, received_at, system_metrics, process_counts)
    select id, received_at, system_metrics, process_counts from beat
), stale as (
    delete from satellite_processes p
    using beat
    where p.satellite_id = beat.id
      and not exists (select from (select unnest(@process_satellite_ids::uuid[]) as satellite_id,
                                          unnest(@instance_ids::text[]) as instance_id) k
                      where k.satellite_id = p.satellite_id and k.instance_id = p.instance_id)
)
select id from beat;

-- name: UpsertSatelliteProcesses :exec
insert into satellite_processes (
    satellite_id, instance_id, team_id, installation_id, status, health, pid, memory_bytes, uptime_seconds,
    request_count, reported_at)
select unnest(@satellite_ids::uuid[]), unnest(@instance_ids::text[]), unnest(@team_ids::uuid[]), unnest(@installation_ids::uuid[]),
       unnest(@statuses::text[]), unnest(@healths::text[]), unnest(@pids::int[]), unnest(@memory_bytes::bigint[]),
       unnest(@uptime_seconds::float8[]), unnest(@request_counts::bigint[]), now()
on conflict (satellite_id, instance_id) do update
set team_id = excluded.team_id, installation_id = excluded.installation_id, status = excluded.status,
    health = excluded.health, pid = excluded.pid, memory_bytes = excluded.memory_bytes,
    uptime_seconds = excluded.uptime_seconds, request_count = excluded.request_count, reported_at = now();

-- name: ListSatellites :many
-- ListSatellites lists one team's satellites, or every satellite when team_id is null.
select * from satellites
where (sqlc.narg(team_id)::uuid is null or team_id = sqlc.narg(team_id))
  and (sqlc.narg(after_created_at)::timestamptz is null
       or (created_at, id) > (sqlc.narg(after_created_at)::timestamptz, sqlc.narg(after_id)::uuid))
order by created_at, id
limit @max_rows;

-- name: RevokeSatellite :one
update satellites set revoked_at = coalesce(revoked_at, now())
where id = @id and (sqlc.narg(team_id)::uuid is null or team_id = sqlc.narg(team_id))
returning *;

-- name: ListSatellitesServingTeam :many
-- ListSatellitesServingTeam lists the live satellites a team's commands fan out to: its own team satellites and
-- the global satellites it is placed on.
select s.id from satellites s
where s.revoked_at is null
  and (s.team_id = @team_id
       or (s.type = 'global' and exists (
           select 1 from team_placements p where p.team_id = @team_id and p.satellite_id = s.id)))
order by s.created_at, s.id;

-- name: ListGlobalSatellites :many
-- ListGlobalSatellites lists the live global satellites, where an operator's command to all of them goes.
select id from satellites
where revoked_at is null and type = 'global'
order by created_at, id;

-- name: SatelliteInScope :one
-- SatelliteInScope finds a satellite of the team, or any satellite when team_id is null.
select id from satellites where id = @id and (sqlc.narg(team_id)::uuid is null or team_id = sqlc.narg(team_id));

-- name: ListSatelliteHeartbeats :many
select id, received_at, system_metrics, process_counts from satellite_heartbeats
where satellite_id = @satellite_id and (sqlc.narg(before_id)::bigint is null or id < sqlc.narg(before_id)::bigint)
order by id desc
limit @max_rows;

-- name: ListSatelliteProcesses :many
select * from satellite_processes
where satellite_id = @satellite_id and instance_id > @after_instance_id
order by instance_id
limit @max_rows;

-- name: ListDroppedEventReports :many
select id, count, reason, occurred_at from dropped_event_reports
where satellite_id = @satellite_id
  and (sqlc.narg(before_occurred_at)::timestamptz is null
       or (occurred_at, id) < (sqlc.narg(before_occurred_at)::timestamptz, sqlc.narg(before_id)::uuid))
order by occurred_at desc, id desc
limit @max_rows;

-- name: CountDroppedEvents :one
select coalesce(sum(count), 0)::bigint from dropped_event_reports where satellite_id = @satellite_id;
