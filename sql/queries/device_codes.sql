-- name: CreateDeviceCode :exec
insert into oauth_device_codes (device_code_hash, user_code_hash, client_id, scopes, resource, interval_seconds, expires_at)
values (@device_code_hash, @user_code_hash, @client_id, @scopes, @resource, @interval_seconds, @expires_at);

-- name: PruneDeviceCodes :execrows
delete from oauth_device_codes where expires_at < @before;

-- name: GetPendingDeviceCode :one
-- GetPendingDeviceCode finds a request the user may still approve or deny by its user code.
select * from oauth_device_codes where user_code_hash = @user_code_hash and status = 'pending' and expires_at > @now;

-- name: DecideDeviceCode :execrows
-- Only a pending, live request is decided, so a code is approved or denied once.
update oauth_device_codes set status = @status, user_id = @user_id
where user_code_hash = @user_code_hash and status = 'pending' and expires_at > @now;

-- name: PollDeviceCode :one
-- PollDeviceCode notes a poll of the request and returns it with the time of the poll before.
with before as (
    select d.device_code_hash, d.last_polled_at from oauth_device_codes d
    where d.device_code_hash = @device_code_hash for update
)
update oauth_device_codes o set last_polled_at = now()
from before
where o.device_code_hash = before.device_code_hash
returning o.*, before.last_polled_at as previous_poll_at;

-- name: SlowDeviceCode :exec
-- SlowDeviceCode adds five seconds to the interval of a client that polled too fast (RFC 8628, section 3.5).
update oauth_device_codes set interval_seconds = interval_seconds + 5 where device_code_hash = @device_code_hash;

-- name: UseDeviceCode :execrows
-- An approved request buys tokens once.
update oauth_device_codes set status = 'used' where device_code_hash = @device_code_hash and status = 'approved';
