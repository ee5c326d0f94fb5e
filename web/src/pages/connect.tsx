import { useMutation, useQuery } from "@connectrpc/connect-query";
import { useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import { TeamRole } from "../gen/orrery/api/v1/account_pb";
import { OAuthService } from "../gen/orrery/api/v1/oauth_pb";
import { TeamService, ToolsMode } from "../gen/orrery/api/v1/team_pb";
import { Busy, CopyBox, Empty, ErrorNote, Field, Loading, Section, When } from "../ui";
import { TeamHeader, useTeamRole } from "./teams";

// clientConfigs is what each MCP client needs to reach a team endpoint. Every client signs in through the
// control plane's OAuth server on first use, so no token is written into these files.
export function clientConfigs(name: string, url: string): [string, string][] {
  return [
    ["VS Code (.vscode/mcp.json)", JSON.stringify({ servers: { [name]: { type: "http", url } } }, null, 2)],
    ["Claude Code", `claude mcp add --transport http ${name} ${url}`],
    ["Cursor (~/.cursor/mcp.json)", JSON.stringify({ mcpServers: { [name]: { url } } }, null, 2)],
    ["Any MCP client", `Streamable HTTP endpoint: ${url}\nAuthorization: OAuth 2.1 (discovered from the endpoint's 401)`],
  ];
}

export function ConnectPage({ teamId }: { teamId: string }) {
  const team = useQuery(TeamService.method.getTeam, { teamId });
  const endpoint = useQuery(TeamService.method.getTeamEndpoint, { teamId });
  const [tab, setTab] = useState(0);
  const slug = team.data?.team?.slug ?? "team";
  const url = endpoint.data?.url;
  const configs = url ? clientConfigs(`orrery-${slug}`, url) : [];
  return (
    <>
      <TeamHeader teamId={teamId} page="Connect a client" />
      <Section title="Team endpoint">
        {endpoint.isPending ? <Loading what="the endpoint" /> : endpoint.error ? <ErrorNote error={endpoint.error} /> : !url ? (
          <Empty>No satellite serves this team yet. An admin registers one under Admin → Satellites.</Empty>
        ) : (
          <>
            <CopyBox value={url} label="endpoint URL" />
            <div role="tablist" aria-label="Client" className="tabs">
              {configs.map(([label], i) => (
                <button key={label} role="tab" aria-selected={i === tab} className={i === tab ? "" : "secondary"} onClick={() => setTab(i)}>{label}</button>
              ))}
            </div>
            <div role="tabpanel"><CopyBox value={configs[tab][1]} label="configuration" /></div>
          </>
        )}
      </Section>
      <ToolsModeSection teamId={teamId} url={url} />
      {useTeamRole(teamId) === TeamRole.ADMIN && <OAuthClients teamId={teamId} />}
      <MyConsents />
    </>
  );
}

// searchModeURL is the endpoint URL with which one client uses search mode whatever the user and team chose.
export function searchModeURL(url: string): string {
  const u = new URL(url);
  u.searchParams.set("tools", "search");
  return u.toString();
}

function modeName(m: ToolsMode): string {
  return m === ToolsMode.SEARCH ? "search: two meta-tools, search_tools and call_tool" : "all tools";
}

// ToolsModeSection shows how the endpoint offers tools to the signed-in member, and lets admins choose the
// team's mode and every member their own.
function ToolsModeSection({ teamId, url }: { teamId: string; url?: string }) {
  const client = useQueryClient();
  const refresh = () => void client.invalidateQueries();
  const team = useQuery(TeamService.method.getTeam, { teamId });
  const isAdmin = useTeamRole(teamId) === TeamRole.ADMIN;
  const setTeam = useMutation(TeamService.method.setTeamToolsMode, { onSuccess: refresh });
  const setMine = useMutation(TeamService.method.setMyToolsMode, { onSuccess: refresh });
  if (team.isPending) return <Section title="Tool mode"><Loading what="the tool mode" /></Section>;
  if (team.error) return <Section title="Tool mode"><ErrorNote error={team.error} /></Section>;
  const teamMode = team.data.team?.toolsMode ?? ToolsMode.ALL;
  const effective = team.data.myEffectiveToolsMode;
  return (
    <Section title="Tool mode">
      <p>
        In search mode the endpoint lists two tools instead of every tool, so a client's model reads the definitions of
        the few tools a task needs. A client can choose for itself with <code>?tools=search</code> or <code>?tools=all</code> on
        the endpoint URL; otherwise your own choice applies, else the team's.
        {effective !== ToolsMode.UNSPECIFIED && <> Your endpoint now uses <strong>{modeName(effective)}</strong>.</>}
      </p>
      <ErrorNote error={setTeam.error ?? setMine.error} />
      <div className="inline">
        <Field label="Team's mode" hint={isAdmin ? "For members who made no choice of their own." : "Team admins choose it."}>
          {isAdmin ? (
            <select value={teamMode} disabled={setTeam.isPending}
              onChange={(e) => setTeam.mutate({ teamId, toolsMode: Number(e.target.value) })}>
              <option value={ToolsMode.ALL}>{modeName(ToolsMode.ALL)}</option>
              <option value={ToolsMode.SEARCH}>{modeName(ToolsMode.SEARCH)}</option>
            </select>
          ) : (
            <span>{modeName(teamMode)}</span>
          )}
        </Field>
        {effective !== ToolsMode.UNSPECIFIED && (
          <Field label="Your mode" hint="Yours only; wins over the team's.">
            <select value={team.data.myToolsMode} disabled={setMine.isPending}
              onChange={(e) => setMine.mutate({ teamId, toolsMode: Number(e.target.value) })}>
              <option value={ToolsMode.UNSPECIFIED}>follow the team ({teamMode === ToolsMode.SEARCH ? "search" : "all tools"})</option>
              <option value={ToolsMode.ALL}>{modeName(ToolsMode.ALL)}</option>
              <option value={ToolsMode.SEARCH}>{modeName(ToolsMode.SEARCH)}</option>
            </select>
          </Field>
        )}
      </div>
      {url && <CopyBox value={searchModeURL(url)} label="search-mode endpoint URL" />}
    </Section>
  );
}

function OAuthClients({ teamId }: { teamId: string }) {
  const client = useQueryClient();
  const refresh = () => void client.invalidateQueries();
  const clients = useQuery(OAuthService.method.listOAuthClients, { teamId });
  const grants = useQuery(OAuthService.method.listOAuthGrants, { teamId });
  const [name, setName] = useState("");
  const createClient = useMutation(OAuthService.method.createOAuthClient, { onSuccess: refresh });
  const revokeClient = useMutation(OAuthService.method.revokeOAuthClient, { onSuccess: refresh });
  const revokeGrant = useMutation(OAuthService.method.revokeOAuthGrant, { onSuccess: refresh });
  return (
    <>
      <Section title="OAuth clients for headless agents">
        <form className="inline" onSubmit={(e) => { e.preventDefault(); createClient.mutate({ teamId, name, scopes: [] }); }}>
          <Field label="Client name"><input required maxLength={200} value={name} onChange={(e) => setName(e.target.value)} /></Field>
          <Busy pending={createClient.isPending}>Create client</Busy>
        </form>
        <ErrorNote error={createClient.error ?? revokeClient.error} />
        {createClient.data && (
          <div className="once" role="status">
            <p>Client <code>{createClient.data.client?.clientId}</code>. Copy the secret now: it is shown only once.</p>
            <CopyBox value={createClient.data.clientSecret} label="client secret" />
          </div>
        )}
        {clients.isPending ? <Loading what="clients" /> : clients.error ? <ErrorNote error={clients.error} /> :
          clients.data.clients.length === 0 ? <Empty>No clients. Interactive clients register themselves; create one here for an agent that signs in with client credentials.</Empty> : (
            <table>
              <thead><tr><th>Name</th><th>Client id</th><th>Grant types</th><th>Created</th><th /></tr></thead>
              <tbody>{clients.data.clients.map((c) => (
                <tr key={c.clientId}><td>{c.name}</td><td><code>{c.clientId}</code></td><td>{c.grantTypes.join(", ")}</td><td><When at={c.createdAt} /></td>
                  <td><button className="danger" onClick={() => revokeClient.mutate({ teamId, clientId: c.clientId })}>Revoke</button></td></tr>
              ))}</tbody>
            </table>
          )}
      </Section>
      <Section title="Grants in this team">
        <ErrorNote error={revokeGrant.error} />
        {grants.isPending ? <Loading what="grants" /> : grants.error ? <ErrorNote error={grants.error} /> :
          grants.data.grants.length === 0 ? <Empty>No client holds a grant for this team yet.</Empty> : (
            <table>
              <thead><tr><th>Client</th><th>User</th><th>Scopes</th><th>Expires</th><th /></tr></thead>
              <tbody>{grants.data.grants.map((g) => (
                <tr key={g.grantId}><td><code>{g.clientId}</code></td><td>{g.userId}</td><td>{g.scopes.join(" ")}</td><td><When at={g.expiresAt} /></td>
                  <td><button className="danger" onClick={() => revokeGrant.mutate({ teamId, grantId: g.grantId })}>Revoke</button></td></tr>
              ))}</tbody>
            </table>
          )}
      </Section>
    </>
  );
}

function MyConsents() {
  const client = useQueryClient();
  const refresh = () => void client.invalidateQueries();
  const mine = useQuery(OAuthService.method.listMyOAuthConsents, {});
  const withdraw = useMutation(OAuthService.method.withdrawOAuthConsent, { onSuccess: refresh });
  const revoke = useMutation(OAuthService.method.revokeMyOAuthGrant, { onSuccess: refresh });
  return (
    <Section title="Your consents and signed-in clients">
      <ErrorNote error={withdraw.error ?? revoke.error} />
      {mine.isPending ? <Loading what="consents" /> : mine.error ? <ErrorNote error={mine.error} /> :
        mine.data.consents.length + mine.data.grants.length === 0 ? <Empty>No client has signed in as you yet.</Empty> : (
          <table>
            <thead><tr><th>Client</th><th>Team</th><th>Scopes</th><th /></tr></thead>
            <tbody>
              {mine.data.consents.map((c) => (
                <tr key={`c${c.clientId}${c.teamId}`}><td><code>{c.clientId}</code> (consent)</td><td>{c.teamSlug}</td><td>{c.scopes.join(" ")}</td>
                  <td><button className="danger" onClick={() => withdraw.mutate({ clientId: c.clientId, consentTeamId: c.teamId })}>Withdraw</button></td></tr>
              ))}
              {mine.data.grants.map((g) => (
                <tr key={`g${g.grantId}`}><td><code>{g.clientId}</code> (signed in)</td><td>{g.teamSlug}</td><td>{g.scopes.join(" ")}</td>
                  <td><button className="danger" onClick={() => revoke.mutate({ grantId: g.grantId })}>Sign out</button></td></tr>
              ))}
            </tbody>
          </table>
        )}
    </Section>
  );
}
