-- name: LatestConfigVersion :one
-- LatestConfigVersion returns the newest version of a subject, which the next version is compared with.
select * from config_versions
where kind = @kind and subject_id = @subject_id and user_id = @user_id
order by version desc
limit 1;

-- name: InsertConfigVersion :one
insert into config_versions (kind, subject_id, user_id, team_id, version, action, rolled_back_to, actor_id, actor,
                             snapshot, changes)
values (@kind, @subject_id, @user_id, sqlc.narg(team_id), @version, @action, sqlc.narg(rolled_back_to),
        sqlc.narg(actor_id), @actor, @snapshot, @changes)
returning *;

-- name: ListConfigVersions :many
-- ListConfigVersions returns a subject's versions newest first, below a version when one is given. The team
-- filter is null only for global templates, so no team reads another's history or a global one.
select * from config_versions
where kind = @kind and subject_id = @subject_id and user_id = @user_id
  and team_id is not distinct from sqlc.narg(team_id)::uuid
  and (sqlc.narg(before_version)::integer is null or version < sqlc.narg(before_version)::integer)
order by version desc
limit @max_rows;

-- name: GetConfigVersion :one
select * from config_versions
where kind = @kind and subject_id = @subject_id and user_id = @user_id and version = @version
  and team_id is not distinct from sqlc.narg(team_id)::uuid;

-- name: StopInstallation :one
update installations
set stop_reason = @stop_reason, stopped_at = now(), stop_by_global_admin = @stop_by_global_admin
where id = @id and team_id = @team_id
returning *;

-- name: ResumeInstallation :one
update installations
set stop_reason = '', stopped_at = null, stop_by_global_admin = false
where id = @id and team_id = @team_id
returning *;

-- name: StopCatalogEntry :one
update catalog_entries set stop_reason = @stop_reason, stopped_at = now() where id = @id returning *;

-- name: ResumeCatalogEntry :one
update catalog_entries set stop_reason = '', stopped_at = null where id = @id returning *;
