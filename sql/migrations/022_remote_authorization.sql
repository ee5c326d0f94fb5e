-- Per-user OAuth to remote MCP servers: the control plane is an OAuth client of each remote server's
-- authorization server, and keeps each member's tokens for an installation, sealed like other secrets.

-- per_user_authorization marks a remote template whose server authorizes each person with OAuth: every
-- member connects their own account, and the instances of members who have not are told so.
alter table catalog_entries add column per_user_authorization boolean not null default false;

-- The control plane's registration with an upstream authorization server, one per issuer, made by dynamic
-- client registration (RFC 7591) the first time a member connects to a server it protects.
create table remote_oauth_clients (
    issuer        text primary key,
    client_id     text not null,
    -- client_secret is sealed (secrets.Keyring); empty for a public client.
    client_secret text not null default '',
    created_at    timestamptz not null default now()
);

-- An authorization a member started and has not finished: the browser comes back to the callback with
-- state, whose SHA-256 finds the row once. The PKCE verifier is sealed.
create table remote_oauth_flows (
    state_hash      bytea primary key,
    team_id         uuid not null references teams (id) on delete cascade,
    installation_id uuid not null,
    user_id         uuid not null references users (id) on delete cascade,
    issuer          text not null,
    token_endpoint  text not null,
    resource        text not null,
    verifier        text not null,
    expires_at      timestamptz not null,
    foreign key (installation_id, team_id) references installations (id, team_id) on delete cascade
);
create index remote_oauth_flows_expires_at on remote_oauth_flows (expires_at);

-- A member's tokens for one installation of a remote server. Only that member's instance is sent them.
-- Leaving the team or deleting the installation deletes them.
create table remote_oauth_connections (
    team_id          uuid not null references teams (id) on delete cascade,
    installation_id  uuid not null,
    user_id          uuid not null references users (id) on delete cascade,
    issuer           text not null,
    token_endpoint   text not null,
    resource         text not null,
    -- access_token and refresh_token are sealed; refresh_token is empty when the server gave none.
    access_token     text not null,
    refresh_token    text not null default '',
    scope            text not null default '',
    -- expires_at is when the access token expires; null when the server did not say.
    expires_at       timestamptz,
    -- failed_at is set when a refresh was refused: the member must connect again.
    failed_at        timestamptz,
    created_at       timestamptz not null default now(),
    updated_at       timestamptz not null default now(),
    primary key (installation_id, user_id),
    foreign key (installation_id, team_id) references installations (id, team_id) on delete cascade
);
create index remote_oauth_connections_expires_at on remote_oauth_connections (expires_at) where failed_at is null;
create index remote_oauth_connections_user on remote_oauth_connections (team_id, user_id);

---- create above / drop below ----

drop table remote_oauth_connections;
drop table remote_oauth_flows;
drop table remote_oauth_clients;
alter table catalog_entries drop column per_user_authorization;
