-- A template's slug is unique among the global templates and within each team's own templates, so a taken
-- slug tells a team nothing about another team's catalog. A team's template may not take a global slug and
-- a global template may not take any team's (both would show in that team's catalog); the store checks that
-- when a template is created.
alter table catalog_entries drop constraint catalog_entries_slug_key;
create unique index catalog_entries_global_slug on catalog_entries (slug) where team_id is null;
create unique index catalog_entries_team_slug on catalog_entries (team_id, slug) where team_id is not null;

---- create above / drop below ----

drop index catalog_entries_team_slug;
drop index catalog_entries_global_slug;
alter table catalog_entries add constraint catalog_entries_slug_key unique (slug);
