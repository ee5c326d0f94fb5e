import { useMutation, useQuery } from "@connectrpc/connect-query";
import { useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import { Link, useLocation } from "wouter";
import { TeamRole } from "../gen/orrery/api/v1/account_pb";
import { TeamService } from "../gen/orrery/api/v1/team_pb";
import { useSession } from "../session";
import { Busy, Empty, ErrorNote, Field, Loading, Section, When } from "../ui";

export const roleName = (r: TeamRole) => (r === TeamRole.ADMIN ? "admin" : r === TeamRole.USER ? "user" : "—");

// useTeamRole is the signed-in user's role in a team; global admins who are not members get none.
export function useTeamRole(teamId: string): TeamRole | undefined {
  return useSession().memberships.find((m) => m.teamId === teamId)?.role;
}

// TeamHeader titles every page of a team and links its parts.
export function TeamHeader({ teamId, page }: { teamId: string; page: string }) {
  const team = useQuery(TeamService.method.getTeam, { teamId });
  const tabs: [string, string][] = [
    ["", "Members"],
    ["/installations", "Installations"],
    ["/catalog", "Catalog"],
    ["/usage", "Usage"],
    ["/connect", "Connect a client"],
  ];
  return (
    <>
      <p className="crumbs"><Link href="/teams">Teams</Link> / {team.data?.team?.name ?? "…"}</p>
      <h1>{team.data?.team?.name ?? "Team"} <span className="muted">{page}</span></h1>
      <ErrorNote error={team.error} title="This team cannot be shown" />
      <nav className="tabs" aria-label="Team">
        {tabs.map(([path, label]) => (
          <Link key={path} href={`/teams/${teamId}${path}`} aria-current={label === page ? "page" : undefined}>
            {label}
          </Link>
        ))}
      </nav>
    </>
  );
}

export function TeamsPage() {
  const list = useQuery(TeamService.method.listTeams, {});
  const client = useQueryClient();
  const [, navigate] = useLocation();
  const [slug, setSlug] = useState("");
  const [name, setName] = useState("");
  const create = useMutation(TeamService.method.createTeam, {
    onSuccess: async (res) => {
      await client.invalidateQueries();
      navigate(`/teams/${res.team!.id}`);
    },
  });
  return (
    <>
      <h1>Your teams</h1>
      {list.isPending ? (
        <Loading what="teams" />
      ) : list.error ? (
        <ErrorNote error={list.error} />
      ) : list.data.teams.length === 0 ? (
        <Empty>You are in no team yet. Create one below, or accept an invitation.</Empty>
      ) : (
        <ul className="tiles">
          {list.data.teams.map((t) => (
            <li key={t.id}>
              <Link href={`/teams/${t.id}`}>
                <strong>{t.name}</strong> <span className="muted">{t.slug}{t.personal ? " · personal" : ""}</span>
              </Link>
            </li>
          ))}
        </ul>
      )}
      <Section title="Create a team">
        <form
          className="inline"
          onSubmit={(e) => {
            e.preventDefault();
            create.mutate({ slug, name });
          }}
        >
          <Field label="Name">
            <input required maxLength={200} value={name} onChange={(e) => setName(e.target.value)} />
          </Field>
          <Field label="Slug" hint="Lowercase letters, digits and dashes; part of the team's MCP endpoint URL.">
            <input required pattern="[a-z0-9][a-z0-9\-]*" maxLength={63} value={slug}
              onChange={(e) => setSlug(e.target.value)} />
          </Field>
          <Busy pending={create.isPending}>Create team</Busy>
        </form>
        <ErrorNote error={create.error} />
      </Section>
    </>
  );
}

export function TeamPage({ teamId }: { teamId: string }) {
  const role = useTeamRole(teamId);
  const me = useSession();
  const client = useQueryClient();
  const refresh = () => void client.invalidateQueries();
  const team = useQuery(TeamService.method.getTeam, { teamId });
  const members = useQuery(TeamService.method.listMembers, { teamId });
  const setRole = useMutation(TeamService.method.setMemberRole, { onSuccess: refresh });
  const remove = useMutation(TeamService.method.removeMember, { onSuccess: refresh });
  const transfer = useMutation(TeamService.method.transferOwnership, { onSuccess: refresh });
  const isAdmin = role === TeamRole.ADMIN;
  const ownerId = team.data?.team?.ownerId;
  return (
    <>
      <TeamHeader teamId={teamId} page="Members" />
      <Section title="Members">
        <ErrorNote error={setRole.error ?? remove.error ?? transfer.error} />
        {members.isPending ? (
          <Loading what="members" />
        ) : members.error ? (
          <ErrorNote error={members.error} />
        ) : (
          <table>
            <thead>
              <tr><th>Member</th><th>Role</th><th>Joined</th>{isAdmin && <th>Actions</th>}</tr>
            </thead>
            <tbody>
              {members.data.members.map((m) => (
                <tr key={m.user?.id}>
                  <td>
                    {m.user?.name || m.user?.email} <span className="muted">{m.user?.email}</span>
                    {m.owner && <span className="badge">owner</span>}
                  </td>
                  <td>
                    {isAdmin && !m.owner ? (
                      <select aria-label={`Role of ${m.user?.email}`} value={m.role}
                        onChange={(e) => setRole.mutate({ teamId, userId: m.user!.id, role: Number(e.target.value) })}>
                        <option value={TeamRole.ADMIN}>admin</option>
                        <option value={TeamRole.USER}>user</option>
                      </select>
                    ) : (
                      roleName(m.role)
                    )}
                  </td>
                  <td><When at={m.joinedAt} /></td>
                  {isAdmin && (
                    <td className="actions">
                      {!m.owner && (
                        <button className="danger" onClick={() => {
                          if (confirm(`Remove ${m.user?.email} from the team?`)) remove.mutate({ teamId, userId: m.user!.id });
                        }}>Remove</button>
                      )}
                      {ownerId === me.user?.id && !m.owner && (
                        <button onClick={() => {
                          if (confirm(`Make ${m.user?.email} the owner of this team?`)) transfer.mutate({ teamId, userId: m.user!.id });
                        }}>Make owner</button>
                      )}
                    </td>
                  )}
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </Section>
      {isAdmin && <TeamInvitations teamId={teamId} />}
    </>
  );
}

function TeamInvitations({ teamId }: { teamId: string }) {
  const client = useQueryClient();
  const list = useQuery(TeamService.method.listInvitations, { teamId });
  const [email, setEmail] = useState("");
  const [role, setRole] = useState(TeamRole.USER);
  const invite = useMutation(TeamService.method.inviteMember, {
    onSuccess: () => {
      setEmail("");
      void client.invalidateQueries();
    },
  });
  const revoke = useMutation(TeamService.method.revokeInvitation, { onSuccess: () => void client.invalidateQueries() });
  return (
    <Section title="Invitations">
      <form
        className="inline"
        onSubmit={(e) => {
          e.preventDefault();
          invite.mutate({ teamId, email, role });
        }}
      >
        <Field label="Email to invite">
          <input type="email" required maxLength={254} value={email} onChange={(e) => setEmail(e.target.value)} />
        </Field>
        <Field label="Role">
          <select value={role} onChange={(e) => setRole(Number(e.target.value))}>
            <option value={TeamRole.USER}>user</option>
            <option value={TeamRole.ADMIN}>admin</option>
          </select>
        </Field>
        <Busy pending={invite.isPending}>Invite</Busy>
      </form>
      <ErrorNote error={invite.error ?? revoke.error} />
      {invite.isSuccess && (
        <p role="status" className="ok">Invited. They see the invitation under Invitations once signed in with that address.</p>
      )}
      {list.isPending ? (
        <Loading what="invitations" />
      ) : list.error ? (
        <ErrorNote error={list.error} />
      ) : list.data.invitations.length === 0 ? (
        <Empty>No pending invitations.</Empty>
      ) : (
        <table>
          <thead><tr><th>Email</th><th>Role</th><th>Expires</th><th /></tr></thead>
          <tbody>
            {list.data.invitations.map((i) => (
              <tr key={i.id}>
                <td>{i.email}</td>
                <td>{roleName(i.role)}</td>
                <td><When at={i.expiresAt} /></td>
                <td><button className="danger" onClick={() => revoke.mutate({ teamId, invitationId: i.id })}>Revoke</button></td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </Section>
  );
}

export function InvitationsPage() {
  const client = useQueryClient();
  const [, navigate] = useLocation();
  const list = useQuery(TeamService.method.listMyInvitations, {});
  const accept = useMutation(TeamService.method.acceptInvitation, {
    onSuccess: async (res) => {
      await client.invalidateQueries();
      navigate(`/teams/${res.membership!.teamId}`);
    },
  });
  const decline = useMutation(TeamService.method.declineInvitation, { onSuccess: () => void client.invalidateQueries() });
  return (
    <>
      <h1>Invitations to you</h1>
      <ErrorNote error={accept.error ?? decline.error} />
      {list.isPending ? (
        <Loading what="invitations" />
      ) : list.error ? (
        <ErrorNote error={list.error} />
      ) : list.data.invitations.length === 0 ? (
        <Empty>No invitations. A team admin invites you by your email address.</Empty>
      ) : (
        <ul className="tiles">
          {list.data.invitations.map((i) => (
            <li key={i.id} className="card">
              <p>
                Join <strong>{i.teamName}</strong> <span className="muted">({i.teamSlug})</span> as {roleName(i.role)}.
                Expires <When at={i.expiresAt} />.
              </p>
              <button onClick={() => accept.mutate({ invitationId: i.id })} disabled={accept.isPending}>Accept</button>{" "}
              <button className="secondary" onClick={() => decline.mutate({ invitationId: i.id })} disabled={decline.isPending}>Decline</button>
            </li>
          ))}
        </ul>
      )}
    </>
  );
}
