import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { useMutation, useQuery } from "@connectrpc/connect-query";
import { useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import { Link, useLocation, useSearch } from "wouter";
import { AdminService, TokenScope } from "../gen/orrery/admin/v1/admin_pb";
import { SatelliteStatus, SatelliteType } from "../gen/orrery/satellite/v1/satellite_pb";
import { GlobalRole, UserService } from "../gen/orrery/api/v1/account_pb";
import { AuditService } from "../gen/orrery/api/v1/audit_pb";
import { useIsGlobalAdmin } from "../session";
import { Busy, CopyBox, Empty, ErrorNote, Field, Loading, Section, When } from "../ui";

const tabs: [string, string][] = [["satellites", "Satellites"], ["tokens", "Registration tokens"], ["users", "Users"], ["audit", "Audit log"]];

export function AdminPage({ tab }: { tab: string }) {
  const admin = useIsGlobalAdmin();
  return (
    <>
      <h1>Administration</h1>
      {!admin && <p className="error" role="alert">These pages are for global admins; the server refuses what follows to anyone else.</p>}
      <nav className="tabs" aria-label="Administration">
        {tabs.map(([id, label]) => <Link key={id} href={`/admin/${id}`} aria-current={id === tab ? "page" : undefined}>{label}</Link>)}
      </nav>
      {tab === "satellites" && <Satellites />}
      {tab === "tokens" && <RegistrationTokens />}
      {tab === "users" && <Users />}
      {tab === "audit" && <Audit />}
    </>
  );
}

const lower = (s?: string) => (s ?? "?").toLowerCase().replace(/_/g, " ");

function Satellites() {
  const list = useQuery(AdminService.method.listSatellites, { pageSize: 500 }, { refetchInterval: 10_000 });
  return (
    <Section title="Satellites">
      {list.isPending ? <Loading what="satellites" /> : list.error ? <ErrorNote error={list.error} /> :
        list.data.satellites.length === 0 ? <Empty>No satellite yet. Create a registration token and start a satellite with it.</Empty> : (
          <table>
            <thead><tr><th>Name</th><th>Status</th><th>Kind</th><th>Version</th><th>URL</th><th>Processes</th><th>Last heartbeat</th></tr></thead>
            <tbody>{list.data.satellites.map((s) => (
              <tr key={s.id}>
                <td>{s.name}</td><td><span className={`status sat-${lower(SatelliteStatus[s.status])}`}>{lower(SatelliteStatus[s.status])}</span></td>
                <td>{lower(SatelliteType[s.type])}</td><td>{s.version || "—"}</td><td><code>{s.url}</code></td><td>{s.processCount}</td>
                <td><When at={s.lastHeartbeatAt} /></td>
              </tr>
            ))}</tbody>
          </table>
        )}
    </Section>
  );
}

function RegistrationTokens() {
  const client = useQueryClient();
  const list = useQuery(AdminService.method.listRegistrationTokens, { pageSize: 500 });
  const [name, setName] = useState("");
  const [hours, setHours] = useState(24);
  const createToken = useMutation(AdminService.method.createRegistrationToken, { onSuccess: () => void client.invalidateQueries() });
  const revoke = useMutation(AdminService.method.revokeRegistrationToken, { onSuccess: () => void client.invalidateQueries() });
  return (
    <Section title="Registration tokens">
      <form className="inline" onSubmit={(e) => {
        e.preventDefault();
        createToken.mutate({ name, scope: TokenScope.GLOBAL, ttl: durationFromMs(hours * 3_600_000) });
      }}>
        <Field label="Name"><input required maxLength={100} value={name} onChange={(e) => setName(e.target.value)} /></Field>
        <Field label="Valid for (hours)"><input type="number" min={1} max={720} value={hours} onChange={(e) => setHours(Number(e.target.value))} /></Field>
        <Busy pending={createToken.isPending}>Create global token</Busy>
      </form>
      <ErrorNote error={createToken.error ?? revoke.error} />
      {createToken.data && (
        <div className="once" role="status">
          <p>Copy the token now: it is shown only once, and registers one satellite.</p>
          <CopyBox value={createToken.data.token} label="registration token" />
        </div>
      )}
      {list.isPending ? <Loading what="tokens" /> : list.error ? <ErrorNote error={list.error} /> :
        list.data.registrationTokens.length === 0 ? <Empty>No registration tokens.</Empty> : (
          <table>
            <thead><tr><th>Name</th><th>Scope</th><th>Expires</th><th>State</th><th /></tr></thead>
            <tbody>{list.data.registrationTokens.map((t) => (
              <tr key={t.id}>
                <td>{t.name}</td><td>{lower(TokenScope[t.scope])}</td><td><When at={t.expiresAt} /></td>
                <td>{t.revokedAt ? "revoked" : t.consumedAt ? "used" : "unused"}</td>
                <td>{!t.revokedAt && !t.consumedAt && <button className="danger" onClick={() => revoke.mutate({ id: t.id, teamId: t.teamId })}>Revoke</button>}</td>
              </tr>
            ))}</tbody>
          </table>
        )}
    </Section>
  );
}

function Users() {
  const client = useQueryClient();
  const list = useQuery(UserService.method.listUsers, { pageSize: 500 });
  const [email, setEmail] = useState("");
  const [name, setName] = useState("");
  const [password, setPassword] = useState("");
  const createUser = useMutation(UserService.method.createUser, {
    onSuccess: () => { setEmail(""); setName(""); setPassword(""); void client.invalidateQueries(); },
  });
  const setRole = useMutation(UserService.method.setGlobalRole, { onSuccess: () => void client.invalidateQueries() });
  return (
    <Section title="Users">
      <form className="inline" onSubmit={(e) => { e.preventDefault(); createUser.mutate({ email, name, password, globalRole: GlobalRole.USER }); }}>
        <Field label="Email"><input type="email" required value={email} onChange={(e) => setEmail(e.target.value)} /></Field>
        <Field label="Name"><input value={name} onChange={(e) => setName(e.target.value)} /></Field>
        <Field label="Initial password" hint="At least 12 characters; they change it after signing in.">
          <input type="password" autoComplete="new-password" required minLength={12} value={password} onChange={(e) => setPassword(e.target.value)} />
        </Field>
        <Busy pending={createUser.isPending}>Create user</Busy>
      </form>
      <ErrorNote error={createUser.error ?? setRole.error} />
      {list.isPending ? <Loading what="users" /> : list.error ? <ErrorNote error={list.error} /> : (
        <table>
          <thead><tr><th>Email</th><th>Name</th><th>Global role</th><th>Created</th></tr></thead>
          <tbody>{list.data.users.map((u) => (
            <tr key={u.id}>
              <td>{u.email}</td><td>{u.name}</td>
              <td><select aria-label={`Global role of ${u.email}`} value={u.globalRole} onChange={(e) => setRole.mutate({ userId: u.id, globalRole: Number(e.target.value) })}>
                <option value={GlobalRole.USER}>user</option><option value={GlobalRole.ADMIN}>admin</option></select></td>
              <td><When at={u.createdAt} /></td>
            </tr>
          ))}</tbody>
        </table>
      )}
    </Section>
  );
}

// Audit filters live in the URL so a filtered view can be bookmarked and shared: the team narrows on the
// server, the action and actor narrow the page already loaded.
function Audit() {
  const params = new URLSearchParams(useSearch());
  const [, navigate] = useLocation();
  const teamId = params.get("team") ?? "";
  const action = params.get("action") ?? "";
  const actor = params.get("actor") ?? "";
  const [beforeId, setBeforeId] = useState(0n);
  const valid = teamId === "" || /^[0-9a-f-]{36}$/.test(teamId);
  const list = useQuery(AuditService.method.listAuditEvents, { teamId, pageSize: 200, beforeId }, { enabled: valid });
  const set = (k: string, v: string) => {
    const p = new URLSearchParams(params);
    if (v) p.set(k, v); else p.delete(k);
    setBeforeId(0n);
    navigate(`/admin/audit${p.size ? `?${p}` : ""}`, { replace: true });
  };
  const events = (list.data?.events ?? []).filter((e) => e.action.includes(action) && e.actor.includes(actor));
  return (
    <Section title="Audit log">
      <div className="inline">
        <Field label="Team id"><input value={teamId} onChange={(e) => set("team", e.target.value.trim())} /></Field>
        <Field label="Action contains"><input value={action} onChange={(e) => set("action", e.target.value)} /></Field>
        <Field label="Actor contains"><input value={actor} onChange={(e) => set("actor", e.target.value)} /></Field>
      </div>
      {!valid && <p className="error" role="alert">A team id is a UUID.</p>}
      {list.isPending && valid ? <Loading what="audit events" /> : list.error ? <ErrorNote error={list.error} /> : events.length === 0 ? <Empty>No events match.</Empty> : (
        <table>
          <thead><tr><th>When</th><th>Actor</th><th>Action</th><th>Target</th><th>Team</th></tr></thead>
          <tbody>{events.map((e) => (
            <tr key={String(e.id)}><td><When at={e.occurredAt} /></td><td>{e.actor}</td><td><code>{e.action}</code></td><td>{e.target}</td><td>{e.teamId}</td></tr>
          ))}</tbody>
        </table>
      )}
      {list.data?.nextBeforeId ? <button className="secondary" onClick={() => setBeforeId(list.data!.nextBeforeId)}>Older events</button> : null}
    </Section>
  );
}
