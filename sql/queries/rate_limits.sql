-- name: TakeRateToken :one
-- TakeRateToken takes a token from the bucket under @key, which refills one token every @interval_seconds
-- and holds @window_seconds / @interval_seconds tokens. A waiting concurrent take sees the row as the other
-- left it, so replicas together never allow more than one replica would. retry_after_seconds says when a
-- refused take would next succeed.
with taken as (
    insert into rate_limits as r (key, tat)
    values (@key, statement_timestamp() + make_interval(secs => @interval_seconds::float8))
    on conflict (key) do update
    set tat = greatest(r.tat, statement_timestamp()) + make_interval(secs => @interval_seconds::float8)
    where greatest(r.tat, statement_timestamp()) + make_interval(secs => @interval_seconds::float8)
          <= statement_timestamp() + make_interval(secs => @window_seconds::float8)
    returning r.tat
)
select exists (select 1 from taken)::boolean as allowed,
       coalesce(extract(epoch from (select r.tat from rate_limits r where r.key = @key)
                                   + make_interval(secs => @interval_seconds::float8)
                                   - make_interval(secs => @window_seconds::float8)
                                   - statement_timestamp()), 0)::float8 as retry_after_seconds;

-- name: PruneRateLimits :execrows
-- PruneRateLimits drops full buckets, which answer as an absent row would.
delete from rate_limits where tat < now();
