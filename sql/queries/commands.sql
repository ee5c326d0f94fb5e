-- name: InsertCommand :one
insert into satellite_commands (satellite_id, team_id, type, priority, action, expires_at)
values (@satellite_id, sqlc.narg(team_id), @type, @priority, @action,
        now() + make_interval(secs => @ttl_seconds::float8))
returning *;

-- name: NotifyCommand :exec
select pg_notify(@channel::text, @payload::text);

-- name: ClaimCommands :one
-- ClaimCommands delivers this satellite's due commands under a lease: pending ones, and dispatched ones whose
-- lease lapsed with attempts left. In the same statement it expires commands past their expiry, so they are
-- never delivered, and fails those whose last lease lapsed; the three sets are disjoint. SKIP LOCKED lets two
-- concurrent polls of one satellite split the work.
-- It returns no row unless the satellite is live and still has the API key whose hash is given, so the poll
-- needs no separate key check; an inactive satellite gets active = false and no commands.
with live as (
    select s.id, s.activated_at is not null as active from satellites s
    where s.id = @satellite_id and s.api_key_hash = @api_key_hash and s.revoked_at is null
), expired as (
    update satellite_commands e
    set state = 'expired', completed_at = now()
    where e.satellite_id in (select id from live) and e.state in ('pending', 'dispatched') and e.expires_at <= now()
    returning e.id
), exhausted as (
    update satellite_commands x
    set state = 'failed', completed_at = now(), error = 'no result after ' || x.attempts || ' deliveries'
    where x.satellite_id in (select id from live) and x.state = 'dispatched' and x.expires_at > now()
      and x.lease_expires_at <= now() and x.attempts >= x.max_attempts
    returning x.id
), due as (
    select d.id from satellite_commands d
    where d.satellite_id in (select id from live where active) and d.expires_at > now()
      and (d.state = 'pending'
           or (d.state = 'dispatched' and d.lease_expires_at <= now() and d.attempts < d.max_attempts))
    order by d.priority desc, d.created_at, d.id
    limit @max_rows
    for update skip locked
), claimed as (
    update satellite_commands c
    set state = 'dispatched', attempts = c.attempts + 1,
        lease_expires_at = least(now() + make_interval(secs => @lease_seconds::float8), c.expires_at)
    from due
    where c.id = due.id
    returning c.*
)
select live.active::boolean as active,
       coalesce((select jsonb_agg(to_jsonb(claimed) order by claimed.priority desc, claimed.created_at, claimed.id)
                 from claimed), '[]')::jsonb as commands,
       -- The earliest lapse of a lease as the statement found them, for a poll that got nothing and waits:
       -- the command is then due again, or has used its last attempt and fails. It spares an empty long poll
       -- a second round trip; a lease this statement just ended only wakes the poll once more for nothing.
       wake.lease_expires_at as next_wakeup
from live
left join lateral (
    select w.lease_expires_at from satellite_commands w
    where w.satellite_id = live.id and w.state = 'dispatched'
    order by w.lease_expires_at
    limit 1
) wake on true;

-- name: FinishCommand :one
update satellite_commands
set state = @state, output = @output, outcomes = @outcomes, error = @error, completed_at = now()
where id = @id and satellite_id = @satellite_id and state in ('pending', 'dispatched')
returning *;

-- name: GetSatelliteCommand :one
select * from satellite_commands where id = @id and satellite_id = @satellite_id;

-- name: ListCommands :many
select * from satellite_commands
where (sqlc.narg(satellite_id)::uuid is null or satellite_id = sqlc.narg(satellite_id)::uuid)
  and (sqlc.narg(state)::text is null or state = sqlc.narg(state)::text)
  and (sqlc.narg(before_created_at)::timestamptz is null
       or (created_at, id) < (sqlc.narg(before_created_at)::timestamptz, sqlc.narg(before_id)::uuid))
order by created_at desc, id desc
limit @max_rows;
