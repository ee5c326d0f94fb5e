-- The prefix of an installation's tool and prompt names at the team endpoint: null means the server's slug,
-- an empty string means none.
alter table installations add column tool_prefix text check (tool_prefix ~ '^[A-Za-z0-9_-]{0,32}$');

---- create above / drop below ----

alter table installations drop column tool_prefix;
