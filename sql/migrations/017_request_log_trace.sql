-- The W3C trace id of each tool call, so that a request log leads to the call's trace. Empty for calls that
-- were not traced.

alter table request_logs add column trace_id text not null default '';

---- create above / drop below ----

alter table request_logs drop column trace_id;
