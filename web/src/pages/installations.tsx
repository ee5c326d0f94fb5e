import { create, toJson } from "@bufbuild/protobuf";
import { durationMs, ValueSchema, type Value } from "@bufbuild/protobuf/wkt";
import { useMutation, useQuery } from "@connectrpc/connect-query";
import { useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import { Link, useLocation, useSearch } from "wouter";
import { createClient } from "@connectrpc/connect";
import { transport } from "../api";
import { useFollow, type FollowState } from "../follow";
import { TeamRole } from "../gen/orrery/api/v1/account_pb";
import {
  CatalogService,
  ConfigScope,
  EmergencyStopScope,
  SettingValueSchema,
  ValueType,
  type ConfigField,
  type ConfigSchema,
  type EmergencyStop,
  type SettingValue,
} from "../gen/orrery/api/v1/catalog_pb";
import { InstallationService, InstallationSpecSchema, type Installation } from "../gen/orrery/api/v1/installation_pb";
import { InstanceService, type Instance, type InstanceEvent, type RequestLog, type ServerLogLine } from "../gen/orrery/api/v1/instance_pb";
import { ToolService, type Tool } from "../gen/orrery/api/v1/tool_pb";
import { InstanceStatus, LifecycleKind, LogLevel } from "../gen/orrery/satellite/v1/satellite_pb";
import { useSession } from "../session";
import { Busy, Empty, ErrorNote, Field, Loading, Section, When } from "../ui";
import { TeamHeader, useTeamRole } from "./teams";

const instances = createClient(InstanceService, transport);

export const statusName = (s: InstanceStatus) => (InstanceStatus[s] ?? "unknown").toLowerCase().replace(/_/g, " ");

// eventName names a status event; lifecycle events (a process started, crashed ...) carry no status.
const eventName = (ev: InstanceEvent) =>
  ev.status !== InstanceStatus.UNSPECIFIED ? statusName(ev.status) : (LifecycleKind[ev.lifecycle] ?? "event").toLowerCase().replace(/_/g, " ");

export function InstallationsPage({ teamId }: { teamId: string }) {
  const list = useQuery(InstallationService.method.listInstallations, { teamId, pageSize: 100 });
  return (
    <>
      <TeamHeader teamId={teamId} page="Installations" />
      {list.isPending ? (
        <Loading what="installations" />
      ) : list.error ? (
        <ErrorNote error={list.error} />
      ) : list.data.installations.length === 0 ? (
        <Empty>
          Nothing is installed yet. Pick a server in the <Link href={`/teams/${teamId}/catalog`}>catalog</Link> and install it;
          every member then gets their own instance.
        </Empty>
      ) : (
        <ul className="tiles">
          {list.data.installations.map((i) => (
            <li key={i.id}>
              <Link href={`/teams/${teamId}/installations/${i.id}`}>
                <strong>{i.spec?.name}</strong> <span className="muted">{i.serverSlug} · tools prefixed {i.effectiveToolPrefix}__</span>
                {i.stop && <span className="badge" title={i.stop.reason}>stopped</span>}
              </Link>
            </li>
          ))}
        </ul>
      )}
    </>
  );
}

type Values = Record<string, SettingValue>;
type Kind = "argValues" | "env" | "headers" | "queryParams";
const kinds: [Kind, keyof ConfigSchema, string][] = [
  ["argValues", "args", "Arguments"],
  ["env", "env", "Environment"],
  ["headers", "headers", "Headers"],
  ["queryParams", "queryParams", "Query parameters"],
];
type FormValues = Record<Kind, Values>;
const emptyValues = (): FormValues => ({ argValues: {}, env: {}, headers: {}, queryParams: {} });

// ConfigForm renders the fields of a template's config_schema at one scope. Secrets are never shown: a
// stored one reads "set", and leaving the box empty keeps it.
function ConfigForm({ schema, scope, stored, values, onChange }: {
  schema?: ConfigSchema; scope: ConfigScope; stored: FormValues; values: FormValues; onChange: (v: FormValues) => void;
}) {
  const sections = kinds.map(([kind, key, title]) => {
    const fields = ((schema?.[key] as ConfigField[] | undefined) ?? []).filter((f) => f.scope === scope);
    return { kind, title, fields };
  }).filter((s) => s.fields.length > 0);
  if (sections.length === 0) return <p className="muted">Nothing to set here.</p>;
  return (
    <>
      {sections.map(({ kind, title, fields }) => (
        <fieldset key={kind}>
          <legend>{title}</legend>
          {fields.map((f) => {
            const was = stored[kind][f.name];
            const value = values[kind][f.name]?.value ?? (f.secret ? "" : was?.value ?? "");
            const set = (v: string) => onChange({ ...values, [kind]: { ...values[kind], [f.name]: create(SettingValueSchema, { value: v, secret: f.secret }) } });
            const label = `${f.name}${f.required ? " (required)" : ""}`;
            const hint = <>{f.description}{f.secret && <> <span className="badge">{was?.set ? "set" : "not set"}</span>{was?.set && " Leave empty to keep the stored value."}</>}</>;
            const required = f.required && !(f.secret && was?.set);
            if (f.choices.length > 0) {
              return (
                <Field key={f.name} label={label} hint={hint}>
                  <select required={required} value={value || f.defaultValue} onChange={(e) => set(e.target.value)}>
                    {!f.required && <option value="">(none)</option>}
                    {f.choices.map((c) => <option key={c} value={c}>{c}</option>)}
                  </select>
                </Field>
              );
            }
            if (f.type === ValueType.BOOLEAN) {
              return (
                <Field key={f.name} label={label} hint={hint}>
                  <select required={required} value={value || f.defaultValue} onChange={(e) => set(e.target.value)}>
                    <option value="">(default)</option><option value="true">true</option><option value="false">false</option>
                  </select>
                </Field>
              );
            }
            return (
              <Field key={f.name} label={label} hint={hint}>
                <input
                  type={f.secret ? "password" : f.type === ValueType.NUMBER ? "number" : "text"}
                  autoComplete={f.secret ? "new-password" : "off"} required={required} value={value}
                  placeholder={f.secret && was?.set ? "•••••• (stored)" : f.defaultValue} onChange={(e) => set(e.target.value)}
                />
              </Field>
            );
          })}
        </fieldset>
      ))}
    </>
  );
}

export function InstallPage({ teamId, entryId }: { teamId: string; entryId: string }) {
  const entry = useQuery(CatalogService.method.getCatalogEntry, { teamId, id: entryId });
  const [name, setName] = useState("");
  const [values, setValues] = useState(emptyValues());
  const client = useQueryClient();
  const [, navigate] = useLocation();
  const install = useMutation(InstallationService.method.createInstallation, {
    onSuccess: async (r) => {
      await client.invalidateQueries();
      navigate(`/teams/${teamId}/installations/${r.installation!.id}`);
    },
  });
  const e = entry.data?.entry;
  return (
    <>
      <TeamHeader teamId={teamId} page="Installations" />
      {entry.isPending ? <Loading what="the template" /> : entry.error ? <ErrorNote error={entry.error} /> : (
        <Section title={`Install ${e?.spec?.name}`}>
          <form onSubmit={(ev) => {
            ev.preventDefault();
            install.mutate({ teamId, catalogEntryId: entryId, spec: create(InstallationSpecSchema, { name: name || e!.slug, ...values }) });
          }}>
            <Field label="Installation name" hint="Shown to the team; defaults to the template's slug.">
              <input name="name" maxLength={200} value={name} placeholder={e?.slug} onChange={(ev) => setName(ev.target.value)} />
            </Field>
            <ConfigForm schema={e?.spec?.configSchema} scope={ConfigScope.TEAM} stored={emptyValues()} values={values} onChange={setValues} />
            <ErrorNote error={install.error} title="Installing failed" />
            <Busy pending={install.isPending}>Install for the team</Busy>
          </form>
        </Section>
      )}
    </>
  );
}

export function InstallationPage({ teamId, id }: { teamId: string; id: string }) {
  const got = useQuery(InstallationService.method.getInstallation, { teamId, id });
  const isAdmin = useTeamRole(teamId) === TeamRole.ADMIN;
  const installation = got.data?.installation;
  return (
    <>
      <TeamHeader teamId={teamId} page="Installations" />
      {got.isPending ? <Loading what="the installation" /> : got.error ? <ErrorNote error={got.error} /> : (
        <>
          <h2 className="sub">{installation?.spec?.name} <span className="muted">{installation?.serverSlug}</span></h2>
          {installation?.stop && <StopNote stop={installation.stop} />}
          <LiveInstances teamId={teamId} installationId={id} />
          <Tools teamId={teamId} installationId={id} isAdmin={isAdmin} />
          <RequestLogs teamId={teamId} installationId={id} />
          <ServerLogs teamId={teamId} installationId={id} />
          <MyConfiguration teamId={teamId} installation={installation!} />
          {isAdmin && <InstallationSettings teamId={teamId} installation={installation!} />}
        </>
      )}
    </>
  );
}

const words = (s: string) => s.split(/[\s,]+/).filter(Boolean);

const offered = (t: Tool) => (!t.selected ? "not offered by the team" : t.hidden ? "hidden by you" : "offered");

// Tools lists what the installation's server offers as the team endpoint shows it, with what each tool's
// definition costs a model's context. Members hide tools for themselves; admins choose the team's tools.
function Tools({ teamId, installationId, isAdmin }: { teamId: string; installationId: string; isAdmin: boolean }) {
  const list = useQuery(ToolService.method.listTools, { teamId, installationId });
  const selection = useQuery(ToolService.method.getToolSelection, { teamId, installationId });
  const client = useQueryClient();
  const refresh = () => void client.invalidateQueries();
  const hide = useMutation(ToolService.method.setHiddenTools, { onSuccess: refresh });
  const choose = useMutation(ToolService.method.setToolSelection, { onSuccess: refresh });
  const sel = selection.data?.selection;
  const [allow, setAllow] = useState<string | null>(null);
  const [deny, setDeny] = useState<string | null>(null);
  const hidden = selection.data?.hidden ?? [];
  const toggle = (name: string) =>
    hide.mutate({ teamId, installationId, hidden: hidden.includes(name) ? hidden.filter((h) => h !== name) : [...hidden, name] });
  const tools = list.data?.tools ?? [];
  return (
    <Section title="Tools" actions={list.data && <span className="muted" data-total-tokens={list.data.totalTokens}>{list.data.totalTokens} tokens offered to you</span>}>
      <ErrorNote error={list.error ?? selection.error} />
      <ErrorNote error={hide.error ?? choose.error} title="Saving the selection failed" />
      {list.isPending ? <Loading what="tools" /> : tools.length === 0 ? <Empty>No tools yet: they appear once a server has started and listed them.</Empty> : (
        <table className="tools">
          <thead><tr><th>Tool</th><th>Tokens</th><th>At your endpoint</th><th>Description</th><th /></tr></thead>
          <tbody>
            {tools.map((t) => (
              <tr key={t.name} data-exposed-tool={t.exposedName}>
                <td><code>{t.exposedName}</code>{t.title && <div className="muted">{t.title}</div>}</td>
                <td data-tokens={t.tokenCount}>{t.tokenCount}</td>
                <td>{offered(t)}</td>
                <td>{t.description}</td>
                {/* A tool hidden by a pattern, not by its own name, is shown again by editing the patterns. */}
                <td>{t.selected && (!t.hidden || hidden.includes(t.name)) && (
                  <button className="secondary" aria-label={`${t.hidden ? "Show" : "Hide"} ${t.exposedName}`} disabled={hide.isPending || !selection.data}
                    onClick={() => toggle(t.name)}>{t.hidden ? "Show" : "Hide for me"}</button>
                )}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {isAdmin && sel && (
        <form onSubmit={(e) => {
          e.preventDefault();
          choose.mutate({ teamId, installationId, selection: { allow: words(allow ?? sel.allow.join(" ")), deny: words(deny ?? sel.deny.join(" ")), descriptions: sel.descriptions } });
        }}>
          <Field label="Offer only" hint="Tool name patterns such as get_* or search_code, separated by spaces; empty offers every tool.">
            <input name="allow" value={allow ?? sel.allow.join(" ")} onChange={(e) => setAllow(e.target.value)} />
          </Field>
          <Field label="Leave out" hint="Patterns of tools nobody in the team is offered, even when they match the list above.">
            <input name="deny" value={deny ?? sel.deny.join(" ")} onChange={(e) => setDeny(e.target.value)} />
          </Field>
          {choose.isSuccess && <p className="ok" role="status">Saved; connected clients are told their tool list changed.</p>}
          <Busy pending={choose.isPending}>Save the team's tools</Busy>
        </form>
      )}
    </Section>
  );
}

// StopNote says why an installation is out of service: its tools are gone from every endpoint and calls
// of them are refused with this reason.
function StopNote({ stop }: { stop: EmergencyStop }) {
  const what = stop.scope === EmergencyStopScope.TEMPLATE ? "Every installation of this server is stopped" : "This installation is stopped";
  return (
    <p className="error" role="alert">
      {what} by an emergency stop (<When at={stop.stoppedAt} />): {stop.reason}
    </p>
  );
}

function StreamState({ state }: { state: FollowState }) {
  const text = { connecting: "connecting…", live: "live", reconnecting: "reconnecting…", stopped: "stopped" }[state];
  return <span className={`stream ${state}`} role="status" aria-live="polite">{text}</span>;
}

function LiveInstances({ teamId, installationId }: { teamId: string; installationId: string }) {
  const [byId, setById] = useState<Record<string, Instance>>({});
  const [events, setEvents] = useState<InstanceEvent[]>([]);
  const { user } = useSession();
  const follow = useFollow(
    `status/${teamId}/${installationId}`,
    (after, options) => instances.watchInstanceStatus({ teamId, installationId, afterId: after, snapshot: after === 0n }, options),
    (m) => {
      setById((prev) => {
        const next = { ...prev };
        for (const i of m.instances) next[i.id] = i;
        for (const ev of m.events) {
          const i = next[ev.instanceId];
          if (i && ev.status !== InstanceStatus.UNSPECIFIED) {
            next[ev.instanceId] = { ...i, status: ev.status, statusMessage: ev.message, statusUpdatedAt: ev.occurredAt };
          }
        }
        return next;
      });
      if (m.events.length) setEvents((prev) => [...m.events.slice().reverse(), ...prev].slice(0, 50));
    },
  );
  const client = useQueryClient();
  const restart = useMutation(InstanceService.method.restartInstance, { onSuccess: () => void client.invalidateQueries() });
  const list = Object.values(byId);
  return (
    <Section title="Instances" actions={<StreamState state={follow.state} />}>
      <ErrorNote error={follow.error} title="Live status" />
      <ErrorNote error={restart.error} title="Restart failed" />
      {restart.isSuccess && <p className="ok" role="status">Restart requested; the status below follows it.</p>}
      {follow.state === "connecting" ? <Loading what="live status" /> : list.length === 0 ? (
        <Empty>No instance yet: one starts for each member as soon as a satellite picks the installation up.</Empty>
      ) : (
        <table className="instances">
          <thead><tr><th>Instance</th><th>Status</th><th>Since</th><th /></tr></thead>
          <tbody>
            {list.map((i) => (
              <tr key={i.id} data-instance={i.id}>
                <td><code>{i.id}</code>{i.userId === user?.id && <span className="badge">yours</span>}</td>
                <td><span className={`status s-${InstanceStatus[i.status]?.toLowerCase()}`} data-status={statusName(i.status)}>{statusName(i.status)}</span>
                  {i.statusMessage && <div className="muted">{i.statusMessage}</div>}</td>
                <td><When at={i.statusUpdatedAt} /></td>
                <td><button aria-label={`Restart ${i.id}`} onClick={() => restart.mutate({ teamId, instanceId: i.id })} disabled={restart.isPending}>Restart</button></td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {events.length > 0 && (
        <details>
          <summary>Recent status changes ({events.length})</summary>
          <ol className="events">
            {events.map((ev) => <li key={String(ev.id)} data-event-status={eventName(ev)}><When at={ev.occurredAt} /> {eventName(ev)} {ev.message && `— ${ev.message}`}</li>)}
          </ol>
        </details>
      )}
    </Section>
  );
}

function ServerLogs({ teamId, installationId }: { teamId: string; installationId: string }) {
  const [lines, setLines] = useState<ServerLogLine[]>([]);
  const follow = useFollow(
    `logs/${teamId}/${installationId}`,
    (after, options) => instances.streamServerLogs({ teamId, installationId, afterId: after }, options),
    (m) => m.lines.length && setLines((prev) => [...prev, ...m.lines].slice(-500)),
  );
  return (
    <Section title="Server logs" actions={<StreamState state={follow.state} />}>
      <ErrorNote error={follow.error} title="Server logs" />
      {follow.state === "connecting" ? <Loading what="server logs" /> : lines.length === 0 ? <Empty>No log lines yet. A server's stderr and connection errors appear here as they happen.</Empty> : (
        <pre className="logs" tabIndex={0} aria-label="Server log lines">
          {lines.map((l) => `${l.occurredAt ? new Date(Number(l.occurredAt.seconds) * 1000).toISOString() : ""} ${LogLevel[l.level]} ${l.message}\n`).join("")}
        </pre>
      )}
    </Section>
  );
}

function RequestLogs({ teamId, installationId }: { teamId: string; installationId: string }) {
  const [logs, setLogs] = useState<RequestLog[]>([]);
  const search = new URLSearchParams(useSearch());
  const selected = search.get("request");
  const [location, navigate] = useLocation();
  const follow = useFollow(
    `requests/${teamId}/${installationId}`,
    (after, options) => instances.streamRequestLogs({ teamId, installationId, afterId: after }, options),
    (m) => m.requestLogs.length && setLogs((prev) => [...m.requestLogs.slice().reverse(), ...prev].slice(0, 200)),
  );
  return (
    <Section title="Tool calls" actions={<StreamState state={follow.state} />}>
      <ErrorNote error={follow.error} title="Request logs" />
      {follow.state === "connecting" ? <Loading what="tool calls" /> : logs.length === 0 ? <Empty>No tool calls yet. Connect a client (see "Connect a client") and call a tool.</Empty> : (
        <table className="requests">
          <thead><tr><th>When</th><th>Tool</th><th>Result</th><th>Duration</th></tr></thead>
          <tbody>
            {logs.map((l) => (
              <tr key={String(l.id)} data-tool={l.toolName}>
                <td><Link href={`${location}?request=${l.id}`}><When at={l.occurredAt} /></Link></td>
                <td><code>{l.toolName}</code></td>
                <td>{l.success ? "ok" : <span className="bad">{l.error || "error"}</span>}</td>
                <td>{l.duration ? `${durationMs(l.duration)} ms` : ""}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {selected && /^\d+$/.test(selected) && (
        <RequestDetail teamId={teamId} installationId={installationId} id={BigInt(selected)} onClose={() => navigate(location)} />
      )}
    </Section>
  );
}

const pretty = (v: Value | undefined) => (v === undefined ? "(not recorded)" : JSON.stringify(toJson(ValueSchema, v), null, 2));

function RequestDetail({ teamId, installationId, id, onClose }: { teamId: string; installationId: string; id: bigint; onClose: () => void }) {
  const got = useQuery(InstanceService.method.getRequestLog, { teamId, installationId, requestId: id });
  const l = got.data?.requestLog;
  return (
    <div className="detail" role="region" aria-label="Tool call detail">
      <header className="card-head"><h3>Call {String(id)}</h3><button className="secondary" onClick={onClose}>Close</button></header>
      {got.isPending ? <Loading what="the call" /> : got.error ? <ErrorNote error={got.error} /> : (
        <>
          <p><code>{l?.toolName}</code> · {l?.success ? "succeeded" : `failed: ${l?.error}`} · <When at={l?.occurredAt} /></p>
          <h4>Request</h4><pre className="mono">{pretty(l?.request)}</pre>
          <h4>Response</h4><pre className="mono">{pretty(l?.response)}</pre>
        </>
      )}
    </div>
  );
}

function MyConfiguration({ teamId, installation }: { teamId: string; installation: Installation }) {
  const entry = useQuery(CatalogService.method.getCatalogEntry, { teamId, id: installation.catalogEntryId });
  const mine = useQuery(InstallationService.method.getUserConfiguration, { teamId, installationId: installation.id });
  const [values, setValues] = useState(emptyValues());
  const client = useQueryClient();
  const save = useMutation(InstallationService.method.setUserConfiguration, {
    onSuccess: () => { setValues(emptyValues()); void client.invalidateQueries(); },
  });
  const c = mine.data?.configuration;
  const stored: FormValues = { argValues: c?.argValues ?? {}, env: c?.env ?? {}, headers: c?.headers ?? {}, queryParams: c?.queryParams ?? {} };
  const schema = entry.data?.entry?.spec?.configSchema;
  const hasUserFields = schema && kinds.some(([, key]) => (schema[key] as ConfigField[]).some((f) => f.scope === ConfigScope.USER));
  if (!hasUserFields) return null;
  return (
    <Section title="Your configuration">
      <p className="muted">Only your own instance uses these values.</p>
      <ErrorNote error={mine.error ?? entry.error} />
      <form onSubmit={(e) => {
        e.preventDefault();
        const merged = Object.fromEntries(kinds.map(([k]) => [k, { ...stored[k], ...values[k] }])) as FormValues;
        save.mutate({ teamId, installationId: installation.id, ...merged });
      }}>
        <ConfigForm schema={schema} scope={ConfigScope.USER} stored={stored} values={values} onChange={setValues} />
        <ErrorNote error={save.error} />
        {save.isSuccess && <p className="ok" role="status">Saved; your instance restarts with them.</p>}
        <Busy pending={save.isPending}>Save my configuration</Busy>
      </form>
    </Section>
  );
}

function InstallationSettings({ teamId, installation }: { teamId: string; installation: Installation }) {
  const entry = useQuery(CatalogService.method.getCatalogEntry, { teamId, id: installation.catalogEntryId });
  const spec = installation.spec!;
  const [name, setName] = useState(spec.name);
  const [prefix, setPrefix] = useState(spec.toolPrefix ?? "");
  const [logging, setLogging] = useState(spec.requestLoggingEnabled ?? true);
  const [values, setValues] = useState(emptyValues());
  const client = useQueryClient();
  const [, navigate] = useLocation();
  const stored: FormValues = { argValues: spec.argValues, env: spec.env, headers: spec.headers, queryParams: spec.queryParams };
  const update = useMutation(InstallationService.method.updateInstallation, {
    onSuccess: () => { setValues(emptyValues()); void client.invalidateQueries(); },
  });
  const remove = useMutation(InstallationService.method.deleteInstallation, {
    onSuccess: async () => { await client.invalidateQueries(); navigate(`/teams/${teamId}/installations`); },
  });
  return (
    <Section title="Settings">
      <form onSubmit={(e) => {
        e.preventDefault();
        const merged = Object.fromEntries(kinds.map(([k]) => [k, { ...stored[k], ...values[k] }])) as FormValues;
        update.mutate({ teamId, id: installation.id, spec: create(InstallationSpecSchema, {
          ...spec, ...merged, name, toolPrefix: prefix || undefined, requestLoggingEnabled: logging,
        }) });
      }}>
        <Field label="Name"><input required maxLength={200} value={name} onChange={(e) => setName(e.target.value)} /></Field>
        <Field label="Tool prefix" hint={`Tools are listed as prefix__tool; now ${installation.effectiveToolPrefix}.`}>
          <input pattern="[A-Za-z0-9_\-]*" maxLength={32} value={prefix} placeholder={installation.serverSlug} onChange={(e) => setPrefix(e.target.value)} />
        </Field>
        <label className="check"><input type="checkbox" checked={logging} onChange={(e) => setLogging(e.target.checked)} /> Record request and response bodies of tool calls</label>
        <ConfigForm schema={entry.data?.entry?.spec?.configSchema} scope={ConfigScope.TEAM} stored={stored} values={values} onChange={setValues} />
        <ErrorNote error={update.error} />
        {update.isSuccess && <p className="ok" role="status">Saved; instances restart with the new configuration.</p>}
        <Busy pending={update.isPending}>Save settings</Busy>
      </form>
      <hr />
      <ErrorNote error={remove.error} />
      <button className="danger" disabled={remove.isPending} onClick={() => {
        if (confirm(`Delete ${spec.name}? Every member's instance stops.`)) remove.mutate({ teamId, id: installation.id });
      }}>Delete installation</button>
    </Section>
  );
}
