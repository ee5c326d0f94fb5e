-- Satellite binaries published for self-update. The binary lives in PostgreSQL, in pieces of at most 1 MiB,
-- because PostgreSQL is the only store every control-plane replica shares: a release uploaded through one
-- replica downloads through any other, and a backup of the database holds it. Pieces rather than one bytea
-- keep every read and write bounded; large objects would need their own permissions and cleanup.
create table satellite_releases (
    id             uuid primary key,
    version        text not null,
    platform       text not null,
    sha256         text not null,
    signature      bytea not null,
    size           bigint not null check (size > 0),
    uploaded_bytes bigint not null default 0,
    complete       boolean not null default false,
    created_by     uuid,
    created_at     timestamptz not null default now(),
    unique (version, platform)
);
create index satellite_releases_created_at on satellite_releases (created_at desc, id desc);

create table satellite_release_chunks (
    release_id uuid not null references satellite_releases (id) on delete cascade,
    "offset"   bigint not null,
    data       bytea not null,
    primary key (release_id, "offset")
);
