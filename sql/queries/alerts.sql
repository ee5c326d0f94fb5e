-- name: CreateWebhook :one
-- CreateWebhook adds a webhook unless its scope (a team, or global when team_id is null) already has
-- @max_per_scope of them; then it returns no row.
insert into webhooks (team_id, name, url, event_kinds, secret_sealed, usage_calls_per_hour, policy_denials_per_hour, created_by)
select sqlc.narg(team_id), @name, @url, @event_kinds, @secret_sealed, @usage_calls_per_hour, @policy_denials_per_hour, sqlc.narg(created_by)
where (select count(*) from webhooks where team_id is not distinct from sqlc.narg(team_id)) < @max_per_scope::bigint
returning *;

-- name: ListWebhooks :many
select * from webhooks where team_id is not distinct from sqlc.narg(team_id) order by created_at, id;

-- name: GetWebhook :one
select * from webhooks where id = @id and team_id is not distinct from sqlc.narg(team_id);

-- name: DeleteWebhook :execrows
delete from webhooks where id = @id and team_id is not distinct from sqlc.narg(team_id);

-- name: InsertAlert :one
-- InsertAlert records an alert once per dedupe key; a repeat returns no row.
insert into alerts (id, team_id, kind, dedupe_key, body)
values (@id, sqlc.narg(team_id), @kind, @dedupe_key, @body)
on conflict (dedupe_key) do nothing
returning id;

-- name: InsertDeliveriesForAlert :many
-- InsertDeliveriesForAlert queues the alert for every webhook that hears it: the global ones and those of
-- the alert's team, subscribed to its kind.
insert into webhook_deliveries (webhook_id, team_id, alert_id)
select w.id, w.team_id, @alert_id
from webhooks w
where @kind::text = any(w.event_kinds)
  and (w.team_id is null or w.team_id = sqlc.narg(team_id))
on conflict do nothing
returning id;

-- name: InsertDelivery :one
-- InsertDelivery queues the alert for one webhook, if that webhook hears the alert's team.
insert into webhook_deliveries (webhook_id, team_id, alert_id)
select w.id, w.team_id, @alert_id
from webhooks w
where w.id = @webhook_id and (w.team_id is null or w.team_id = sqlc.narg(alert_team_id))
on conflict do nothing
returning id;

-- name: GetDeliveryToSend :one
-- GetDeliveryToSend returns what a delivery attempt needs; no row once the webhook is gone.
select d.id, d.state, d.attempts, w.id as webhook_id, w.url, w.secret_sealed, a.id as alert_id, a.kind, a.body
from webhook_deliveries d
join webhooks w on w.id = d.webhook_id
join alerts a on a.id = d.alert_id
where d.id = @id;

-- name: RecordDeliveryAttempt :exec
-- RecordDeliveryAttempt adds an attempt and moves the delivery on: delivered, failed after the last
-- attempt, or still pending.
with attempt as (
    insert into webhook_attempts (delivery_id, attempt, status_code, latency_ms, error)
    values (@delivery_id, @attempt, @status_code, @latency_ms, @error)
    on conflict (delivery_id, attempt) do update
    set status_code = excluded.status_code, latency_ms = excluded.latency_ms, error = excluded.error,
        attempted_at = now()
)
update webhook_deliveries
set attempts    = greatest(attempts, @attempt),
    state       = @state,
    finished_at = case when @state::text = 'pending' then null else now() end
where id = @delivery_id;

-- name: ListDeliveries :many
-- ListDeliveries pages a webhook's deliveries, newest first, within the caller's scope.
select d.id, d.webhook_id, d.state, d.attempts, d.created_at, d.finished_at, a.id as alert_id, a.kind
from webhook_deliveries d
join alerts a on a.id = d.alert_id
where d.webhook_id = @webhook_id and d.team_id is not distinct from sqlc.narg(team_id)
  and (sqlc.narg(before_created_at)::timestamptz is null
       or (d.created_at, d.id) < (sqlc.narg(before_created_at)::timestamptz, sqlc.narg(before_id)::uuid))
order by d.created_at desc, d.id desc
limit @max_rows;

-- name: ListDeliveryAttempts :many
select * from webhook_attempts where delivery_id = any(@delivery_ids::uuid[]) order by delivery_id, attempt;

