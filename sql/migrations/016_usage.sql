-- Usage analytics: tool calls counted per minute (kept 30 days) and per hour (kept a year), per team,
-- installation, tool and user. Latency is kept as counts per fixed log-scale bucket (the bucket is part of
-- the key), so any range's p50/p95 comes from plain sums, and concurrent increments merge exactly.
-- Installations and users are not foreign keys: their usage outlives them as history; the team's does not.

create table usage_minutes (
    team_id         uuid not null references teams (id) on delete cascade,
    minute          timestamptz not null,
    installation_id uuid not null,
    tool_name       text not null,
    -- user_id is the nil UUID when a call named no user.
    user_id         uuid not null,
    latency_bucket  smallint not null,
    calls           bigint not null,
    errors          bigint not null,
    bytes_in        bigint not null,
    bytes_out       bigint not null,
    primary key (team_id, minute, installation_id, tool_name, user_id, latency_bucket)
);
create index usage_minutes_minute on usage_minutes (minute);

create table usage_hours (
    team_id         uuid not null references teams (id) on delete cascade,
    hour            timestamptz not null,
    installation_id uuid not null,
    tool_name       text not null,
    user_id         uuid not null,
    latency_bucket  smallint not null,
    calls           bigint not null,
    errors          bigint not null,
    bytes_in        bigint not null,
    bytes_out       bigint not null,
    primary key (team_id, hour, installation_id, tool_name, user_id, latency_bucket)
);
create index usage_hours_hour on usage_hours (hour);
create index usage_hours_user on usage_hours (team_id, user_id, hour);

-- Coarser hourly rollups, derived from usage_hours, so that reads over weeks of a whole team scan few rows:
-- per tool without users (series and top tools of the team) and per user without tools (top users, and a
-- user's own series).
create table usage_tool_hours (
    team_id         uuid not null references teams (id) on delete cascade,
    hour            timestamptz not null,
    installation_id uuid not null,
    tool_name       text not null,
    latency_bucket  smallint not null,
    calls           bigint not null,
    errors          bigint not null,
    bytes_in        bigint not null,
    bytes_out       bigint not null,
    primary key (team_id, hour, installation_id, tool_name, latency_bucket)
);
create index usage_tool_hours_hour on usage_tool_hours (hour);

create table usage_user_hours (
    team_id         uuid not null references teams (id) on delete cascade,
    hour            timestamptz not null,
    user_id         uuid not null,
    latency_bucket  smallint not null,
    calls           bigint not null,
    errors          bigint not null,
    bytes_in        bigint not null,
    bytes_out       bigint not null,
    primary key (team_id, hour, user_id, latency_bucket)
);
create index usage_user_hours_user on usage_user_hours (team_id, user_id, hour);
create index usage_user_hours_hour on usage_user_hours (hour);

-- The team's hours without tools or users, for its series by hour; and days per tool and per user, for top
-- lists and series by day over long ranges. Days are UTC days.
create table usage_team_hours (
    team_id        uuid not null references teams (id) on delete cascade,
    hour           timestamptz not null,
    latency_bucket smallint not null,
    calls          bigint not null,
    errors         bigint not null,
    bytes_in       bigint not null,
    bytes_out      bigint not null,
    primary key (team_id, hour, latency_bucket)
);
create index usage_team_hours_hour on usage_team_hours (hour);

create table usage_tool_days (
    team_id         uuid not null references teams (id) on delete cascade,
    day             timestamptz not null,
    installation_id uuid not null,
    tool_name       text not null,
    latency_bucket  smallint not null,
    calls           bigint not null,
    errors          bigint not null,
    bytes_in        bigint not null,
    bytes_out       bigint not null,
    primary key (team_id, day, installation_id, tool_name, latency_bucket)
);
create index usage_tool_days_day on usage_tool_days (day);

create table usage_user_days (
    team_id        uuid not null references teams (id) on delete cascade,
    day            timestamptz not null,
    user_id        uuid not null,
    latency_bucket smallint not null,
    calls          bigint not null,
    errors         bigint not null,
    bytes_in       bigint not null,
    bytes_out      bigint not null,
    primary key (team_id, day, user_id, latency_bucket)
);
create index usage_user_days_user on usage_user_days (team_id, user_id, day);
create index usage_user_days_day on usage_user_days (day);

-- The hours whose minutes changed since they were last rolled up. Ingest marks an hour in the same
-- transaction as its minutes; the rollup job takes marks it can lock and recomputes those hours whole.
create table usage_dirty_hours (
    team_id uuid not null references teams (id) on delete cascade,
    hour    timestamptz not null,
    primary key (team_id, hour)
);

---- create above / drop below ----

drop table usage_dirty_hours, usage_user_days, usage_tool_days, usage_team_hours, usage_user_hours, usage_tool_hours, usage_hours, usage_minutes;
