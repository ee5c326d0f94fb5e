-- Commands carry a typed action (orrery.satellite.v1.Command's oneof, stored as protojson) instead of an
-- untyped payload, and completed ones keep the typed outcome of each instance they acted on. type stays as
-- the name of the action, for filtering; recovery and redeploy became actions of their own.
-- Open commands in the old format could not be delivered any more: they end as expired.
update satellite_commands
set state = 'expired', completed_at = now(), error = 'superseded by the typed command format'
where state in ('pending', 'dispatched');
alter table satellite_commands drop column payload;
alter table satellite_commands add column action jsonb not null default '{}';
alter table satellite_commands alter column action drop default;
alter table satellite_commands add column outcomes jsonb;
alter table satellite_commands drop constraint satellite_commands_type_check;
alter table satellite_commands add constraint satellite_commands_type_check
    check (type in ('configure', 'spawn', 'kill', 'restart', 'health_check', 'recovery', 'revoke_tokens',
                    'redeploy', 'update'));

---- create above / drop below ----

delete from satellite_commands where type in ('recovery', 'redeploy');
alter table satellite_commands drop constraint satellite_commands_type_check;
alter table satellite_commands add constraint satellite_commands_type_check
    check (type in ('configure', 'spawn', 'kill', 'restart', 'health_check', 'update', 'revoke_tokens'));
alter table satellite_commands drop column outcomes;
alter table satellite_commands drop column action;
alter table satellite_commands add column payload jsonb not null default '{}';
