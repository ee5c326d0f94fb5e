-- name: CountOtherPendingInvitations :one
-- CountOtherPendingInvitations counts a team's pending invitations to addresses other than @email, which a
-- renewal would replace.
select count(*) from team_invitations
where team_id = @team_id and expires_at > now() and lower(email) <> lower(@email);

-- name: IsMemberEmail :one
select exists (
    select 1 from team_memberships m join users u on u.id = m.user_id
    where m.team_id = @team_id and lower(u.email) = lower(@email)
)::boolean as member;

-- name: UpsertInvitation :one
-- UpsertInvitation invites an address, or renews its invitation: the role, the inviter and the expiry are
-- the new ones, and a declined invitation is offered again.
insert into team_invitations (team_id, email, role, invited_by, expires_at)
values (@team_id, @email, @role, sqlc.narg(invited_by), now() + make_interval(secs => @ttl_seconds::double precision))
on conflict (team_id, lower(email)) do update
set email = excluded.email, role = excluded.role, invited_by = excluded.invited_by, created_at = now(),
    expires_at = excluded.expires_at, declined_at = null
returning id;

-- name: GetTeamInvitation :one
select i.*, t.slug as team_slug, t.name as team_name, coalesce(u.email, '')::text as invited_by_email
from team_invitations i
join teams t on t.id = i.team_id
left join users u on u.id = i.invited_by
where i.team_id = @team_id and i.id = @id;

-- name: ListTeamInvitations :many
-- ListTeamInvitations pages backwards through a team's pending invitations, declined ones included.
select i.*, t.slug as team_slug, t.name as team_name, coalesce(u.email, '')::text as invited_by_email
from team_invitations i
join teams t on t.id = i.team_id
left join users u on u.id = i.invited_by
where i.team_id = @team_id and i.expires_at > now()
  and (sqlc.narg(before_created_at)::timestamptz is null
       or (i.created_at, i.id) < (sqlc.narg(before_created_at)::timestamptz, sqlc.narg(before_id)::uuid))
order by i.created_at desc, i.id desc
limit @max_rows;

-- name: DeleteTeamInvitation :one
delete from team_invitations where team_id = @team_id and id = @id
returning *;

-- name: ListInvitationsFor :many
-- ListInvitationsFor pages backwards through the pending invitations addressed to an email.
select i.*, t.slug as team_slug, t.name as team_name, coalesce(u.email, '')::text as invited_by_email
from team_invitations i
join teams t on t.id = i.team_id
left join users u on u.id = i.invited_by
where lower(i.email) = lower(@email) and i.expires_at > now() and i.declined_at is null
  and (sqlc.narg(before_created_at)::timestamptz is null
       or (i.created_at, i.id) < (sqlc.narg(before_created_at)::timestamptz, sqlc.narg(before_id)::uuid))
order by i.created_at desc, i.id desc
limit @max_rows;

-- name: TakeInvitationFor :one
-- TakeInvitationFor removes a pending invitation addressed to an email, for its acceptance.
delete from team_invitations
where id = @id and lower(email) = lower(@email) and expires_at > now() and declined_at is null
returning *;

-- name: DeclineInvitationFor :one
update team_invitations set declined_at = now()
where id = @id and lower(email) = lower(@email) and expires_at > now() and declined_at is null
returning *;

-- name: PruneExpiredInvitations :execrows
delete from team_invitations where expires_at < @before;

-- name: AddMembershipIfAbsent :exec
insert into team_memberships (team_id, user_id, role) values (@team_id, @user_id, @role)
on conflict (team_id, user_id) do nothing;
