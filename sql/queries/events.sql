-- name: RecordReceivedEvents :many
-- RecordReceivedEvents returns the ids among ids that were not seen before.
insert into received_events (id, satellite_id)
select unnest(@ids::uuid[]), @satellite_id::uuid
on conflict (id) do nothing
returning id;

-- name: ListInstanceOwners :many
select id, installation_id, team_id from instances where id = any(@ids::text[]);

-- name: InsertInstanceEvent :exec
insert into instance_events (id, team_id, installation_id, instance_id, kind, status, message, exit_code, occurred_at)
values (@id, @team_id, @installation_id, @instance_id, @kind, @status, @message, sqlc.narg(exit_code), @occurred_at);

-- name: SetInstanceStatus :exec
-- SetInstanceStatus applies a status change unless a newer one is already applied.
update instances
set status = @status, status_message = @message, status_updated_at = @occurred_at
where id = @id and team_id = @team_id and status_updated_at <= @occurred_at;

-- name: InsertServerLog :exec
insert into server_logs (team_id, installation_id, instance_id, level, message, occurred_at)
values (@team_id, @installation_id, @instance_id, @level, @message, @occurred_at);

-- name: TrimServerLogs :exec
-- TrimServerLogs keeps the newest keep lines of an installation.
delete from server_logs
where id in (select k.id from server_logs k where k.installation_id = @installation_id order by k.id desc offset @keep);

-- name: InsertRequestLog :exec
insert into request_logs (
    team_id, installation_id, instance_id, user_id, tool_name, duration_ms, success, error, request, response,
    occurred_at, trace_id)
values (@team_id, @installation_id, @instance_id, sqlc.narg(user_id), @tool_name, @duration_ms, @success, @error,
        @request, @response, @occurred_at, @trace_id);

-- name: TrimRequestLogs :exec
-- TrimRequestLogs keeps the newest keep request logs of an installation.
delete from request_logs
where id in (select k.id from request_logs k where k.installation_id = @installation_id order by k.id desc offset @keep);

-- name: DeleteDiscoveredTools :exec
delete from discovered_tools where instance_id = @instance_id and team_id = @team_id;

-- name: InsertDiscoveredTools :exec
insert into discovered_tools (instance_id, team_id, installation_id, name, description, input_schema, token_count, discovered_at,
                              title, output_schema, annotations)
select @instance_id::text, @team_id::uuid, @installation_id::uuid, unnest(@names::text[]), unnest(@descriptions::text[]),
       unnest(@input_schemas::jsonb[]), unnest(@token_counts::int[]), @discovered_at::timestamptz,
       unnest(@titles::text[]), unnest(@output_schemas::jsonb[]), unnest(@annotations::jsonb[]);

-- name: InsertDroppedEventReport :exec
insert into dropped_event_reports (id, satellite_id, count, reason, occurred_at)
values (@id, @satellite_id, @count, @reason, @occurred_at);

-- name: ListDiscoveredTools :many
select * from discovered_tools where instance_id = @instance_id and team_id = @team_id order by name;

-- name: GetInstance :one
select * from instances where id = @id and team_id = @team_id;

-- name: LockInstallationEvents :exec
-- LockInstallationEvents makes writers of the same installations' events wait for each other until commit,
-- so each installation's log, request and event ids become visible in increasing order and a stream's cursor
-- never skips a row that commits late. Locks are taken in a fixed order, so two batches cannot deadlock.
select pg_advisory_xact_lock(@lock_class::int, hashtext(ordered.id::text))
from (select unnest(@installation_ids::uuid[]) as id order by 1) as ordered;

-- name: NotifyStreams :exec
-- NotifyStreams announces new entries to the streams of every replica; PostgreSQL delivers the notifications
-- when the transaction commits, and only then.
select pg_notify(@channel::text, k) from unnest(@keys::text[]) as k;
