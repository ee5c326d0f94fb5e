-- name: AddUsageMinutes :exec
-- AddUsageMinutes adds counts to per-minute rollups. Callers sum rows with the same key first (one
-- statement may not update a row twice) and sort them, so concurrent batches lock rows in the same order.
insert into usage_minutes (team_id, minute, installation_id, tool_name, user_id, latency_bucket, calls, errors,
                           bytes_in, bytes_out)
select unnest(@team_ids::uuid[]), unnest(@minutes::timestamptz[]), unnest(@installation_ids::uuid[]),
       unnest(@tool_names::text[]), unnest(@user_ids::uuid[]), unnest(@latency_buckets::smallint[]),
       unnest(@calls::bigint[]), unnest(@errors::bigint[]), unnest(@bytes_in::bigint[]), unnest(@bytes_out::bigint[])
on conflict (team_id, minute, installation_id, tool_name, user_id, latency_bucket) do update
set calls     = usage_minutes.calls + excluded.calls,
    errors    = usage_minutes.errors + excluded.errors,
    bytes_in  = usage_minutes.bytes_in + excluded.bytes_in,
    bytes_out = usage_minutes.bytes_out + excluded.bytes_out;

-- name: MarkUsageHoursDirty :exec
-- MarkUsageHoursDirty marks hours for the rollup. Updating an existing mark locks it until the caller
-- commits, so a rollup cannot take the mark and miss the caller's minutes.
insert into usage_dirty_hours (team_id, hour)
select unnest(@team_ids::uuid[]), unnest(@hours::timestamptz[])
on conflict (team_id, hour) do update set hour = excluded.hour;

-- name: TakeDirtyUsageHours :many
-- TakeDirtyUsageHours removes and returns up to max_hours marks, skipping those an ingest holds.
delete from usage_dirty_hours d
where (d.team_id, d.hour) in (
    select k.team_id, k.hour from usage_dirty_hours k order by k.hour limit @max_hours for update skip locked)
returning d.team_id, d.hour;

-- name: DeleteUsageHours :exec
delete from usage_hours h
using (select unnest(@team_ids::uuid[]) as team_id, unnest(@hours::timestamptz[]) as hour) t
where h.team_id = t.team_id and h.hour = t.hour;

-- name: DeleteUsageToolHours :exec
delete from usage_tool_hours h
using (select unnest(@team_ids::uuid[]) as team_id, unnest(@hours::timestamptz[]) as hour) t
where h.team_id = t.team_id and h.hour = t.hour;

-- name: DeleteUsageUserHours :exec
delete from usage_user_hours h
using (select unnest(@team_ids::uuid[]) as team_id, unnest(@hours::timestamptz[]) as hour) t
where h.team_id = t.team_id and h.hour = t.hour;

-- name: DeleteUsageTeamHours :exec
delete from usage_team_hours h
using (select unnest(@team_ids::uuid[]) as team_id, unnest(@hours::timestamptz[]) as hour) t
where h.team_id = t.team_id and h.hour = t.hour;

-- name: DeleteUsageToolDays :exec
delete from usage_tool_days d
using (select unnest(@team_ids::uuid[]) as team_id, unnest(@days::timestamptz[]) as day) t
where d.team_id = t.team_id and d.day = t.day;

-- name: DeleteUsageUserDays :exec
delete from usage_user_days d
using (select unnest(@team_ids::uuid[]) as team_id, unnest(@days::timestamptz[]) as day) t
where d.team_id = t.team_id and d.day = t.day;

-- name: RollUpUsageToolHours :exec
-- RollUpUsageToolHours writes the per-tool rollups of the given hours from their hourly rollups.
insert into usage_tool_hours (team_id, hour, installation_id, tool_name, latency_bucket, calls, errors, bytes_in,
                              bytes_out)
select h.team_id, h.hour, h.installation_id, h.tool_name, h.latency_bucket, sum(h.calls)::bigint,
       sum(h.errors)::bigint, sum(h.bytes_in)::bigint, sum(h.bytes_out)::bigint
