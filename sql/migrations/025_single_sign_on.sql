-- Single sign-on through OpenID Connect providers that global admins configure.
-- client_secret_sealed is sealed with the installation-secret keyring; empty for a public client.
create table sso_providers (
    id                   uuid primary key default gen_random_uuid(),
    slug                 text not null unique check (slug ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    display_name         text not null,
    issuer               text not null,
    client_id            text not null,
    client_secret_sealed text not null default '',
    scopes               text[] not null default '{}',
    groups_claim         text not null default 'groups',
    -- allowed_domains are the email domains whose people may sign in through the provider; empty allows any.
    allowed_domains      text[] not null default '{}',
    created_at           timestamptz not null default now()
);

-- A rule makes the members of a provider's group members of a team with a role.
create table sso_group_rules (
    id          uuid primary key default gen_random_uuid(),
    provider_id uuid not null references sso_providers (id) on delete cascade,
    group_name  text not null,
    team_id     uuid not null references teams (id) on delete cascade,
    role        text not null check (role in ('team_admin', 'team_user')),
    created_at  timestamptz not null default now(),
    unique (provider_id, group_name, team_id)
);
create index sso_group_rules_team_id on sso_group_rules (team_id);

-- An identity is a person at a provider (issuer and subject), linked to one account. The refresh token, when
-- the provider gave one, lets the periodic check read the person's groups again without them.
create table sso_identities (
    provider_id          uuid not null references sso_providers (id) on delete cascade,
    subject              text not null,
    user_id              uuid not null references users (id) on delete cascade,
    refresh_token_sealed text not null default '',
    groups               text[] not null default '{}',
    synced_at            timestamptz not null default now(),
    created_at           timestamptz not null default now(),
    primary key (provider_id, subject)
);
create index sso_identities_user_id on sso_identities (user_id);
create index sso_identities_synced_at on sso_identities (synced_at);

-- The memberships group rules granted: only these may reconciliation change or take away, never a membership
-- an admin or an invitation gave.
create table sso_memberships (
    team_id     uuid not null,
    user_id     uuid not null,
    provider_id uuid not null references sso_providers (id) on delete cascade,
    primary key (team_id, user_id, provider_id),
    foreign key (team_id, user_id) references team_memberships (team_id, user_id) on delete cascade
);
create index sso_memberships_user_id on sso_memberships (user_id);

-- A sign-in under way at a provider: the state's SHA-256, single use, with the nonce and the PKCE verifier.
create table sso_login_states (
    state_hash    bytea primary key,
    provider_id   uuid not null references sso_providers (id) on delete cascade,
    nonce         text not null,
    code_verifier text not null,
    return_to     text not null,
    expires_at    timestamptz not null
);
create index sso_login_states_expires_at on sso_login_states (expires_at);

-- Email domains whose people must sign in through a provider: their passwords are refused.
create table password_sign_in_disabled_domains (
    domain     text primary key check (domain = lower(domain)),
    created_at timestamptz not null default now()
);
