-- Policies that satellites apply to every tool call: CEL expressions, global (team_id null) or a team's.
-- The expression is compiled by the control plane before it is stored, and again by each satellite.

create table policies (
    id               uuid primary key default gen_random_uuid(),
    team_id          uuid references teams (id) on delete cascade,
    name             text not null check (name ~ '^[a-z0-9]([a-z0-9_-]*[a-z0-9])?$' and octet_length(name) <= 63),
    kind             text not null check (kind in ('allow', 'deny', 'redact', 'rate_limit')),
    expression       text not null check (octet_length(expression) between 1 and 2048),
    redact_paths     text[] not null default '{}',
    redact_patterns  text[] not null default '{}',
    calls_per_minute integer not null default 0 check (calls_per_minute between 0 and 100000),
    rate_limit_key   text not null default '' check (rate_limit_key in ('', 'user', 'user_tool')),
    created_at       timestamptz not null default now(),
    updated_at       timestamptz not null default now()
);
-- One name per team, and one among the global policies.
create unique index policies_team_name on policies (team_id, name) nulls not distinct;

---- create above / drop below ----

drop table policies;
