-- name: CreateRegistrationToken :one
insert into registration_tokens (id, name, scope, team_id, expires_at)
values (@id, @name, @scope, sqlc.narg(team_id), @expires_at)
returning *;

-- name: ConsumeRegistrationToken :one
-- ConsumeRegistrationToken marks a usable token used. Only one caller can win: the row lock serialises
-- racing registrations, and the loser's re-checked predicate no longer matches.
update registration_tokens
set consumed_at = now()
where id = @id and consumed_at is null and revoked_at is null and expires_at > now()
returning *;

-- name: GetRegistrationToken :one
select * from registration_tokens where id = @id;

-- name: SetRegistrationTokenSatellite :exec
update registration_tokens set satellite_id = @satellite_id where id = @id;

-- name: ListRegistrationTokens :many
-- ListRegistrationTokens lists one team's tokens, or every token when team_id is null.
select * from registration_tokens
where (sqlc.narg(team_id)::uuid is null or team_id = sqlc.narg(team_id))
  and (sqlc.narg(before_created_at)::timestamptz is null
       or (created_at, id) < (sqlc.narg(before_created_at)::timestamptz, sqlc.narg(before_id)::uuid))
order by created_at desc, id desc
limit @max_rows;

-- name: RevokeRegistrationToken :one
update registration_tokens set revoked_at = coalesce(revoked_at, now())
where id = @id and (sqlc.narg(team_id)::uuid is null or team_id = sqlc.narg(team_id))
returning *;
