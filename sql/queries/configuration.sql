-- name: ListDesiredInstances :many
-- ListDesiredInstances returns every instance with the configuration levels it merges, for one team or, when
-- team_id is null, for all teams.
select i.id, i.installation_id, i.team_id, t.slug as team_slug, i.user_id, u.slug as user_slug,
       c.slug as server_slug, c.name as server_name, c.transport, c.command, c.url, c.sandbox, c.source, c.per_user_authorization,
       c.args as template_args, c.env as template_env, c.headers as template_headers,
       c.query_params as template_query_params, c.config_schema,
       inst.args as team_args, inst.arg_values as team_arg_values, inst.env as team_env, inst.headers as team_headers,
       inst.query_params as team_query_params, inst.request_logging_enabled,
       coalesce(inst.tool_prefix, c.slug)::text as tool_prefix,
       coalesce(uc.args, '{}')::text[] as user_args, coalesce(uc.arg_values, '{}')::jsonb as user_arg_values,
       coalesce(uc.env, '{}')::jsonb as user_env,
       coalesce(uc.headers, '{}')::jsonb as user_headers, coalesce(uc.query_params, '{}')::jsonb as user_query_params,
       coalesce(ts.allow, '{}')::text[] as tools_allow, coalesce(ts.deny, '{}')::text[] as tools_deny,
       coalesce(ts.descriptions, '{}')::jsonb as tool_descriptions, coalesce(ht.patterns, '{}')::text[] as tools_hidden,
       c.stop_reason as template_stop_reason, inst.stop_reason as installation_stop_reason
from instances i
join installations inst on inst.id = i.installation_id
join catalog_entries c on c.id = inst.catalog_entry_id
join teams t on t.id = i.team_id
join users u on u.id = i.user_id
left join user_configurations uc on uc.installation_id = i.installation_id and uc.user_id = i.user_id
left join tool_selections ts on ts.installation_id = i.installation_id and ts.team_id = i.team_id
left join hidden_tools ht on ht.installation_id = i.installation_id and ht.user_id = i.user_id and ht.team_id = i.team_id
where (sqlc.narg(team_id)::uuid is null or i.team_id = sqlc.narg(team_id)::uuid)
  and (sqlc.narg(placed_on)::uuid is null or exists (
      select 1 from team_placements p where p.team_id = i.team_id and p.satellite_id = sqlc.narg(placed_on)::uuid))
order by i.id;
