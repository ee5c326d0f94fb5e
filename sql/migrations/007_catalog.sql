-- Catalog search and tags, and the named values a team or a user gives to the arguments a template's schema
-- declares (stored like env: {"value": ...} or {"sealed": ..., "secret": true}, and rendered into args when a
-- satellite's configuration is built).
alter table catalog_entries add column tags text[] not null default '{}';
create index catalog_entries_tags on catalog_entries using gin (tags);
create index catalog_entries_team_id on catalog_entries (team_id, slug);

alter table installations add column arg_values jsonb not null default '{}';
alter table user_configurations add column arg_values jsonb not null default '{}';

---- create above / drop below ----

alter table user_configurations drop column arg_values;
alter table installations drop column arg_values;
drop index catalog_entries_team_id;
alter table catalog_entries drop column tags;
