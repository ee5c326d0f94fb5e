-- Secret rotation reads rows in pages without locks, then re-seals each row that needs it in its own short
-- transaction under a row lock.

-- name: ListCatalogEntrySecrets :many
select id, env, headers, query_params from catalog_entries where id > @after_id order by id limit @max_rows;

-- name: LockCatalogEntrySecrets :one
select env, headers, query_params from catalog_entries where id = @id for update;

-- name: SetCatalogEntrySecrets :exec
update catalog_entries set env = @env, headers = @headers, query_params = @query_params where id = @id;

-- name: ListInstallationSecrets :many
select id, arg_values, env, headers, query_params from installations where id > @after_id order by id limit @max_rows;

-- name: LockInstallationSecrets :one
select arg_values, env, headers, query_params from installations where id = @id for update;

-- name: SetInstallationSecrets :exec
update installations set arg_values = @arg_values, env = @env, headers = @headers, query_params = @query_params
where id = @id;

-- name: ListUserConfigurationSecrets :many
select installation_id, user_id, arg_values, env, headers, query_params from user_configurations
where (installation_id, user_id) > (@after_installation_id::uuid, @after_user_id::uuid)
order by installation_id, user_id
limit @max_rows;

-- name: LockUserConfigurationSecrets :one
select arg_values, env, headers, query_params from user_configurations
where installation_id = @installation_id and user_id = @user_id
for update;

-- name: SetUserConfigurationSecrets :exec
update user_configurations
set arg_values = @arg_values, env = @env, headers = @headers, query_params = @query_params
where installation_id = @installation_id and user_id = @user_id;
