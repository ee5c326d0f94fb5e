-- orreryctl, the command-line client, signs in as a public client known to every installation: a fixed id
-- lets its binary ship without a registration step, and only this first-party client may ask for tokens
-- whose audience is the control plane's own API. The redirect URI is a loopback literal, whose port the
-- authorization server lets vary (RFC 8252, section 7.3).
-- A built-in client is part of the installation: the job that prunes unused registrations keeps it.
alter table oauth_clients add column builtin boolean not null default false;
insert into oauth_clients (id, name, redirect_uris, grant_types, scopes, token_endpoint_auth_method, builtin)
values ('orreryctl', 'orreryctl', '{http://127.0.0.1/callback}',
        '{authorization_code,refresh_token,urn:ietf:params:oauth:grant-type:device_code}',
        '{api,offline_access}', 'none', true)
on conflict (id) do nothing;

-- Device authorization requests (RFC 8628): a device code the client polls with and a short user code the
-- user types on the verification page, each stored as its SHA-256.
create table oauth_device_codes (
    device_code_hash bytea primary key,
    user_code_hash   bytea not null unique,
    client_id        text not null,
    scopes           text[] not null,
    resource         text not null,
    status           text not null default 'pending' check (status in ('pending', 'approved', 'denied', 'used')),
    -- user_id is who approved or denied the request.
    user_id          uuid references users (id) on delete cascade,
    interval_seconds integer not null,
    last_polled_at   timestamptz,
    expires_at       timestamptz not null,
    created_at       timestamptz not null default now()
);
create index oauth_device_codes_expires_at on oauth_device_codes (expires_at);

---- create above / drop below ----

drop table oauth_device_codes;
delete from oauth_clients where id = 'orreryctl';
alter table oauth_clients drop column builtin;