from (select unnest(@team_ids::uuid[]) as team_id, unnest(@hours::timestamptz[]) as hour) t
join usage_hours h on h.team_id = t.team_id and h.hour = t.hour
group by h.team_id, h.hour, h.installation_id, h.tool_name, h.latency_bucket;

-- name: RollUpUsageUserHours :exec
-- RollUpUsageUserHours writes the per-user rollups of the given hours from their hourly rollups.
insert into usage_user_hours (team_id, hour, user_id, latency_bucket, calls, errors, bytes_in, bytes_out)
select h.team_id, h.hour, h.user_id, h.latency_bucket, sum(h.calls)::bigint, sum(h.errors)::bigint,
       sum(h.bytes_in)::bigint, sum(h.bytes_out)::bigint
from (select unnest(@team_ids::uuid[]) as team_id, unnest(@hours::timestamptz[]) as hour) t
join usage_hours h on h.team_id = t.team_id and h.hour = t.hour
group by h.team_id, h.hour, h.user_id, h.latency_bucket;

-- name: RollUpUsageHours :execrows
-- RollUpUsageHours writes the hourly rollups of the given hours from their minutes.
insert into usage_hours (team_id, hour, installation_id, tool_name, user_id, latency_bucket, calls, errors,
                         bytes_in, bytes_out)
select m.team_id, t.hour, m.installation_id, m.tool_name, m.user_id, m.latency_bucket, sum(m.calls)::bigint,
       sum(m.errors)::bigint, sum(m.bytes_in)::bigint, sum(m.bytes_out)::bigint
from (select unnest(@team_ids::uuid[]) as team_id, unnest(@hours::timestamptz[]) as hour) t
join usage_minutes m on m.team_id = t.team_id and m.minute >= t.hour and m.minute < t.hour + interval '1 hour'
group by m.team_id, t.hour, m.installation_id, m.tool_name, m.user_id, m.latency_bucket;

-- name: RollUpUsageTeamHours :exec
-- RollUpUsageTeamHours writes the team rollups of the given hours from their per-tool rollups.
insert into usage_team_hours (team_id, hour, latency_bucket, calls, errors, bytes_in, bytes_out)
select h.team_id, h.hour, h.latency_bucket, sum(h.calls)::bigint, sum(h.errors)::bigint, sum(h.bytes_in)::bigint,
       sum(h.bytes_out)::bigint
from (select unnest(@team_ids::uuid[]) as team_id, unnest(@hours::timestamptz[]) as hour) t
join usage_tool_hours h on h.team_id = t.team_id and h.hour = t.hour
group by h.team_id, h.hour, h.latency_bucket;

-- name: RollUpUsageToolDays :exec
-- RollUpUsageToolDays writes the per-tool rollups of the given UTC days from their hours.
insert into usage_tool_days (team_id, day, installation_id, tool_name, latency_bucket, calls, errors, bytes_in,
                             bytes_out)
select h.team_id, t.day, h.installation_id, h.tool_name, h.latency_bucket, sum(h.calls)::bigint,
       sum(h.errors)::bigint, sum(h.bytes_in)::bigint, sum(h.bytes_out)::bigint
from (select unnest(@team_ids::uuid[]) as team_id, unnest(@days::timestamptz[]) as day) t
join usage_tool_hours h on h.team_id = t.team_id and h.hour >= t.day and h.hour < t.day + interval '1 day'
group by h.team_id, t.day, h.installation_id, h.tool_name, h.latency_bucket;

-- name: RollUpUsageUserDays :exec
-- RollUpUsageUserDays writes the per-user rollups of the given UTC days from their hours.
insert into usage_user_days (team_id, day, user_id, latency_bucket, calls, errors, bytes_in, bytes_out)
select h.team_id, t.day, h.user_id, h.latency_bucket, sum(h.calls)::bigint, sum(h.errors)::bigint,
       sum(h.bytes_in)::bigint, sum(h.bytes_out)::bigint
