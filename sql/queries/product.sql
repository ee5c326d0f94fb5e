-- name: CreateTeam :one
insert into teams (slug, name) values (@slug, @name) returning *;

-- name: CreateUser :one
insert into users (slug, email, name) values (@slug, @email, @name) returning *;

-- name: AddMembership :exec
insert into team_memberships (team_id, user_id, role) values (@team_id, @user_id, @role);

-- name: CreateCatalogEntry :one
insert into catalog_entries (
    team_id, slug, name, description, tags, transport, command, args, env, url, headers, query_params, config_schema,
    sandbox, source, per_user_authorization)
values (sqlc.narg(team_id), @slug, @name, @description, @tags, @transport, @command, @args, @env, @url, @headers,
        @query_params, @config_schema, @sandbox, @source, @per_user_authorization)
returning *;

-- name: CreateInstallation :one
insert into installations (
    team_id, catalog_entry_id, name, args, arg_values, env, headers, query_params, request_logging_enabled, tool_prefix)
values (@team_id, @catalog_entry_id, @name, @args, @arg_values, @env, @headers, @query_params,
        @request_logging_enabled, sqlc.narg(tool_prefix))
returning *;

-- name: UpsertUserConfiguration :exec
insert into user_configurations (installation_id, team_id, user_id, args, arg_values, env, headers, query_params)
values (@installation_id, @team_id, @user_id, @args, @arg_values, @env, @headers, @query_params)
on conflict (installation_id, user_id) do update
set args = excluded.args, arg_values = excluded.arg_values, env = excluded.env, headers = excluded.headers,
    query_params = excluded.query_params, updated_at = now();

-- name: EnsureTeamInstances :exec
-- EnsureTeamInstances gives every member of a team one instance of each of the team's installations.
insert into instances (id, installation_id, team_id, user_id)
select c.slug || '-' || t.slug || '-' || u.slug || '-' || i.id, i.id, i.team_id, m.user_id
from installations i
join catalog_entries c on c.id = i.catalog_entry_id
join teams t on t.id = i.team_id
join team_memberships m on m.team_id = i.team_id
join users u on u.id = m.user_id
where i.team_id = @team_id
on conflict (installation_id, user_id) do nothing;
