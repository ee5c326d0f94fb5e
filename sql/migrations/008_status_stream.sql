-- Status changes and lifecycle events get an ordered id, so a status stream can resume after the last one a
-- client saw. Writers of one installation's events hold a lock until they commit (see store.RecordEvents),
-- so within an installation ids become visible in increasing order and a cursor never skips a late commit.
alter table instance_events add column seq bigint not null generated always as identity;
create index instance_events_installation_seq on instance_events (installation_id, seq);

---- create above / drop below ----

alter table instance_events drop column seq;