from (select unnest(@team_ids::uuid[]) as team_id, unnest(@days::timestamptz[]) as day) t
join usage_user_hours h on h.team_id = t.team_id and h.hour >= t.day and h.hour < t.day + interval '1 day'
group by h.team_id, t.day, h.user_id, h.latency_bucket;

-- name: PruneUsageMinutes :execrows
delete from usage_minutes where minute < @before;

-- name: PruneUsageHours :execrows
delete from usage_hours where hour < @before;

-- name: PruneUsageToolHours :execrows
delete from usage_tool_hours where hour < @before;

-- name: PruneUsageUserHours :execrows
delete from usage_user_hours where hour < @before;

-- name: PruneUsageTeamHours :execrows
delete from usage_team_hours where hour < @before;

-- name: PruneUsageToolDays :execrows
delete from usage_tool_days where day < @before;

-- name: PruneUsageUserDays :execrows
delete from usage_user_days where day < @before;

-- name: UsageSeriesMinutes :many
-- UsageSeriesMinutes sums a team's per-minute rollups into steps of step_seconds from origin, per latency
-- bucket. A zero filter id or an empty tool name matches everything.
select ((extract(epoch from m.minute)::bigint - @origin::bigint) / @step_seconds::bigint)::int as step,
       m.latency_bucket, sum(m.calls)::bigint as calls, sum(m.errors)::bigint as errors,
       sum(m.bytes_in)::bigint as bytes_in, sum(m.bytes_out)::bigint as bytes_out
from usage_minutes m
where m.team_id = @team_id and m.minute >= @start and m.minute < @end_before
  and (@installation_id::uuid = '00000000-0000-0000-0000-000000000000' or m.installation_id = @installation_id)
  and (@tool_name::text = '' or m.tool_name = @tool_name)
  and (@user_id::uuid = '00000000-0000-0000-0000-000000000000' or m.user_id = @user_id)
group by 1, 2;

-- name: UsageSeriesHours :many
-- UsageSeriesHours is UsageSeriesMinutes over the hourly rollups.
select ((extract(epoch from h.hour)::bigint - @origin::bigint) / @step_seconds::bigint)::int as step,
       h.latency_bucket, sum(h.calls)::bigint as calls, sum(h.errors)::bigint as errors,
       sum(h.bytes_in)::bigint as bytes_in, sum(h.bytes_out)::bigint as bytes_out
from usage_hours h
where h.team_id = @team_id and h.hour >= @start and h.hour < @end_before
  and (@installation_id::uuid = '00000000-0000-0000-0000-000000000000' or h.installation_id = @installation_id)
  and (@tool_name::text = '' or h.tool_name = @tool_name)
  and (@user_id::uuid = '00000000-0000-0000-0000-000000000000' or h.user_id = @user_id)
group by 1, 2;

-- name: UsageSeriesToolHours :many
-- UsageSeriesToolHours is UsageSeriesHours over the per-tool rollups: for every user.
select ((extract(epoch from h.hour)::bigint - @origin::bigint) / @step_seconds::bigint)::int as step,
       h.latency_bucket, sum(h.calls)::bigint as calls, sum(h.errors)::bigint as errors,
       sum(h.bytes_in)::bigint as bytes_in, sum(h.bytes_out)::bigint as bytes_out
from usage_tool_hours h
where h.team_id = @team_id and h.hour >= @start and h.hour < @end_before
  and (@installation_id::uuid = '00000000-0000-0000-0000-000000000000' or h.installation_id = @installation_id)
  and (@tool_name::text = '' or h.tool_name = @tool_name)
group by 1, 2;

-- name: UsageSeriesUserHours :many
-- UsageSeriesUserHours is UsageSeriesHours over the per-user rollups: for one user and every tool.
select ((extract(epoch from h.hour)::bigint - @origin::bigint) / @step_seconds::bigint)::int as step,
       h.latency_bucket, sum(h.calls)::bigint as calls, sum(h.errors)::bigint as errors,
       sum(h.bytes_in)::bigint as bytes_in, sum(h.bytes_out)::bigint as bytes_out
