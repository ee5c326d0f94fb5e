-- name: CreateSatelliteRelease :one
insert into satellite_releases (id, version, platform, sha256, signature, size, created_by)
values (@id, @version, @platform, @sha256, @signature, @size, sqlc.narg(created_by))
returning *;

-- name: GetSatelliteRelease :one
select * from satellite_releases where id = @id;

-- name: GetSatelliteReleaseForUpdate :one
select * from satellite_releases where id = @id for update;

-- name: CompleteSatelliteReleaseByVersion :one
-- CompleteSatelliteReleaseByVersion finds a downloadable release.
select * from satellite_releases where version = @version and platform = @platform and complete;

-- name: ListSatelliteReleases :many
select * from satellite_releases
where (sqlc.narg(before_created_at)::timestamptz is null
       or (created_at, id) < (sqlc.narg(before_created_at)::timestamptz, sqlc.narg(before_id)::uuid))
order by created_at desc, id desc
limit @max_rows;

-- name: CompleteSatelliteReleaseVersions :many
-- CompleteSatelliteReleaseVersions lists the versions of every downloadable release, to pick the newest.
select distinct version from satellite_releases where complete;

-- name: InsertSatelliteReleaseChunk :exec
insert into satellite_release_chunks (release_id, "offset", data) values (@release_id, @chunk_offset, @data)
on conflict (release_id, "offset") do update set data = excluded.data;

-- name: SetSatelliteReleaseUploaded :exec
update satellite_releases set uploaded_bytes = @uploaded_bytes where id = @id;

-- name: MarkSatelliteReleaseComplete :one
update satellite_releases set complete = true where id = @id returning *;

-- name: SatelliteReleaseChunks :many
-- SatelliteReleaseChunks returns the pieces of a release in order, from the one holding start_offset on.
select "offset", data from satellite_release_chunks
where release_id = @release_id and "offset" + length(data) > @start_offset
order by "offset"
limit @max_rows;

-- name: DeleteSatelliteRelease :execrows
delete from satellite_releases where id = @id;

-- name: CreateRollout :one
insert into satellite_rollouts (id, version, allow_downgrade, batch_size, team_id)
values (@id, @version, @allow_downgrade, @batch_size, sqlc.narg(team_id))
returning *;

-- name: AddRolloutMember :exec
insert into satellite_rollout_members (rollout_id, satellite_id, position, batch)
values (@rollout_id, @satellite_id, @position, @batch);

-- name: RunningRollouts :many
-- RunningRollouts locks the running rollouts that no other replica is advancing.
select * from satellite_rollouts where state = 'running' order by created_at for update skip locked;

-- name: RolloutMembers :many
-- RolloutMembers lists a rollout's satellites in order, with their version and their command's state.
select m.satellite_id, m.position, m.batch, m.state, m.command_id,
       s.version as satellite_version, (s.revoked_at is not null)::boolean as revoked,
       coalesce(c.state, '') as command_state, coalesce(c.error, '') as command_error
from satellite_rollout_members m
join satellites s on s.id = m.satellite_id
left join satellite_commands c on c.id = m.command_id
where m.rollout_id = @rollout_id
order by m.position;

-- name: SetRolloutMember :exec
update satellite_rollout_members set state = @state, command_id = coalesce(sqlc.narg(command_id), command_id)
where rollout_id = @rollout_id and satellite_id = @satellite_id;

-- name: SetRolloutState :exec
update satellite_rollouts set state = @state, error = @error, updated_at = now() where id = @id;

-- name: ListRollouts :many
select * from satellite_rollouts
where (sqlc.narg(before_created_at)::timestamptz is null
       or (created_at, id) < (sqlc.narg(before_created_at)::timestamptz, sqlc.narg(before_id)::uuid))
order by created_at desc, id desc
limit @max_rows;
