-- Accounts and access: a user's global role and sign-in throttling, browser sessions, personal API tokens,
-- team ownership and personal teams, and the append-only audit log.

alter table users
    add column global_role   text not null default 'global_user' check (global_role in ('global_admin', 'global_user')),
    add column failed_logins integer not null default 0,
    add column locked_until  timestamptz;

-- Global roles belong to the user now; a membership carries only the team role.
update team_memberships set role = 'team_admin' where role = 'global_admin';
update team_memberships set role = 'team_user' where role = 'global_user';
alter table team_memberships drop constraint team_memberships_role_check;
alter table team_memberships add constraint team_memberships_role_check check (role in ('team_admin', 'team_user'));

alter table teams
    add column owner_id uuid references users (id) on delete set null,
    add column personal boolean not null default false;

-- Sessions and API tokens are at least 32 random bytes, stored only as their SHA-256.
create table sessions (
    id           uuid primary key default gen_random_uuid(),
    token_hash   bytea not null unique,
    user_id      uuid not null references users (id) on delete cascade,
    created_at   timestamptz not null default now(),
    expires_at   timestamptz not null
);
create index sessions_user_id on sessions (user_id);

create table api_tokens (
    id           uuid primary key default gen_random_uuid(),
    token_hash   bytea not null unique,
    user_id      uuid not null references users (id) on delete cascade,
    name         text not null,
    created_at   timestamptz not null default now(),
    expires_at   timestamptz,
    last_used_at timestamptz,
    revoked_at   timestamptz
);
create index api_tokens_user_id on api_tokens (user_id);

-- The audit log outlives the users and teams it names, so it holds their ids without foreign keys.
create table audit_events (
    id          bigint generated always as identity primary key,
    occurred_at timestamptz not null default now(),
    actor_id    uuid,
    actor       text not null,
    team_id     uuid,
    action      text not null,
    target      text not null default '',
    details     jsonb not null default '{}'
);
create index audit_events_team_id on audit_events (team_id, id desc);

create function audit_events_append_only() returns trigger language plpgsql as $$
begin
    raise exception 'audit_events is append-only';
end;
$$;
create trigger audit_events_append_only before update or delete on audit_events
    for each row execute function audit_events_append_only();

---- create above / drop below ----

drop trigger audit_events_append_only on audit_events;
drop function audit_events_append_only();
drop table audit_events, api_tokens, sessions;
alter table teams drop column personal, drop column owner_id;
alter table team_memberships drop constraint team_memberships_role_check;
alter table team_memberships add constraint team_memberships_role_check
    check (role in ('global_admin', 'global_user', 'team_admin', 'team_user'));
alter table users drop column locked_until, drop column failed_logins, drop column global_role;
