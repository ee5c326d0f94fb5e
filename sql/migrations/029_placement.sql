-- Team placement: which global satellites serve each team, so that a team's configuration, secrets and
-- commands reach only those. Satellites report their capacity (their weight in placement), the internal
-- address other satellites of the pool forward to, and their open sessions (a draining satellite is drained
-- when none remain).
alter table satellites
    add column capacity      integer not null default 0 check (capacity between 0 and 1000000),
    add column internal_url  text not null default '',
    add column open_sessions integer not null default 0 check (open_sessions >= 0),
    add column draining_at   timestamptz,
    add column drained_at    timestamptz;

-- placement_replicas is R, how many global satellites serve the team; null means the default.
-- global_fallback lets global satellites serve a team that has team satellites while none of them is live.
alter table teams
    add column placement_replicas integer check (placement_replicas between 1 and 16),
    add column global_fallback    boolean not null default false;

-- One row per global satellite that serves a team; rank 0 is the team's best.
create table team_placements (
    team_id      uuid not null references teams (id) on delete cascade,
    satellite_id uuid not null references satellites (id) on delete cascade,
    rank         integer not null,
    placed_at    timestamptz not null default now(),
    primary key (team_id, satellite_id)
);
create index team_placements_satellite_id on team_placements (satellite_id);

---- create above / drop below ----

drop table team_placements;
alter table teams drop column global_fallback, drop column placement_replicas;
alter table satellites drop column drained_at, drop column draining_at, drop column open_sessions,
    drop column internal_url, drop column capacity;
