-- name: ExpireAllCommands :execrows
-- ExpireAllCommands retires expired commands of every satellite, including ones that stopped polling, so
-- administrators see their true state.
update satellite_commands
set state = 'expired', completed_at = now()
where state in ('pending', 'dispatched') and expires_at <= now();

-- name: FailAllExhaustedCommands :execrows
update satellite_commands
set state = 'failed', completed_at = now(), error = 'no result after ' || attempts || ' deliveries'
where state = 'dispatched' and lease_expires_at <= now() and attempts >= max_attempts;

-- name: PruneHeartbeats :execrows
delete from satellite_heartbeats where received_at < @before;

-- name: PruneReceivedEvents :execrows
delete from received_events where received_at < @before;

-- name: PruneFinishedCommands :execrows
delete from satellite_commands
where state in ('completed', 'failed', 'expired') and completed_at < @before;

-- name: PruneInstanceEvents :execrows
delete from instance_events where occurred_at < @before;

-- name: TrimAllServerLogs :execrows
-- TrimAllServerLogs keeps the newest @keep server-log lines of every installation.
delete from server_logs l
using (select r.id from (
           select k.id, row_number() over (partition by k.installation_id order by k.id desc) as n from server_logs k
       ) r where r.n > @keep::integer) old
where l.id = old.id;

-- name: TrimAllRequestLogs :execrows
delete from request_logs l
using (select r.id from (
           select k.id, row_number() over (partition by k.installation_id order by k.id desc) as n from request_logs k
       ) r where r.n > @keep::integer) old
where l.id = old.id;

-- name: AggregateTemplateHealth :execrows
-- AggregateTemplateHealth summarises the status of every template's instances: healthy when none is
-- failing, failing when none is online but some fail, degraded in between, unused without instances.
insert into catalog_entry_health (catalog_entry_id, instances, online, failing, status, aggregated_at)
select c.id, count(n.id)::integer,
       (count(n.id) filter (where n.status in ('online', 'dormant')))::integer,
       (count(n.id) filter (where n.status in ('error', 'crashed', 'permanently_failed', 'requires_reauth')))::integer,
       case
           when count(n.id) = 0 then 'unused'
           when count(n.id) filter (where n.status in ('error', 'crashed', 'permanently_failed', 'requires_reauth')) = 0 then 'healthy'
           when count(n.id) filter (where n.status in ('online', 'dormant')) = 0 then 'failing'
           else 'degraded'
       end,
       now()
from catalog_entries c
left join installations i on i.catalog_entry_id = c.id
left join instances n on n.installation_id = i.id
group by c.id
on conflict (catalog_entry_id) do update
set instances = excluded.instances, online = excluded.online, failing = excluded.failing, status = excluded.status,
    aggregated_at = excluded.aggregated_at;

-- name: GetTemplateHealth :one
select * from catalog_entry_health where catalog_entry_id = @catalog_entry_id;

-- name: ClaimCredentialChecks :many
-- ClaimCredentialChecks picks the remote installations whose credentials were not sent for validation
-- within @every_seconds and marks them checked now, so each is covered once per period.
update installations i
set credentials_checked_at = now()
from catalog_entries c
where c.id = i.catalog_entry_id and c.transport in ('http', 'sse')
  and (i.credentials_checked_at is null or i.credentials_checked_at <= now() - make_interval(secs => @every_seconds::double precision))
returning i.id, i.team_id;

-- name: MarkSatellitesOffline :many
-- MarkSatellitesOffline notes, once per outage, the live satellites silent for longer than @after_seconds.
update satellites
set offline_since = now(), offline_alerted = true
where revoked_at is null and activated_at is not null and offline_since is null
  and last_heartbeat_at < now() - make_interval(secs => @after_seconds::double precision)
returning id, name, team_id;

-- name: RecordCredentialChecks :many
-- RecordCredentialChecks notes when a satellite validated the credentials of the named instances and
-- returns those it stamped. Only the command's team and installation are touched, whatever the
-- satellite claims; a late or repeated report never moves the time back.
update instances
set last_health_check_at = greatest(last_health_check_at, @checked_at::timestamptz)
where team_id = @team_id and installation_id = @installation_id and id = any(@ids::text[])
returning id;
