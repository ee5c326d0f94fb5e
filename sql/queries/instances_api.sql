-- Reads behind orrery.api.v1.InstanceService. Every query takes the caller's team, and a user_id that, when
-- set, narrows the result to that user's own instances (team users); null shows the whole team (admins).

-- name: ListVisibleInstances :many
select * from instances
where team_id = @team_id
  and (sqlc.narg(installation_id)::uuid is null or installation_id = sqlc.narg(installation_id))
  and (sqlc.narg(user_id)::uuid is null or user_id = sqlc.narg(user_id))
  and id > @after_id
order by id
limit @max_rows;

-- name: InstallationInTeam :one
select exists (select 1 from installations where id = @id and team_id = @team_id);

-- name: RecentInstanceEvents :many
select * from instance_events where instance_id = @instance_id and team_id = @team_id order by seq desc limit @max_rows;

-- name: GetVisibleInstance :one
-- GetVisibleInstance returns an instance with the number of tools it last reported.
select sqlc.embed(i), (select count(*) from discovered_tools d where d.instance_id = i.id and d.team_id = i.team_id) as tool_count
from instances i
where i.id = @id and i.team_id = @team_id and (sqlc.narg(user_id)::uuid is null or i.user_id = sqlc.narg(user_id));

-- name: LatestInstanceEventSeq :one
select coalesce(max(seq), 0)::bigint from instance_events where installation_id = @installation_id and team_id = @team_id;

-- name: InstanceEventsAfter :many
select e.* from instance_events e
where e.team_id = @team_id and e.installation_id = @installation_id and e.seq > @after_seq
  and (sqlc.narg(user_id)::uuid is null or exists (
      select 1 from instances i where i.id = e.instance_id and i.team_id = e.team_id and i.user_id = sqlc.narg(user_id)))
order by e.seq
limit @max_rows;

-- name: ListServerLogs :many
-- ListServerLogs reads the lines with ids strictly between after_id and before_id, newest or oldest first.
-- Retention keeps at most a few hundred rows per installation, so the sort is cheap.
select l.* from server_logs l
where l.team_id = @team_id and l.installation_id = @installation_id
  and l.id > @after_id and l.id < @before_id
  and (sqlc.narg(user_id)::uuid is null or exists (
      select 1 from instances i where i.id = l.instance_id and i.team_id = l.team_id and i.user_id = sqlc.narg(user_id)))
order by case when @newest_first::bool then -l.id else l.id end
limit @max_rows;

-- name: ListRequestLogs :many
-- ListRequestLogs reads request logs, without their bodies, like ListServerLogs.
select r.id, r.instance_id, r.user_id, r.tool_name, r.duration_ms, r.success, r.error, r.occurred_at, r.trace_id
from request_logs r
where r.team_id = @team_id and r.installation_id = @installation_id
  and r.id > @after_id and r.id < @before_id
  and (sqlc.narg(user_id)::uuid is null or exists (
      select 1 from instances i where i.id = r.instance_id and i.team_id = r.team_id and i.user_id = sqlc.narg(user_id)))
order by case when @newest_first::bool then -r.id else r.id end
limit @max_rows;

-- name: GetRequestLog :one
select r.* from request_logs r
where r.id = @id and r.team_id = @team_id and r.installation_id = @installation_id
  and (sqlc.narg(user_id)::uuid is null or exists (
      select 1 from instances i where i.id = r.instance_id and i.team_id = r.team_id and i.user_id = sqlc.narg(user_id)));
