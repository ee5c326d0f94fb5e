-- The W3C trace id of each tool call, so that a request log leads to the call's trace. Empty for calls that
-- were not traced. "if not exists": a development database may have the column from when this migration
-- was numbered 14.

alter table request_logs add column if not exists trace_id text not null default '';

---- create above / drop below ----

alter table request_logs drop column if exists trace_id;
