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
