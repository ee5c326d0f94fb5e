-- Placeholder for migration 008, which another branch adds. tern refuses gaps in the numbering, so this
-- file, which changes nothing, lets 009 apply here; drop it when merging with the branch that brings the
-- real 008.
select 1;

---- create above / drop below ----

select 1;
