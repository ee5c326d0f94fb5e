-- The OAuth 2.1 authorization server's state: clients, remembered consents, and the grants behind codes,
-- access tokens and refresh tokens.

-- Clients registered dynamically (RFC 7591) or created by team admins for headless agents. Clients named by
-- a client ID metadata document (an https URL) are fetched when used and not stored here.
create table oauth_clients (
    id                         text primary key,
    -- team_id is set for the confidential clients of one team, whose client-credentials tokens act for that
    -- team alone as service_user_id: a user without password made for the client and a member of the team,
    -- so the satellite serves it like any member. Deleting the client's user deletes the client.
    team_id                    uuid references teams (id) on delete cascade,
    service_user_id            uuid unique references users (id) on delete cascade,
    name                       text not null default '',
    redirect_uris              text[] not null default '{}',
    grant_types                text[] not null default '{}',
    scopes                     text[] not null default '{}',
    token_endpoint_auth_method text not null check (token_endpoint_auth_method in ('none', 'client_secret_basic', 'client_secret_post')),
    -- secret_hash is the Argon2id hash of a confidential client's secret; secrets are checked only at the
    -- token endpoint, so the slow hash is not on a hot path.
    secret_hash                text,
    created_by                 uuid references users (id) on delete set null,
    created_at                 timestamptz not null default now(),
    revoked_at                 timestamptz,
    check ((token_endpoint_auth_method = 'none') = (secret_hash is null)),
    check ((team_id is null) = (service_user_id is null))
);
create index oauth_clients_team_id on oauth_clients (team_id);

-- A user's consent that a client may act for them in a team with these scopes; asked once, then remembered
-- until withdrawn.
create table oauth_consents (
    user_id    uuid not null references users (id) on delete cascade,
    client_id  text not null,
    team_id    uuid not null references teams (id) on delete cascade,
    scopes     text[] not null,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    primary key (user_id, client_id, team_id)
);

-- Authorization codes, PKCE challenges, access and refresh tokens, each stored under the SHA-256 of its
-- value. request_id names the grant: every token refreshed from one authorization shares it, so revoking a
-- grant (or detecting a reused refresh token) revokes the whole family.
create table oauth_tokens (
    signature  bytea not null,
    kind       text not null check (kind in ('authorize_code', 'pkce', 'access_token', 'refresh_token')),
    request_id text not null,
    client_id  text not null,
    team_id    uuid not null references teams (id) on delete cascade,
    -- user_id is, for client-credentials grants, the client's service user.
    user_id    uuid not null references users (id) on delete cascade,
    -- request is the serialized grant: scopes, audience, the parameters fosite needs again, and the session.
    request    jsonb not null,
    active     boolean not null default true,
    expires_at timestamptz not null,
    created_at timestamptz not null default now(),
    -- A PKCE challenge is stored under its code's signature.
    primary key (signature, kind)
);
create index oauth_tokens_request_id on oauth_tokens (request_id);
create index oauth_tokens_team_id on oauth_tokens (team_id, kind);
create index oauth_tokens_user_id on oauth_tokens (user_id, kind);

-- Access tokens issued by the authorization server remember their grant, so revoking the grant revokes them.
alter table access_tokens add column request_id text;
create index access_tokens_request_id on access_tokens (request_id);

---- create above / drop below ----

drop index access_tokens_request_id;
alter table access_tokens drop column request_id;
drop table oauth_tokens;
drop table oauth_consents;
drop table oauth_clients;
