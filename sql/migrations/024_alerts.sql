-- Alerts: webhook endpoints that a team's admins (or global admins, for every team) point at their own
-- receivers; the alerts the control plane raised; each delivery of an alert to an endpoint, with every
-- attempt; and the per-minute count of policy denials that rate alerts are raised from.

create table webhooks (
    id                      uuid primary key default gen_random_uuid(),
    -- team_id is null for a global webhook, which hears the alerts of every team and of global satellites.
    team_id                 uuid references teams (id) on delete cascade,
    name                    text not null,
    url                     text not null,
    event_kinds             text[] not null,
    -- secret_sealed is the signing secret, sealed with the keyring like installation secrets.
    secret_sealed           text not null,
    -- usage_calls_per_hour raises usage.threshold when a team's calls in the trailing hour reach it; 0 never.
    usage_calls_per_hour    bigint not null default 0 check (usage_calls_per_hour >= 0),
    -- policy_denials_per_hour raises policy.denials when a team's denials in the trailing hour reach it; 0 never.
    policy_denials_per_hour bigint not null default 0 check (policy_denials_per_hour >= 0),
    created_by              uuid references users (id) on delete set null,
    created_at              timestamptz not null default now()
);
create index webhooks_team_id on webhooks (team_id);

create table alerts (
    id          uuid primary key,
    -- team_id is null for an alert about a global satellite, heard only by global webhooks.
    team_id     uuid references teams (id) on delete cascade,
    kind        text not null,
    -- dedupe_key makes raising the same alert twice (a retried report, two replicas) a no-op.
    dedupe_key  text not null unique,
    -- body is the exact JSON that is signed and sent.
    body        text not null,
    occurred_at timestamptz not null default now()
);
create index alerts_occurred_at on alerts (occurred_at);

create table webhook_deliveries (
    id           uuid primary key default gen_random_uuid(),
    webhook_id   uuid not null references webhooks (id) on delete cascade,
    -- team_id is the webhook's, so every read of deliveries filters by the caller's team.
    team_id      uuid references teams (id) on delete cascade,
    alert_id     uuid not null references alerts (id) on delete cascade,
    state        text not null default 'pending' check (state in ('pending', 'delivered', 'failed')),
    attempts     integer not null default 0,
    created_at   timestamptz not null default now(),
    finished_at  timestamptz,
    unique (webhook_id, alert_id)
);
create index webhook_deliveries_webhook on webhook_deliveries (webhook_id, created_at desc);

create table webhook_attempts (
    delivery_id  uuid not null references webhook_deliveries (id) on delete cascade,
    attempt      integer not null,
    -- status_code is 0 when no response arrived.
    status_code  integer not null,
    latency_ms   double precision not null,
    error        text not null default '',
    attempted_at timestamptz not null default now(),
    primary key (delivery_id, attempt)
);

-- Satellites alerted offline; the next sweep after a heartbeat ends the outage raises satellite_online.
alter table satellites add column offline_alerted boolean not null default false;

create table policy_denial_minutes (
    team_id uuid not null references teams (id) on delete cascade,
    minute  timestamptz not null,
    denials bigint not null,
    primary key (team_id, minute)
);
create index policy_denial_minutes_minute on policy_denial_minutes (minute);

---- create above / drop below ----

drop table policy_denial_minutes;
alter table satellites drop column offline_alerted;
drop table webhook_attempts;
drop table webhook_deliveries;
drop table alerts;
drop table webhooks;
