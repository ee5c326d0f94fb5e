-- name: GetRemoteOAuthClient :one
select * from remote_oauth_clients where issuer = @issuer;

-- name: CreateRemoteOAuthClient :one
-- CreateRemoteOAuthClient keeps the first registration when two replicas register at once.
insert into remote_oauth_clients (issuer, client_id, client_secret)
values (@issuer, @client_id, @client_secret)
on conflict (issuer) do update set issuer = excluded.issuer
returning *;

-- name: CreateRemoteOAuthFlow :exec
insert into remote_oauth_flows (state_hash, team_id, installation_id, user_id, issuer, token_endpoint, resource, verifier, expires_at)
values (@state_hash, @team_id, @installation_id, @user_id, @issuer, @token_endpoint, @resource, @verifier, @expires_at);

-- name: TakeRemoteOAuthFlow :one
-- TakeRemoteOAuthFlow consumes a flow: a state works once.
delete from remote_oauth_flows where state_hash = @state_hash returning *;

-- name: DeleteExpiredRemoteOAuthFlows :execrows
delete from remote_oauth_flows where expires_at < now();

-- name: SaveRemoteOAuthConnection :exec
insert into remote_oauth_connections (team_id, installation_id, user_id, issuer, token_endpoint, resource,
    access_token, refresh_token, scope, expires_at)
values (@team_id, @installation_id, @user_id, @issuer, @token_endpoint, @resource, @access_token, @refresh_token,
    @scope, sqlc.narg(expires_at))
on conflict (installation_id, user_id) do update
set issuer = excluded.issuer, token_endpoint = excluded.token_endpoint, resource = excluded.resource,
    access_token = excluded.access_token, refresh_token = excluded.refresh_token, scope = excluded.scope,
    expires_at = excluded.expires_at, failed_at = null, updated_at = now();

-- name: GetRemoteOAuthConnection :one
select * from remote_oauth_connections
where team_id = @team_id and installation_id = @installation_id and user_id = @user_id;

-- name: ListLiveRemoteOAuthConnections :many
-- ListLiveRemoteOAuthConnections lists the connections whose tokens are delivered, of one team or of all.
select * from remote_oauth_connections
where failed_at is null and (sqlc.narg(team_id)::uuid is null or team_id = sqlc.narg(team_id)::uuid);

-- name: GetRemoteInstallationTarget :one
-- GetRemoteInstallationTarget is the transport and URL of the server an installation of a team runs.
select c.transport, c.url, c.per_user_authorization from installations i join catalog_entries c on c.id = i.catalog_entry_id
where i.id = @id and i.team_id = @team_id;

-- name: ListDueRemoteOAuthConnections :many
-- ListDueRemoteOAuthConnections finds connections whose access token expires before @before and that can be
-- refreshed.
select * from remote_oauth_connections
where failed_at is null and refresh_token <> '' and expires_at < @before
order by expires_at
limit @max_rows;

-- name: UpdateRemoteOAuthTokens :execrows
-- UpdateRemoteOAuthTokens stores refreshed tokens unless the connection was replaced or removed meanwhile.
update remote_oauth_connections
set access_token = @access_token, refresh_token = @refresh_token, expires_at = sqlc.narg(expires_at), updated_at = now()
where installation_id = @installation_id and user_id = @user_id and updated_at = @seen_updated_at;

-- name: FailRemoteOAuthConnection :exec
update remote_oauth_connections set failed_at = now(), updated_at = now()
where installation_id = @installation_id and user_id = @user_id and failed_at is null;

-- name: DeleteRemoteOAuthConnection :one
delete from remote_oauth_connections
where team_id = @team_id and installation_id = @installation_id and user_id = @user_id
returning *;

-- name: DeleteMemberRemoteOAuthConnections :exec
delete from remote_oauth_connections where team_id = @team_id and user_id = @user_id;

-- name: ListInstallationRemoteOAuthConnections :many
select * from remote_oauth_connections where team_id = @team_id and installation_id = @installation_id;
