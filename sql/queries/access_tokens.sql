-- name: CreateAccessToken :one
insert into access_tokens (token_hash, team_id, user_id, client_id, audience, scopes, expires_at)
values (@token_hash, @team_id, @user_id, @client_id, @audience, @scopes, @expires_at)
returning *;

-- name: GetActiveAccessToken :one
-- GetActiveAccessToken finds a live token by hash, with the slugs of its team and user, the user's email and
-- role in the team (empty when no longer a member), and the tool mode of the user's endpoint: the user's
-- own choice, else the team's.
select a.*, t.slug as team_slug, u.slug as user_slug, u.email as user_email,
       coalesce(m.role, '')::text as team_role, coalesce(m.tools_mode, t.tools_mode)::text as tools_mode
from access_tokens a
join teams t on t.id = a.team_id
join users u on u.id = a.user_id
left join team_memberships m on m.team_id = a.team_id and m.user_id = a.user_id
where a.token_hash = @token_hash and a.revoked_at is null and a.expires_at > now();

-- name: RevokeAccessToken :many
update access_tokens set revoked_at = now() where id = @id and revoked_at is null
returning *;

-- name: GetAPIAccessTokenUser :one
-- GetAPIAccessTokenUser finds the user of a live OAuth access token issued for @audience, the control
-- plane's API; tokens for team endpoints never match.
select u.*
from access_tokens a
join users u on u.id = a.user_id
where a.token_hash = @token_hash and a.audience = @audience and a.revoked_at is null and a.expires_at > now();
