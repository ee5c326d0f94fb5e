-- name: GetTeam :one
select * from teams where id = @id;

-- name: ListAllTeams :many
select * from teams order by slug;

-- name: ListUserTeams :many
select t.*
from teams t
join team_memberships m on m.team_id = t.id
where m.user_id = @user_id
order by t.slug;

-- name: ListMembers :many
select u.*, m.role, m.created_at as joined_at
from team_memberships m
join users u on u.id = m.user_id
where m.team_id = @team_id
order by u.email;

-- name: GetMember :one
select u.*, m.role, m.created_at as joined_at
from team_memberships m
join users u on u.id = m.user_id
where m.team_id = @team_id and m.user_id = @user_id;

-- name: SetMemberRole :execrows
update team_memberships set role = @role where team_id = @team_id and user_id = @user_id;

-- name: SetTeamToolsMode :execrows
update teams set tools_mode = @tools_mode where id = @id;

-- name: SetMemberToolsMode :execrows
-- SetMemberToolsMode sets a member's own tool mode; null follows the team's.
update team_memberships set tools_mode = sqlc.narg(tools_mode) where team_id = @team_id and user_id = @user_id;

-- name: GetMemberToolsMode :one
-- GetMemberToolsMode returns a member's own tool mode (null when it follows the team) and the team's.
select m.tools_mode as member_mode, t.tools_mode as team_mode
from team_memberships m
join teams t on t.id = m.team_id
where m.team_id = @team_id and m.user_id = @user_id;

-- name: RemoveMembership :execrows
delete from team_memberships where team_id = @team_id and user_id = @user_id;

-- name: DeleteMemberInstances :exec
delete from instances where team_id = @team_id and user_id = @user_id;

-- name: SetTeamOwner :execrows
update teams set owner_id = @owner_id where id = @id;

-- name: InsertAuditEvent :exec
insert into audit_events (actor_id, actor, team_id, action, target, details)
values (sqlc.narg(actor_id), @actor, sqlc.narg(team_id), @action, @target, @details);

-- name: ListAuditEvents :many
-- ListAuditEvents pages backwards through the log; a null team lists every team's events.
select * from audit_events
where (sqlc.narg(team_id)::uuid is null or team_id = sqlc.narg(team_id))
  and id < @before_id
order by id desc
limit @max_rows;

