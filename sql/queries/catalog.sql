-- name: GetCatalogEntry :one
select * from catalog_entries where id = @id;

-- name: LockCatalogEntry :one
select * from catalog_entries where id = @id for update;

-- name: UpdateCatalogEntry :one
update catalog_entries
set name = @name, description = @description, tags = @tags, transport = @transport, command = @command,
    args = @args, env = @env, url = @url, headers = @headers, query_params = @query_params,
    config_schema = @config_schema, sandbox = @sandbox, source = @source, per_user_authorization = @per_user_authorization,
    updated_at = now()
where id = @id
returning *;

-- name: DeleteCatalogEntry :execrows
delete from catalog_entries where id = @id;

-- name: ListCatalogEntries :many
-- ListCatalogEntries pages through the global templates and, with a team, the team's own, by slug. pattern is
-- an ILIKE pattern matched against name, slug and description; tags must all be present.
select * from catalog_entries
where (team_id is null or team_id = sqlc.narg(team_id)::uuid)
  and (@pattern::text = '' or name ilike @pattern or slug ilike @pattern or description ilike @pattern)
  and tags @> @tags::text[]
  and slug > @after_slug
order by slug
limit @max_rows;

-- name: ListTeamsInstallingEntry :many
select distinct team_id from installations where catalog_entry_id = @catalog_entry_id order by team_id;

-- name: LockTeam :exec
-- LockTeam serialises changes to a team's installations, so checks across them (such as tool prefixes)
-- hold when two admins write at once. NO KEY UPDATE leaves inserts that reference the team (memberships)
-- unblocked.
select id from teams where id = @id for no key update;

-- name: GetInstallation :one
select sqlc.embed(i), c.slug as server_slug, c.stop_reason as template_stop_reason, c.stopped_at as template_stopped_at
from installations i
join catalog_entries c on c.id = i.catalog_entry_id
where i.id = @id and i.team_id = @team_id;

-- name: LockInstallation :one
select * from installations where id = @id and team_id = @team_id for update;

-- name: UpdateInstallation :one
update installations
set name = @name, args = @args, arg_values = @arg_values, env = @env, headers = @headers,
    query_params = @query_params, request_logging_enabled = @request_logging_enabled,
    tool_prefix = sqlc.narg(tool_prefix), updated_at = now()
where id = @id and team_id = @team_id
returning *;

-- name: DeleteInstallation :execrows
delete from installations where id = @id and team_id = @team_id;

-- name: ListInstallations :many
select sqlc.embed(i), c.slug as server_slug, c.stop_reason as template_stop_reason, c.stopped_at as template_stopped_at
from installations i
join catalog_entries c on c.id = i.catalog_entry_id
where i.team_id = @team_id
  and (sqlc.narg(after_created_at)::timestamptz is null
       or (i.created_at, i.id) > (sqlc.narg(after_created_at)::timestamptz, sqlc.narg(after_id)::uuid))
order by i.created_at, i.id
limit @max_rows;

-- name: ListToolPrefixes :many
-- ListToolPrefixes returns the effective tool prefix of each of a team's installations.
select i.id, coalesce(i.tool_prefix, c.slug)::text as prefix
from installations i
join catalog_entries c on c.id = i.catalog_entry_id
where i.team_id = @team_id;

-- name: GetUserConfiguration :one
select * from user_configurations
where installation_id = @installation_id and team_id = @team_id and user_id = @user_id;

-- name: UpdateInstallationSettings :execrows
-- UpdateInstallationSettings changes the settings that are given; a null leaves a setting as it is.
update installations
set request_logging_enabled = coalesce(sqlc.narg(request_logging_enabled)::boolean, request_logging_enabled),
    updated_at = now()
where id = @id and team_id = @team_id;

-- name: LockCatalogSlug :exec
select pg_advisory_xact_lock(hashtext('orrery_catalog_slug:' || @slug::text));

-- name: CatalogSlugShadowed :one
-- CatalogSlugShadowed reports whether a new template of team_id (null: a global one) would share its slug
-- with another template its teams see: for a team template, a global one; for a global template, any.
select exists (
    select 1 from catalog_entries c
    where c.slug = @slug::text and (sqlc.narg(team_id)::uuid is null or c.team_id is null)
)::boolean as shadowed;

-- name: PutSourceArchive :execrows
-- PutSourceArchive stores a team's uploaded archive unless the team's archives would then take more than
-- max_bytes; the same archive again changes nothing. It affects no row when the archive was already there
-- or the team is over its share.
insert into source_archives (team_id, sha256, content, size)
select @team_id::uuid, @sha256::text, @content::bytea, @size::bigint
where (select coalesce(sum(size), 0) from source_archives where team_id = @team_id::uuid) + @size::bigint <= @max_bytes::bigint
on conflict (team_id, sha256) do nothing;

-- name: DeleteUnusedSourceArchives :exec
-- DeleteUnusedSourceArchives deletes a team's archives that none of its templates names, uploaded more
-- than an hour ago (a template is usually saved right after its upload).
delete from source_archives a
where a.team_id = @team_id
  and a.created_at < now() - interval '1 hour'
  and not exists (select 1 from catalog_entries e where e.team_id = a.team_id and e.source ->> 'sha256' = a.sha256);

-- name: GetSourceArchive :one
select content from source_archives where team_id = @team_id and sha256 = @sha256;

-- name: SourceArchiveExists :one
select exists (select 1 from source_archives where team_id = @team_id and sha256 = @sha256);
