-- Access tokens for MCP clients. Tokens are at least 32 random bytes, so a SHA-256 of the token is a safe
-- lookup key and no slow hash is needed on the hot path.
create table access_tokens (
    id         uuid primary key default gen_random_uuid(),
    token_hash bytea not null unique,
    team_id    uuid not null references teams (id) on delete cascade,
    user_id    uuid not null references users (id) on delete cascade,
    client_id  text not null default '',
    audience   text not null,
    scopes     text[] not null default '{}',
    expires_at timestamptz not null,
    revoked_at timestamptz,
    created_at timestamptz not null default now()
);
create index access_tokens_team_id on access_tokens (team_id);

---- create above / drop below ----

drop table access_tokens;
