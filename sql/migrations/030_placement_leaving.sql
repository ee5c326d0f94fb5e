-- A draining satellite keeps the teams it served when its drain began, as leaving placements, so that its
-- open sessions keep their tools while the teams are also placed elsewhere. Leaving rows are not part of a
-- team's placement: introspection, endpoints and the placer ignore them; the satellite's configuration and
-- the team's commands still reach it. They go when the satellite is drained or undrained.
alter table team_placements add column leaving boolean not null default false;
-- Every recomputation looks for leaving rows to delete; there are few.
create index team_placements_leaving on team_placements (satellite_id) where leaving;

---- create above / drop below ----

drop index team_placements_leaving;
delete from team_placements where leaving;
alter table team_placements drop column leaving;
