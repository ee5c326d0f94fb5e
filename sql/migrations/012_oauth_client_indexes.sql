-- The prune job looks for dynamically registered clients that no consent and no token name.
create index oauth_tokens_client_id on oauth_tokens (client_id);
create index oauth_consents_client_id on oauth_consents (client_id);

---- create above / drop below ----

drop index oauth_consents_client_id;
drop index oauth_tokens_client_id;
