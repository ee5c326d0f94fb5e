-- name: CreateOAuthClient :one
insert into oauth_clients (id, team_id, service_user_id, name, redirect_uris, grant_types, scopes,
    token_endpoint_auth_method, secret_hash, created_by)
values (@id, sqlc.narg(team_id), sqlc.narg(service_user_id), @name, @redirect_uris, @grant_types, @scopes,
        @token_endpoint_auth_method, sqlc.narg(secret_hash), sqlc.narg(created_by))
returning *;

-- name: GetOAuthClient :one
select * from oauth_clients where id = @id and revoked_at is null;

-- name: ListTeamOAuthClients :many
-- ListTeamOAuthClients lists the team's own confidential clients and every stored client holding a live grant
-- in the team.
select * from oauth_clients c
where c.revoked_at is null and (c.team_id = @team_id::uuid or exists (
    select 1 from oauth_tokens o
    where o.client_id = c.id and o.team_id = @team_id::uuid and o.active and o.expires_at > now()
      and o.kind in ('access_token', 'refresh_token')))
order by c.created_at, c.id;

-- name: DeleteTeamOAuthClientUser :execrows
-- DeleteTeamOAuthClientUser deletes a team client's service user, and with it the client, its membership
-- and its tokens.
delete from users u where u.id = (select c.service_user_id from oauth_clients c where c.id = @client_id::text and c.team_id = @team_id::uuid);

-- name: CreateOAuthToken :exec
insert into oauth_tokens (signature, kind, request_id, client_id, team_id, user_id, request, expires_at)
values (@signature, @kind, @request_id, @client_id, @team_id, @user_id, @request, @expires_at);

-- name: GetOAuthToken :one
select * from oauth_tokens where signature = @signature and kind = @kind;

-- name: DeactivateOAuthToken :execrows
-- Only an active token is deactivated, so of two concurrent uses of one code or refresh token one fails.
update oauth_tokens set active = false where signature = @signature and kind = @kind and active;

-- name: DeleteOAuthToken :exec
delete from oauth_tokens where signature = @signature and kind = @kind;

-- name: DeactivateOAuthGrant :exec
-- DeactivateOAuthGrant ends every token of one kind issued under a grant.
update oauth_tokens set active = false where request_id = @request_id and kind = @kind;

-- name: RevokeGrantAccessTokens :many
update access_tokens set revoked_at = now() where request_id = @request_id::text and revoked_at is null
returning *;

-- name: CreateGrantAccessToken :exec
insert into access_tokens (token_hash, team_id, user_id, client_id, audience, scopes, expires_at, request_id)
values (@token_hash, @team_id, @user_id, @client_id, @audience, @scopes, @expires_at, @request_id::text);

-- name: ListOAuthGrants :many
-- ListOAuthGrants lists the live grants of a team or of a user, newest first: each grant with the latest of
-- its tokens that is still active.
select * from (
    select distinct on (o.request_id) o.request_id, o.client_id, o.team_id, o.user_id, o.request, o.expires_at,
        o.created_at, t.slug as team_slug
    from oauth_tokens o
    join teams t on t.id = o.team_id
    where o.active and o.expires_at > now() and o.kind in ('access_token', 'refresh_token')
      and (sqlc.narg(team_id)::uuid is null or o.team_id = sqlc.narg(team_id))
      and (sqlc.narg(user_id)::uuid is null or o.user_id = sqlc.narg(user_id))
    order by o.request_id, o.created_at desc
) g
order by g.created_at desc
limit 500;

-- name: GetOAuthGrantOwner :one
-- GetOAuthGrantOwner names the team and user of a grant.
select team_id, user_id from oauth_tokens where request_id = @request_id limit 1;

-- name: RevokeClientTeamGrants :many
-- RevokeClientTeamGrants ends every token a client holds in a team, optionally only a user's, and returns
-- the grants it ended.
update oauth_tokens set active = false
where client_id = @client_id and team_id = @team_id and active
  and (sqlc.narg(user_id)::uuid is null or user_id = sqlc.narg(user_id))
returning request_id;

-- name: UpsertOAuthConsent :exec
insert into oauth_consents (user_id, client_id, team_id, scopes)
values (@user_id, @client_id, @team_id, @scopes)
on conflict (user_id, client_id, team_id) do update set scopes = excluded.scopes, updated_at = now();

-- name: GetOAuthConsent :one
select * from oauth_consents where user_id = @user_id and client_id = @client_id and team_id = @team_id;

-- name: ListOAuthConsents :many
select c.*, t.slug as team_slug from oauth_consents c
join teams t on t.id = c.team_id
where c.user_id = @user_id
order by c.updated_at desc;

-- name: DeleteOAuthConsent :execrows
delete from oauth_consents where user_id = @user_id and client_id = @client_id and team_id = @team_id;

-- name: TeamEndpointServed :one
-- TeamEndpointServed reports whether a live satellite serving the team publishes base as its URL.
select exists (
    select 1 from satellites
    where revoked_at is null and rtrim(url, '/') = @url::text and (type = 'global' or team_id = @team_id::uuid)
);

-- name: TeamEndpointBase :one
-- TeamEndpointBase is the public URL of the live satellite that serves the team: the team's own satellites
-- before global ones, the freshest heartbeat first.
select rtrim(url, '/')::text from satellites
where revoked_at is null and activated_at is not null and url <> '' and (type = 'global' or team_id = @team_id::uuid)
order by (team_id is not null) desc, last_heartbeat_at desc nulls last
limit 1;

-- name: TeamOwnEndpointBase :one
-- TeamOwnEndpointBase is the public URL of the team's own satellite, the freshest heartbeat first.
select rtrim(url, '/')::text from satellites
where revoked_at is null and activated_at is not null and url <> '' and team_id = @team_id::uuid
order by last_heartbeat_at desc nulls last
limit 1;

-- name: CreateServiceUser :one
insert into users (slug, email, name, global_role) values (@slug, @email, @name, 'global_user') returning id;

-- name: GetTeamBySlug :one
select * from teams where slug = @slug;

-- name: PruneExpiredOAuthTokens :execrows
-- PruneExpiredOAuthTokens deletes codes and tokens that expired before @before: once expired, a token is
-- refused anyway, and reusing it says nothing about its grant.
delete from oauth_tokens where expires_at < @before;

-- name: RevokeMemberAccessTokens :many
-- RevokeMemberAccessTokens ends a former member's access tokens for the team.
update access_tokens set revoked_at = now()
where team_id = @team_id and user_id = @user_id and revoked_at is null
returning *;

-- name: DeactivateMemberOAuthTokens :exec
update oauth_tokens set active = false where team_id = @team_id and user_id = @user_id and active;

-- name: DeleteMemberOAuthConsents :exec
delete from oauth_consents where team_id = @team_id and user_id = @user_id;

-- name: PruneUnusedOAuthClients :execrows
-- PruneUnusedOAuthClients deletes dynamically registered clients (those of no team) registered before
-- @before that no consent and no token names: registration is open to anyone, so what it stores must not
-- stay for ever. A client whose consents were withdrawn and whose tokens ran out goes too; it registers again.
-- Built-in clients (orreryctl) stay.
delete from oauth_clients c
where c.team_id is null and not c.builtin and c.created_at < @before
  and not exists (select 1 from oauth_consents k where k.client_id = c.id)
  and not exists (select 1 from oauth_tokens t where t.client_id = c.id);
