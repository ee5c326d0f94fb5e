-- name: CreateAccount :one
insert into users (slug, email, name, password_hash, global_role)
values (@slug, @email, @name, sqlc.narg(password_hash), @global_role)
returning *;

-- name: CreatePersonalTeam :one
insert into teams (slug, name, owner_id, personal) values (@slug, @name, @owner_id, true) returning *;

-- name: CreateOwnedTeam :one
insert into teams (slug, name, owner_id) values (@slug, @name, @owner_id) returning *;

-- name: GetUserByEmail :one
select * from users where lower(email) = lower(@email);

-- name: GetUser :one
select * from users where id = @id;

-- name: SlugTaken :one
select (exists (select 1 from users u where u.slug = @slug::text)
    or exists (select 1 from teams t where t.slug = @slug::text))::boolean as taken;

-- name: CountGlobalAdmins :one
select count(*) from users where global_role = 'global_admin';

-- name: ListUsers :many
select * from users
where (created_at, id) > (@after_created_at::timestamptz, @after_id::uuid)
order by created_at, id
limit @max_rows;

-- name: LockGlobalAdmins :exec
select pg_advisory_xact_lock(hashtext('orrery_global_admins'));

-- name: SetGlobalRole :execrows
update users set global_role = @global_role where id = @id;

-- name: SetPassword :execrows
update users set password_hash = @password_hash, failed_logins = 0, locked_until = null where id = @id;

-- name: RecordFailedLogin :one
-- RecordFailedLogin counts a failure and locks the account for lock_seconds once max_failures is reached; the
-- count restarts after a lock.
update users
set failed_logins = case when failed_logins + 1 >= @max_failures::integer then 0 else failed_logins + 1 end,
    locked_until = case when failed_logins + 1 >= @max_failures::integer then now() + make_interval(secs => @lock_seconds::double precision)
                        else locked_until end
where id = @id
returning failed_logins, locked_until;

-- name: RecordSuccessfulLogin :exec
update users set failed_logins = 0, locked_until = null where id = @id;

-- name: CreateSession :one
insert into sessions (token_hash, user_id, expires_at) values (@token_hash, @user_id, @expires_at) returning *;

-- name: GetSessionUser :one
select u.*, s.id as session_id
from sessions s
join users u on u.id = s.user_id
where s.token_hash = @token_hash and s.expires_at > now();

-- name: DeleteSession :exec
delete from sessions where id = @id;

-- name: DeleteOtherSessions :exec
delete from sessions where user_id = @user_id and id <> coalesce(sqlc.narg(keep_id)::uuid, '00000000-0000-0000-0000-000000000000');

-- name: CreateAPIToken :one
insert into api_tokens (token_hash, user_id, name, expires_at)
values (@token_hash, @user_id, @name, sqlc.narg(expires_at))
returning *;

-- name: GetAPITokenUser :one
select u.*, t.id as token_id, t.last_used_at as token_last_used_at
from api_tokens t
join users u on u.id = t.user_id
where t.token_hash = @token_hash and t.revoked_at is null and (t.expires_at is null or t.expires_at > now());

-- name: TouchAPIToken :exec
update api_tokens set last_used_at = now() where id = @id;

-- name: ListAPITokens :many
select * from api_tokens where user_id = @user_id order by created_at desc, id desc;

-- name: RevokeAPIToken :execrows
update api_tokens set revoked_at = coalesce(revoked_at, now()) where id = @id and user_id = @user_id;

-- name: GetTeamRole :one
select role from team_memberships where team_id = @team_id and user_id = @user_id;

-- name: ListMemberships :many
select t.id, t.slug, t.name, t.personal, m.role
from team_memberships m
join teams t on t.id = m.team_id
where m.user_id = @user_id
order by t.slug;
