-- Team invitations: a team admin invites an email address; the person signed in with that address accepts
-- or declines. Nothing here refers to an account, so inviting an address tells the team nothing about
-- whether one exists.

create table team_invitations (
    id          uuid primary key default gen_random_uuid(),
    team_id     uuid not null references teams (id) on delete cascade,
    -- email is the address as the admin wrote it; it matches an account's email case-insensitively.
    email       text not null,
    role        text not null check (role in ('team_admin', 'team_user')),
    invited_by  uuid references users (id) on delete set null,
    created_at  timestamptz not null default now(),
    expires_at  timestamptz not null,
    -- declined_at hides the invitation from its addressee; the team still sees it pending until it expires,
    -- so a refusal does not confirm that the address has an account.
    declined_at timestamptz
);
create unique index team_invitations_team_email on team_invitations (team_id, lower(email));
create index team_invitations_email on team_invitations (lower(email));
create index team_invitations_expires_at on team_invitations (expires_at);

---- create above / drop below ----

drop table team_invitations;
