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

-- Rolling updates: an update sent to a few satellites at a time, the next batch once the previous one
-- heartbeats on the new version (advanced by a periodic job on any replica).
create table satellite_rollouts (
    id              uuid primary key,
    version         text not null,
    allow_downgrade boolean not null default false,
    batch_size      integer not null check (batch_size > 0),
    team_id         uuid,
    state           text not null default 'running' check (state in ('running', 'completed', 'failed')),
    error           text not null default '',
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now()
);
create index satellite_rollouts_created_at on satellite_rollouts (created_at desc, id desc);
create index satellite_rollouts_running on satellite_rollouts (id) where state = 'running';

create table satellite_rollout_members (
    rollout_id   uuid not null references satellite_rollouts (id) on delete cascade,
    satellite_id uuid not null references satellites (id) on delete cascade,
    position     integer not null,
    batch        integer not null,
    state        text not null default 'pending' check (state in ('pending', 'sent', 'done', 'failed')),
    command_id   uuid,
    primary key (rollout_id, satellite_id)
);