-- name: MarkSatellitesBack :many
-- MarkSatellitesBack notes, once per outage, the satellites alerted offline that have sent a heartbeat since.
update satellites
set offline_alerted = false
where offline_alerted and offline_since is null and revoked_at is null
returning id, name, team_id;

-- name: AddPolicyDenials :exec
insert into policy_denial_minutes (team_id, minute, denials)
values (@team_id, date_trunc('minute', @at::timestamptz), @denials)
on conflict (team_id, minute) do update set denials = policy_denial_minutes.denials + excluded.denials;

-- name: UsageOverThreshold :many
-- UsageOverThreshold finds, per webhook watching usage, the teams it hears whose calls since @since reach
-- its threshold.
select w.id as webhook_id, u.team_id, sum(u.calls)::bigint as calls, w.usage_calls_per_hour as threshold
from webhooks w
join usage_minutes u on w.team_id is null or u.team_id = w.team_id
where w.usage_calls_per_hour > 0 and 'usage.threshold' = any(w.event_kinds) and u.minute >= @since
group by w.id, u.team_id
having sum(u.calls) >= w.usage_calls_per_hour;

-- name: DenialsOverThreshold :many
-- DenialsOverThreshold finds, per webhook watching policy denials, the teams it hears whose denials since
-- @since reach its threshold.
select w.id as webhook_id, p.team_id, sum(p.denials)::bigint as denials, w.policy_denials_per_hour as threshold
from webhooks w
join policy_denial_minutes p on w.team_id is null or p.team_id = w.team_id
where w.policy_denials_per_hour > 0 and 'policy.denials' = any(w.event_kinds) and p.minute >= @since
group by w.id, p.team_id
having sum(p.denials) >= w.policy_denials_per_hour;

-- name: PruneAlerts :execrows
delete from alerts where occurred_at < @before;

-- name: PrunePolicyDenials :execrows
delete from policy_denial_minutes where minute < @before;

-- name: AccessReview :many
-- AccessReview lists, for every member of the team and every installation of the team, the member's role,
-- the OAuth scopes they consented to for the team (a client-credentials client's own scopes for its
-- service user), and when they last called a tool of the installation: from the per-minute rollups where
-- they reach, the hourly ones before.
with members as (
    select m.user_id, m.role, u.email, u.name
    from team_memberships m join users u on u.id = m.user_id
    where m.team_id = @team_id
), scopes as (
    select s.user_id, array_agg(distinct s.scope order by s.scope)::text[] as scopes
    from (
        select c.user_id, unnest(c.scopes) as scope from oauth_consents c where c.team_id = @team_id
        union all
        select o.service_user_id, unnest(o.scopes) from oauth_clients o
        where o.team_id = @team_id and o.revoked_at is null
    ) s
    group by s.user_id
), used as (
    select t.user_id, t.installation_id, max(t.last_used) as last_used, sum(t.calls)::bigint as calls
    from (
        select user_id, installation_id, max(minute) as last_used, 0::bigint as calls
        from usage_minutes where team_id = @team_id group by user_id, installation_id
        union all
        select user_id, installation_id, max(hour), coalesce(sum(calls) filter (where hour >= @calls_since), 0)::bigint
        from usage_hours where team_id = @team_id group by user_id, installation_id
    ) t
    group by t.user_id, t.installation_id
)
select m.user_id, m.email, m.name as user_name, m.role, i.id as installation_id, i.name as installation_name,
       coalesce(s.scopes, '{}')::text[] as scopes, coalesce(u.last_used, 'epoch')::timestamptz as last_used,
       coalesce(u.calls, 0)::bigint as calls
from members m
cross join installations i
left join scopes s on s.user_id = m.user_id
left join used u on u.user_id = m.user_id and u.installation_id = i.id
where i.team_id = @team_id
order by m.email, i.name, i.id;

-- name: StrandedDeliveries :many
-- StrandedDeliveries lists deliveries never attempted though queued before @before: their jobs were not
-- queued (the replica stopped between the commit and queuing them) or are far behind.
select id from webhook_deliveries
where state = 'pending' and attempts = 0 and created_at < @before
order by created_at
limit 500;
