-- name: CreateSSOProvider :one
insert into sso_providers (slug, display_name, issuer, client_id, client_secret_sealed, scopes, groups_claim, allowed_domains)
values (@slug, @display_name, @issuer, @client_id, @client_secret_sealed, @scopes, @groups_claim, @allowed_domains)
returning *;

-- name: GetSSOProvider :one
select * from sso_providers where id = @id;

-- name: GetSSOProviderBySlug :one
select * from sso_providers where slug = @slug;

-- name: ListSSOProviders :many
select * from sso_providers order by slug limit 100;

-- name: DeleteSSOProvider :execrows
delete from sso_providers where id = @id;

-- name: CountSSOProviders :one
select count(*) from sso_providers;

-- name: CreateSSOGroupRule :one
insert into sso_group_rules (provider_id, group_name, team_id, role)
values (@provider_id, @group_name, @team_id, @role)
returning *;

-- name: ListSSOGroupRules :many
select * from sso_group_rules
where sqlc.narg(provider_id)::uuid is null or provider_id = sqlc.narg(provider_id)::uuid
order by provider_id, group_name, team_id
limit 1000;

-- name: DeleteSSOGroupRule :execrows
delete from sso_group_rules where id = @id;

-- name: CountSSOGroupRules :one
select count(*) from sso_group_rules where provider_id = @provider_id;

-- name: GetSSOIdentity :one
select * from sso_identities where provider_id = @provider_id and subject = @subject;

-- name: UpsertSSOIdentity :exec
insert into sso_identities (provider_id, subject, user_id, refresh_token_sealed, groups, synced_at)
values (@provider_id, @subject, @user_id, @refresh_token_sealed, @groups, now())
on conflict (provider_id, subject) do update
set refresh_token_sealed = case when excluded.refresh_token_sealed = '' then sso_identities.refresh_token_sealed
                                else excluded.refresh_token_sealed end,
    groups = excluded.groups, synced_at = now();

-- name: ForgetSSORefreshToken :exec
update sso_identities set refresh_token_sealed = '', synced_at = now()
where provider_id = @provider_id and subject = @subject;

-- name: DueSSOIdentities :many
-- DueSSOIdentities are the identities with a refresh token whose groups were last read before @before.
select * from sso_identities
where refresh_token_sealed <> '' and synced_at < @before
order by synced_at
limit @max_rows;

-- name: ListSSOMemberships :many
select team_id from sso_memberships where user_id = @user_id and provider_id = @provider_id;

-- name: AddSSOMembership :exec
insert into sso_memberships (team_id, user_id, provider_id) values (@team_id, @user_id, @provider_id)
on conflict do nothing;

-- name: DeleteSSOMembership :execrows
delete from sso_memberships where team_id = @team_id and user_id = @user_id and provider_id = @provider_id;

-- name: CountSSOMembershipGrants :one
select count(*) from sso_memberships where team_id = @team_id and user_id = @user_id;

-- name: CreateSSOLoginState :exec
insert into sso_login_states (state_hash, provider_id, nonce, code_verifier, return_to, expires_at)
values (@state_hash, @provider_id, @nonce, @code_verifier, @return_to, @expires_at);

-- name: ConsumeSSOLoginState :one
-- ConsumeSSOLoginState takes a state once: a second use finds nothing.
delete from sso_login_states where state_hash = @state_hash and expires_at > now()
returning *;

-- name: DeleteExpiredSSOLoginStates :execrows
delete from sso_login_states where expires_at <= now();

-- name: DisablePasswordSignIn :exec
insert into password_sign_in_disabled_domains (domain) values (@domain) on conflict do nothing;

-- name: EnablePasswordSignIn :execrows
delete from password_sign_in_disabled_domains where domain = @domain;

-- name: ListPasswordSignInDisabledDomains :many
select domain from password_sign_in_disabled_domains order by domain limit 1000;

-- name: PasswordSignInDisabled :one
select exists (select 1 from password_sign_in_disabled_domains where domain = lower(@domain))::boolean;
