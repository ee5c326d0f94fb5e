-- Where a stdio template's server is built from: orrery.satellite.v1.Source in protobuf JSON (an https
-- archive URL, its SHA-256 and an optional build command); '{}' for a template that runs a command as it is.
alter table catalog_entries add column source jsonb not null default '{}';

---- create above / drop below ----

alter table catalog_entries drop column source;
