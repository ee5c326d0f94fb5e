-- revoke_tokens tells the satellites serving a team which of its access tokens were just revoked, so they
-- stop accepting them at once instead of when their cached introspection results run out.
alter table satellite_commands drop constraint satellite_commands_type_check;
alter table satellite_commands add constraint satellite_commands_type_check
    check (type in ('configure', 'spawn', 'kill', 'restart', 'health_check', 'update', 'revoke_tokens'));

---- create above / drop below ----

delete from satellite_commands where type = 'revoke_tokens';
alter table satellite_commands drop constraint satellite_commands_type_check;
alter table satellite_commands add constraint satellite_commands_type_check
    check (type in ('configure', 'spawn', 'kill', 'restart', 'health_check', 'update'));
