-- Product schema that satellite configuration is built from.

create table teams (
    id         uuid primary key default gen_random_uuid(),
    slug       text not null unique check (slug ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    name       text not null,
    created_at timestamptz not null default now()
);

create table users (
    id            uuid primary key default gen_random_uuid(),
    slug          text not null unique check (slug ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    email         text not null unique,
    name          text not null default '',
    password_hash text,
    created_at    timestamptz not null default now()
);

create table team_memberships (
    team_id    uuid not null references teams (id) on delete cascade,
    user_id    uuid not null references users (id) on delete cascade,
    role       text not null check (role in ('global_admin', 'global_user', 'team_admin', 'team_user')),
    created_at timestamptz not null default now(),
    primary key (team_id, user_id)
);
create index team_memberships_user_id on team_memberships (user_id);

-- A catalog entry is a template of an MCP server. team_id is null for global entries.
-- env, headers and query_params map a name to {"value": ..., "secret": false} or {"sealed": ..., "secret": true}.
create table catalog_entries (
    id            uuid primary key default gen_random_uuid(),
    team_id       uuid references teams (id) on delete cascade,
    slug          text not null unique check (slug ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    name          text not null,
    description   text not null default '',
    transport     text not null check (transport in ('stdio', 'http', 'sse')),
    command       text not null default '',
    args          text[] not null default '{}',
    env           jsonb not null default '{}',
    url           text not null default '',
    headers       jsonb not null default '{}',
    query_params  jsonb not null default '{}',
    config_schema jsonb not null default '{}',
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now()
);

create table installations (
    id                      uuid primary key default gen_random_uuid(),
    team_id                 uuid not null references teams (id) on delete cascade,
    catalog_entry_id        uuid not null references catalog_entries (id),
    name                    text not null,
    args                    text[] not null default '{}',
    env                     jsonb not null default '{}',
    headers                 jsonb not null default '{}',
    query_params            jsonb not null default '{}',
    request_logging_enabled boolean not null default true,
    created_at              timestamptz not null default now(),
    updated_at              timestamptz not null default now(),
    unique (id, team_id)
);
create index installations_team_id on installations (team_id);

create table user_configurations (
    installation_id uuid not null,
    team_id         uuid not null,
    user_id         uuid not null references users (id) on delete cascade,
    args            text[] not null default '{}',
    env             jsonb not null default '{}',
    headers         jsonb not null default '{}',
    query_params    jsonb not null default '{}',
    updated_at      timestamptz not null default now(),
    primary key (installation_id, user_id),
    foreign key (installation_id, team_id) references installations (id, team_id) on delete cascade
);

-- One instance per team member and installation; id is {server_slug}-{team_slug}-{user_slug}-{installation_id}.
create table instances (
    id                   text primary key,
    installation_id      uuid not null,
    team_id              uuid not null,
    user_id              uuid not null references users (id) on delete cascade,
    status               text not null default 'provisioning' check (status in (
        'provisioning', 'connecting', 'discovering_tools', 'online', 'offline', 'error', 'requires_reauth',
        'restarting', 'crashed', 'permanently_failed', 'dormant')),
    status_message       text not null default '',
    status_updated_at    timestamptz not null default now(),
    last_health_check_at timestamptz,
    created_at           timestamptz not null default now(),
    unique (installation_id, user_id),
    foreign key (installation_id, team_id) references installations (id, team_id) on delete cascade
);
create index instances_team_id on instances (team_id);

-- Satellites and their protocol.

create table registration_tokens (
    id           uuid primary key,
    name         text not null,
    scope        text not null check (scope in ('global', 'team')),
    team_id      uuid references teams (id) on delete cascade,
    expires_at   timestamptz not null,
    created_at   timestamptz not null default now(),
    consumed_at  timestamptz,
    satellite_id uuid,
    revoked_at   timestamptz,
    check ((scope = 'team') = (team_id is not null))
);

create table satellites (
    id                    uuid primary key default gen_random_uuid(),
    name                  text not null unique,
    type                  text not null check (type in ('global', 'team')),
    team_id               uuid references teams (id) on delete cascade,
    api_key_id            text not null unique,
    api_key_hash          text not null,
    activated_at          timestamptz,
    revoked_at            timestamptz,
    url                   text not null default '',
    version               text not null default '',
    system_metrics        jsonb not null default '{}',
    process_count         integer not null default 0,
    last_heartbeat_at     timestamptz,
    registration_token_id uuid references registration_tokens (id) on delete set null,
    created_at            timestamptz not null default now(),
    check ((type = 'team') = (team_id is not null))
);
create index satellites_team_id on satellites (team_id);

-- Heartbeat history for capacity planning; the satellite row holds the latest values.
create table satellite_heartbeats (
    id             bigint generated always as identity primary key,
    satellite_id   uuid not null references satellites (id) on delete cascade,
    received_at    timestamptz not null default now(),
    system_metrics jsonb not null,
    process_counts jsonb not null default '[]'
);
create index satellite_heartbeats_satellite_id on satellite_heartbeats (satellite_id, received_at);

-- The processes each satellite reported in its latest heartbeat.
create table satellite_processes (
    satellite_id    uuid not null references satellites (id) on delete cascade,
    instance_id     text not null,
    team_id         uuid not null,
    installation_id uuid not null,
    status          text not null,
    health          text not null,
    pid             integer not null default 0,
    memory_bytes    bigint not null default 0,
    uptime_seconds  double precision not null default 0,
    request_count   bigint not null default 0,
    reported_at     timestamptz not null default now(),
    primary key (satellite_id, instance_id)
);
create index satellite_processes_team_id on satellite_processes (team_id);

create table satellite_commands (
    id               uuid primary key default gen_random_uuid(),
    satellite_id     uuid not null references satellites (id) on delete cascade,
    team_id          uuid references teams (id) on delete cascade,
    type             text not null check (type in ('configure', 'spawn', 'kill', 'restart', 'health_check', 'update')),
    priority         smallint not null check (priority between 1 and 4),
    payload          jsonb not null default '{}',
    state            text not null default 'pending' check (state in ('pending', 'dispatched', 'completed', 'failed', 'expired')),
    attempts         integer not null default 0,
    max_attempts     integer not null default 3,
    lease_expires_at timestamptz,
    expires_at       timestamptz not null,
    created_at       timestamptz not null default now(),
    completed_at     timestamptz,
    output           jsonb,
    error            text not null default ''
);
create index satellite_commands_open on satellite_commands (satellite_id, priority desc, created_at)
    where state in ('pending', 'dispatched');
create index satellite_commands_listing on satellite_commands (created_at desc, id desc);

-- Events from satellites. received_events makes EmitEvents idempotent by event id.

create table received_events (
    id           uuid primary key,
    satellite_id uuid not null,
    received_at  timestamptz not null default now()
);
create index received_events_received_at on received_events (received_at);

-- Status changes and lifecycle events (started, crashed, restarted, permanently_failed).
create table instance_events (
    id              uuid primary key,
    team_id         uuid not null,
    installation_id uuid not null,
    instance_id     text not null,
    kind            text not null,
    status          text not null default '',
    message         text not null default '',
    exit_code       integer,
    occurred_at     timestamptz not null,
    foreign key (installation_id, team_id) references installations (id, team_id) on delete cascade
);
create index instance_events_instance on instance_events (instance_id, occurred_at);

create table server_logs (
    id              bigint generated always as identity primary key,
    team_id         uuid not null,
    installation_id uuid not null,
    instance_id     text not null,
    level           text not null,
    message         text not null,
    occurred_at     timestamptz not null,
    foreign key (installation_id, team_id) references installations (id, team_id) on delete cascade
);
create index server_logs_installation on server_logs (installation_id, id desc);

create table request_logs (
    id              bigint generated always as identity primary key,
    team_id         uuid not null,
    installation_id uuid not null,
    instance_id     text not null,
    user_id         uuid,
    tool_name       text not null,
    duration_ms     double precision not null,
    success         boolean not null,
    error           text not null default '',
    request         jsonb,
    response        jsonb,
    occurred_at     timestamptz not null,
    foreign key (installation_id, team_id) references installations (id, team_id) on delete cascade
);
create index request_logs_installation on request_logs (installation_id, id desc);

create table discovered_tools (
    instance_id     text not null,
    team_id         uuid not null,
    installation_id uuid not null,
    name            text not null,
    description     text not null default '',
    input_schema    jsonb not null default '{}',
    token_count     integer not null default 0,
    discovered_at   timestamptz not null,
    primary key (instance_id, name),
    foreign key (installation_id, team_id) references installations (id, team_id) on delete cascade
);
create index discovered_tools_team_id on discovered_tools (team_id);

-- Events a satellite reported dropping, so losses are visible.
create table dropped_event_reports (
    id           uuid primary key,
    satellite_id uuid not null references satellites (id) on delete cascade,
    count        bigint not null,
    reason       text not null default '',
    occurred_at  timestamptz not null
);

---- create above / drop below ----

drop table dropped_event_reports, discovered_tools, request_logs, server_logs, instance_events, received_events,
    satellite_commands, satellite_processes, satellite_heartbeats, satellites, registration_tokens, instances,
    user_configurations, installations, catalog_entries, team_memberships, users, teams;
