-- State kept by the periodic jobs: when a satellite was noticed offline, each template's aggregated health,
-- and when each installation's credentials were last sent for validation.

alter table satellites add column offline_since timestamptz;

create table catalog_entry_health (
    catalog_entry_id uuid primary key references catalog_entries (id) on delete cascade,
    instances        integer not null,
    online           integer not null,
    failing          integer not null,
    status           text not null check (status in ('unused', 'healthy', 'degraded', 'failing')),
    aggregated_at    timestamptz not null
);

alter table installations add column credentials_checked_at timestamptz;

---- create above / drop below ----

alter table installations drop column credentials_checked_at;
drop table catalog_entry_health;
alter table satellites drop column offline_since;
