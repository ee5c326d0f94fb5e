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