from usage_user_hours h
where h.team_id = @team_id and h.user_id = @user_id and h.hour >= @start and h.hour < @end_before
group by 1, 2;

-- name: UsageSeriesTeamHours :many
-- UsageSeriesTeamHours is UsageSeriesHours over the team rollups: every user and tool.
select ((extract(epoch from h.hour)::bigint - @origin::bigint) / @step_seconds::bigint)::int as step,
       h.latency_bucket, sum(h.calls)::bigint as calls, sum(h.errors)::bigint as errors,
       sum(h.bytes_in)::bigint as bytes_in, sum(h.bytes_out)::bigint as bytes_out
from usage_team_hours h
where h.team_id = @team_id and h.hour >= @start and h.hour < @end_before
group by 1, 2;

-- name: UsageSeriesToolDays :many
-- UsageSeriesToolDays is UsageSeriesToolHours over the per-tool days.
select ((extract(epoch from d.day)::bigint - @origin::bigint) / @step_seconds::bigint)::int as step,
       d.latency_bucket, sum(d.calls)::bigint as calls, sum(d.errors)::bigint as errors,
       sum(d.bytes_in)::bigint as bytes_in, sum(d.bytes_out)::bigint as bytes_out
from usage_tool_days d
where d.team_id = @team_id and d.day >= @start and d.day < @end_before
  and (@installation_id::uuid = '00000000-0000-0000-0000-000000000000' or d.installation_id = @installation_id)
  and (@tool_name::text = '' or d.tool_name = @tool_name)
group by 1, 2;

-- name: UsageSeriesUserDays :many
-- UsageSeriesUserDays is UsageSeriesUserHours over the per-user days.
select ((extract(epoch from d.day)::bigint - @origin::bigint) / @step_seconds::bigint)::int as step,
       d.latency_bucket, sum(d.calls)::bigint as calls, sum(d.errors)::bigint as errors,
       sum(d.bytes_in)::bigint as bytes_in, sum(d.bytes_out)::bigint as bytes_out
from usage_user_days d
where d.team_id = @team_id and d.user_id = @user_id and d.day >= @start and d.day < @end_before
group by 1, 2;

-- name: UsageByToolOfTeam :many
-- UsageByToolOfTeam is UsageByTool for every user: whole UTC days from the per-tool days, the whole hours
-- around them from the per-tool hours, and the minutes at either end from the per-minute rollups.
with rows as (
    select d.installation_id, d.tool_name, d.latency_bucket, d.calls, d.errors, d.bytes_in, d.bytes_out
    from usage_tool_days d
    where d.team_id = @team_id and d.day >= @days_start and d.day < @days_end
    union all
    select h.installation_id, h.tool_name, h.latency_bucket, h.calls, h.errors, h.bytes_in, h.bytes_out
    from usage_tool_hours h
    where h.team_id = @team_id and h.hour >= @hours_start and h.hour < @hours_end
      and (h.hour < @days_start or h.hour >= @days_end)
    union all
    select m.installation_id, m.tool_name, m.latency_bucket, m.calls, m.errors, m.bytes_in, m.bytes_out
    from usage_minutes m
    where m.team_id = @team_id and m.minute >= @start and m.minute < @end_before
      and (m.minute < @hours_start or m.minute >= @hours_end)
)
select r.installation_id, r.tool_name, r.latency_bucket, sum(r.calls)::bigint as calls,
       sum(r.errors)::bigint as errors, sum(r.bytes_in)::bigint as bytes_in, sum(r.bytes_out)::bigint as bytes_out
from rows r
where (@installation_id::uuid = '00000000-0000-0000-0000-000000000000' or r.installation_id = @installation_id)
group by 1, 2, 3;

