-- How a team endpoint offers tools: every tool ('all'), or two meta-tools that search them and call one
-- ('search'). The team's admins choose for the team; a member may choose for themselves (null follows
-- the team), and a client may choose per connection with ?tools= on the endpoint URL.
alter table teams add column tools_mode text not null default 'all' check (tools_mode in ('all', 'search'));
alter table team_memberships add column tools_mode text check (tools_mode in ('all', 'search'));
