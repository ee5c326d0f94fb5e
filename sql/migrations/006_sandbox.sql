-- How a template's servers are sandboxed: network on or off, whose home they write, limit overrides. The
-- value is orrery.satellite.v1.Sandbox in protobuf JSON; '{}' keeps the satellite's defaults.
alter table catalog_entries add column sandbox jsonb not null default '{}';

---- create above / drop below ----

alter table catalog_entries drop column sandbox;