-- name: UsageByUserOfTeam :many
-- UsageByUserOfTeam is UsageByUser for every tool, from the per-user days, hours and the minutes, as
-- UsageByToolOfTeam.
with rows as (
    select d.user_id, d.latency_bucket, d.calls, d.errors, d.bytes_in, d.bytes_out
    from usage_user_days d
    where d.team_id = @team_id and d.day >= @days_start and d.day < @days_end
    union all
    select h.user_id, h.latency_bucket, h.calls, h.errors, h.bytes_in, h.bytes_out
    from usage_user_hours h
    where h.team_id = @team_id and h.hour >= @hours_start and h.hour < @hours_end
      and (h.hour < @days_start or h.hour >= @days_end)
    union all
    select m.user_id, m.latency_bucket, m.calls, m.errors, m.bytes_in, m.bytes_out
    from usage_minutes m
    where m.team_id = @team_id and m.minute >= @start and m.minute < @end_before
      and (m.minute < @hours_start or m.minute >= @hours_end)
)
select r.user_id, r.latency_bucket, sum(r.calls)::bigint as calls, sum(r.errors)::bigint as errors,
       sum(r.bytes_in)::bigint as bytes_in, sum(r.bytes_out)::bigint as bytes_out
from rows r
where (@user_id::uuid = '00000000-0000-0000-0000-000000000000' or r.user_id = @user_id)
group by 1, 2;

-- name: UsageByTool :many
-- UsageByTool sums a team's usage per installation, tool and latency bucket: whole hours from the hourly
-- rollups, the partial hours at either end from the minutes.
with rows as (
    select h.installation_id, h.tool_name, h.user_id, h.latency_bucket, h.calls, h.errors, h.bytes_in, h.bytes_out
    from usage_hours h
    where h.team_id = @team_id and h.hour >= @hours_start and h.hour < @hours_end
    union all
    select m.installation_id, m.tool_name, m.user_id, m.latency_bucket, m.calls, m.errors, m.bytes_in, m.bytes_out
    from usage_minutes m
    where m.team_id = @team_id and m.minute >= @start and m.minute < @end_before
      and (m.minute < @hours_start or m.minute >= @hours_end)
)
select r.installation_id, r.tool_name, r.latency_bucket, sum(r.calls)::bigint as calls,
       sum(r.errors)::bigint as errors, sum(r.bytes_in)::bigint as bytes_in, sum(r.bytes_out)::bigint as bytes_out
from rows r
where (@installation_id::uuid = '00000000-0000-0000-0000-000000000000' or r.installation_id = @installation_id)
  and (@user_id::uuid = '00000000-0000-0000-0000-000000000000' or r.user_id = @user_id)
group by 1, 2, 3;

-- name: UsageByUser :many
-- UsageByUser is UsageByTool per user.
with rows as (
    select h.installation_id, h.tool_name, h.user_id, h.latency_bucket, h.calls, h.errors, h.bytes_in, h.bytes_out
    from usage_hours h
    where h.team_id = @team_id and h.hour >= @hours_start and h.hour < @hours_end
    union all
    select m.installation_id, m.tool_name, m.user_id, m.latency_bucket, m.calls, m.errors, m.bytes_in, m.bytes_out
    from usage_minutes m
    where m.team_id = @team_id and m.minute >= @start and m.minute < @end_before
      and (m.minute < @hours_start or m.minute >= @hours_end)
)
select r.user_id, r.latency_bucket, sum(r.calls)::bigint as calls, sum(r.errors)::bigint as errors,
       sum(r.bytes_in)::bigint as bytes_in, sum(r.bytes_out)::bigint as bytes_out
from rows r
where (@installation_id::uuid = '00000000-0000-0000-0000-000000000000' or r.installation_id = @installation_id)
  and (@tool_name::text = '' or r.tool_name = @tool_name)
  and (@user_id::uuid = '00000000-0000-0000-0000-000000000000' or r.user_id = @user_id)
group by 1, 2;
