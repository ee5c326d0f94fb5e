-- Rate limits shared by every replica: one row per limited action and client address, holding the bucket
-- as its theoretical arrival time (GCRA): the bucket is full once tat has passed, so such rows are dropped
-- by the periodic cleanup without changing any answer.
--
-- Unlogged: a crash or a failover forgets the buckets, which only resets them, and commits that touch
-- nothing else need not wait for the WAL to reach disk.
create unlogged table rate_limits (
    key text primary key,
    tat timestamptz not null
);
create index rate_limits_tat on rate_limits (tat);

-- A satellite's dropped-event reports are listed newest first and summed.
create index dropped_event_reports_satellite on dropped_event_reports (satellite_id, occurred_at, id);

---- create above / drop below ----

drop index dropped_event_reports_satellite;
drop table rate_limits;
