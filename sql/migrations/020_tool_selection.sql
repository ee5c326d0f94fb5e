-- Discovered tools keep the whole definition a client receives, so the API can show it and count its tokens.
alter table discovered_tools
    add column title         text not null default '',
    add column output_schema jsonb,
    add column annotations   jsonb;

-- A team's choice of an installation's tools: allow and deny lists of name patterns (Go path.Match syntax,
-- matched against the tool's name on its server) and descriptions that replace the server's, by tool name.
create table tool_selections (
    installation_id uuid primary key,
    team_id         uuid not null,
    allow           text[] not null default '{}',
    deny            text[] not null default '{}',
    descriptions    jsonb not null default '{}',
    updated_at      timestamptz not null default now(),
    foreign key (installation_id, team_id) references installations (id, team_id) on delete cascade
);

-- The tools of an installation a member hides from their own endpoint, as name patterns.
create table hidden_tools (
    installation_id uuid not null,
    team_id         uuid not null,
    user_id         uuid not null references users (id) on delete cascade,
    patterns        text[] not null default '{}',
    updated_at      timestamptz not null default now(),
    primary key (installation_id, user_id),
    foreign key (installation_id, team_id) references installations (id, team_id) on delete cascade
);

---- create above / drop below ----

drop table hidden_tools, tool_selections;
alter table discovered_tools drop column title, drop column output_schema, drop column annotations;
