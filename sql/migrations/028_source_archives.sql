-- Source archives a team uploaded for its templates built from source, by SHA-256. Satellites serving
-- the team download them (SatelliteService.GetSourceArchive); nobody else reads them.
create table source_archives (
    team_id    uuid        not null references teams (id) on delete cascade,
    sha256     text        not null check (sha256 ~ '^[0-9a-f]{64}$'),
    content    bytea       not null,
    size       bigint      not null,
    created_at timestamptz not null default now(),
    primary key (team_id, sha256)
);

---- create above / drop below ----

drop table source_archives;
