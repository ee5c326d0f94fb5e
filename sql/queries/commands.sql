-- name: InsertCommand :one
insert into satellite_commands (satellite_id, team_id, type, priority, payload, expires_at)
values (@satellite_id, sqlc.narg(team_id), @type, @priority, @payload,
        now() + make_interval(secs => @ttl_seconds::float8))
returning *;

-- name: NotifyCommand :exec
select pg_notify(@channel::text, @payload::text);

-- name: ExpireCommands :exec
-- ExpireCommands retires this satellite's commands that outlived their expiry, so they are never delivered.
update satellite_commands
set state = 'expired', completed_at = now()
where satellite_id = @satellite_id and state in ('pending', 'dispatched') and expires_at <= now();

-- name: FailExhaustedCommands :exec
-- FailExhaustedCommands fails delivered commands whose last allowed lease lapsed without a result.
update satellite_commands
set state = 'failed', completed_at = now(),
    error = 'no result after ' || attempts || ' deliveries'
where satellite_id = @satellite_id and state = 'dispatched' and lease_expires_at <= now()
  and attempts >= max_attempts;

-- name: ClaimCommands :many
-- ClaimCommands delivers this satellite's due commands: pending ones, and dispatched ones whose lease
-- lapsed. SKIP LOCKED lets two concurrent polls of one satellite split the work instead of waiting.
with due as (
    select d.id from satellite_commands d
    where d.satellite_id = @satellite_id and d.expires_at > now()
      and (d.state = 'pending'
           or (d.state = 'dispatched' and d.lease_expires_at <= now() and d.attempts < d.max_attempts))
    order by d.priority desc, d.created_at, d.id
    limit @max_rows
    for update skip locked
)
update satellite_commands c
set state = 'dispatched', attempts = c.attempts + 1,
    lease_expires_at = least(now() + make_interval(secs => @lease_seconds::float8), c.expires_at)
from due
where c.id = due.id
returning c.*;

-- name: NextCommandWakeup :one
-- NextCommandWakeup is the earliest lapse of one of this satellite's leases: the command is then due again, or
-- has used its last attempt and fails.
select lease_expires_at from satellite_commands
where satellite_id = @satellite_id and state = 'dispatched'
order by lease_expires_at
limit 1;

-- name: FinishCommand :one
update satellite_commands
set state = @state, output = @output, error = @error, completed_at = now()
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
