-- Reads and writes behind orrery.api.v1.ToolService. Every query takes the caller's team.

-- name: ListInstallationTools :many
-- ListInstallationTools returns each tool name of an installation once, as the instance that reported it
-- last describes it; user_id, when set, narrows to that user's own instance (team users).
select distinct on (d.name) d.*
from discovered_tools d
join instances i on i.id = d.instance_id and i.team_id = d.team_id
where d.team_id = @team_id and d.installation_id = @installation_id
  and (sqlc.narg(user_id)::uuid is null or i.user_id = sqlc.narg(user_id))
order by d.name, d.discovered_at desc, d.instance_id;

-- name: GetToolSelection :one
select allow, deny, descriptions from tool_selections where installation_id = @installation_id and team_id = @team_id;

-- name: UpsertToolSelection :exec
insert into tool_selections (installation_id, team_id, allow, deny, descriptions, updated_at)
values (@installation_id, @team_id, @allow, @deny, @descriptions, now())
on conflict (installation_id) do update
set allow = excluded.allow, deny = excluded.deny, descriptions = excluded.descriptions, updated_at = now()
where tool_selections.team_id = excluded.team_id;

-- name: GetHiddenTools :one
select patterns from hidden_tools where installation_id = @installation_id and team_id = @team_id and user_id = @user_id;

-- name: UpsertHiddenTools :exec
insert into hidden_tools (installation_id, team_id, user_id, patterns, updated_at)
values (@installation_id, @team_id, @user_id, @patterns, now())
on conflict (installation_id, user_id) do update
set patterns = excluded.patterns, updated_at = now()
where hidden_tools.team_id = excluded.team_id;
