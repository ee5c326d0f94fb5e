-- Configuration history: every change of a template, an installation or a member's configuration is kept
-- as a version. The snapshot holds the level as stored, secrets still sealed, so a rollback restores them
-- without anyone seeing their values; changes lists what differs from the version before, secrets only by
-- name. Versions outlive what they describe (a deleted installation's history stays readable to its team),
-- so there is no foreign key to the subject, only to the team.
create table config_versions (
    id              bigint generated always as identity primary key,
    kind            text not null check (kind in ('template', 'installation', 'user_configuration')),
    subject_id      uuid not null,
    -- user_id is the member of a user_configuration; the nil UUID otherwise, so the key below stays simple.
    user_id         uuid not null default '00000000-0000-0000-0000-000000000000',
    -- team_id is null only for global templates.
    team_id         uuid references teams (id) on delete cascade,
    version         integer not null check (version > 0),
    action          text not null check (action in ('created', 'updated', 'rolled_back')),
    rolled_back_to  integer,
    actor_id        uuid references users (id) on delete set null,
    actor           text not null,
    snapshot        jsonb not null,
    changes         jsonb not null default '[]',
    created_at      timestamptz not null default now(),
    unique (kind, subject_id, user_id, version)
);
create index config_versions_team on config_versions (team_id, kind, subject_id);

-- Emergency stops. A stopped template stops every installation of it in every team; a stopped
-- installation stops that one. The reason travels to satellites with the configuration, so one that missed
-- the stop command refuses on its return. An installation stopped by a global admin stays stopped until a
-- global admin lifts it, whatever the team's admins do.
alter table catalog_entries
    add column stop_reason text not null default '' check (length(stop_reason) <= 500),
    add column stopped_at  timestamptz;
alter table installations
    add column stop_reason text not null default '' check (length(stop_reason) <= 500),
    add column stopped_at  timestamptz,
    add column stop_by_global_admin boolean not null default false;

---- create above / drop below ----

alter table installations drop column stop_by_global_admin, drop column stopped_at, drop column stop_reason;
alter table catalog_entries drop column stopped_at, drop column stop_reason;
drop table config_versions;
