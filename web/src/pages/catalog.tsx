import { create, fromJsonString, toJsonString } from "@bufbuild/protobuf";
import { useMutation, useQuery } from "@connectrpc/connect-query";
import { useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import { Link, useLocation, useSearch } from "wouter";
import { TeamRole } from "../gen/orrery/api/v1/account_pb";
import {
  CatalogEntrySpecSchema,
  CatalogService,
  ConfigSchemaSchema,
  Transport,
  type CatalogEntry,
  type CatalogEntrySpec,
} from "../gen/orrery/api/v1/catalog_pb";
import { Busy, Empty, ErrorNote, Field, Loading, Section, When } from "../ui";
import { TeamHeader, useTeamRole } from "./teams";

export const transportName = (t: Transport) => Transport[t]?.toLowerCase() ?? "?";

export function CatalogPage({ teamId }: { teamId: string }) {
  const search = new URLSearchParams(useSearch());
  const q = search.get("q") ?? "";
  const [, navigate] = useLocation();
  const list = useQuery(CatalogService.method.listCatalogEntries, { teamId, search: q, pageSize: 100 });
  const isAdmin = useTeamRole(teamId) === TeamRole.ADMIN;
  return (
    <>
      <TeamHeader teamId={teamId} page="Catalog" />
      <div className="toolbar">
        <Field label="Search templates">
          <input type="search" defaultValue={q} placeholder="name, description or slug"
            onChange={(e) => navigate(`/teams/${teamId}/catalog${e.target.value ? `?q=${encodeURIComponent(e.target.value)}` : ""}`, { replace: true })} />
        </Field>
        {isAdmin && <Link className="button" href={`/teams/${teamId}/catalog/new`}>New team template</Link>}
      </div>
      {list.isPending ? (
        <Loading what="the catalog" />
      ) : list.error ? (
        <ErrorNote error={list.error} />
      ) : list.data.entries.length === 0 ? (
        <Empty>{q ? `Nothing matches "${q}".` : "The catalog is empty. A global admin adds global templates; team admins add the team's own or import a server.json."}</Empty>
      ) : (
        <ul className="tiles">
          {list.data.entries.map((e) => (
            <li key={e.id}>
              <Link href={`/teams/${teamId}/catalog/${e.id}`}>
                <strong>{e.spec?.name}</strong> <span className="muted">{e.slug} · {transportName(e.spec?.transport ?? 0)} · {e.teamId ? "team" : "global"}</span>
                <span className="desc">{e.spec?.description}</span>
              </Link>
            </li>
          ))}
        </ul>
      )}
    </>
  );
}

export function CatalogEntryPage({ teamId, entryId }: { teamId: string; entryId: string }) {
  const entry = useQuery(CatalogService.method.getCatalogEntry, { teamId, id: entryId });
  const isAdmin = useTeamRole(teamId) === TeamRole.ADMIN;
  const [editing, setEditing] = useState(false);
  const e = entry.data?.entry;
  return (
    <>
      <TeamHeader teamId={teamId} page="Catalog" />
      {entry.isPending ? (
        <Loading what="the template" />
      ) : entry.error ? (
        <ErrorNote error={entry.error} />
      ) : editing && e ? (
        <TemplateForm teamId={teamId} entry={e} onDone={() => setEditing(false)} />
      ) : (
        <Section
          title={`${e?.spec?.name} (${e?.slug})`}
          actions={
            <span>
              {isAdmin && <Link className="button" href={`/teams/${teamId}/install/${entryId}`}>Install</Link>}{" "}
              {isAdmin && e?.teamId && <button className="secondary" onClick={() => setEditing(true)}>Edit</button>}
            </span>
          }
        >
          <p>{e?.spec?.description || <span className="muted">No description.</span>}</p>
          <dl>
            <dt>Scope</dt><dd>{e?.teamId ? "this team's own template" : "global template"}</dd>
            <dt>Transport</dt><dd>{transportName(e?.spec?.transport ?? 0)}</dd>
            {e?.spec?.command && (<><dt>Command</dt><dd><code>{[e.spec.command, ...e.spec.args].join(" ")}</code></dd></>)}
            {e?.spec?.url && (<><dt>URL</dt><dd><code>{e.spec.url}</code></dd></>)}
            <dt>Tags</dt><dd>{e?.spec?.tags.join(", ") || "—"}</dd>
            <dt>Updated</dt><dd><When at={e?.updatedAt} /></dd>
          </dl>
          <h3>Configuration</h3>
          <SchemaTable spec={e?.spec} />
          {!isAdmin && <p className="muted">Team admins install templates for the team.</p>}
        </Section>
      )}
    </>
  );
}

function SchemaTable({ spec }: { spec?: CatalogEntrySpec }) {
  const s = spec?.configSchema;
  const rows = s ? [...s.args.map((f) => ["argument", f] as const), ...s.env.map((f) => ["env", f] as const),
    ...s.headers.map((f) => ["header", f] as const), ...s.queryParams.map((f) => ["query", f] as const)] : [];
  if (rows.length === 0) return <p className="muted">Nothing to configure.</p>;
  return (
    <table>
      <thead><tr><th>Field</th><th>Kind</th><th>Set by</th><th>Required</th><th>Secret</th><th>Description</th></tr></thead>
      <tbody>
        {rows.map(([kind, f]) => (
          <tr key={kind + f.name}>
            <td><code>{f.name}</code></td><td>{kind}</td><td>{f.scope === 2 ? "each member" : "team"}</td>
            <td>{f.required ? "yes" : ""}</td><td>{f.secret ? "yes" : ""}</td><td>{f.description}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

export function NewTemplatePage({ teamId }: { teamId: string }) {
  return (
    <>
      <TeamHeader teamId={teamId} page="Catalog" />
      <TemplateForm teamId={teamId} />
      <ImportServerJson teamId={teamId} />
    </>
  );
}

const lines = (s: string) => s.split("\n").map((l) => l.trim()).filter(Boolean);

// TemplateForm creates or edits a team template. The configuration schema is edited as its JSON form,
// which the generated code parses and the server validates.
function TemplateForm({ teamId, entry, onDone }: { teamId: string; entry?: CatalogEntry; onDone?: () => void }) {
  const spec = entry?.spec;
  const [slug, setSlug] = useState(entry?.slug ?? "");
  const [name, setName] = useState(spec?.name ?? "");
  const [description, setDescription] = useState(spec?.description ?? "");
  const [tags, setTags] = useState(spec?.tags.join(", ") ?? "");
  const [transport, setTransport] = useState(spec?.transport ?? Transport.STDIO);
  const [command, setCommand] = useState(spec?.command ?? "");
  const [args, setArgs] = useState(spec?.args.join("\n") ?? "");
  const [url, setUrl] = useState(spec?.url ?? "");
  const [schema, setSchema] = useState(spec?.configSchema ? toJsonString(ConfigSchemaSchema, spec.configSchema, { prettySpaces: 2 }) : "{}");
  const [schemaError, setSchemaError] = useState("");
  const client = useQueryClient();
  const [, navigate] = useLocation();
  const done = async (id: string) => {
    await client.invalidateQueries();
    if (onDone) onDone();
    else navigate(`/teams/${teamId}/catalog/${id}`);
  };
  const createEntry = useMutation(CatalogService.method.createCatalogEntry, { onSuccess: (r) => done(r.entry!.id) });
  const updateEntry = useMutation(CatalogService.method.updateCatalogEntry, { onSuccess: (r) => done(r.entry!.id) });
  const pending = createEntry.isPending || updateEntry.isPending;
  return (
    <Section title={entry ? `Edit ${entry.slug}` : "New team template"}>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          let configSchema;
          try {
            configSchema = fromJsonString(ConfigSchemaSchema, schema || "{}");
            setSchemaError("");
          } catch (err) {
            setSchemaError(String(err));
            return;
          }
          const next = create(CatalogEntrySpecSchema, {
            sandbox: spec?.sandbox, env: spec?.env, headers: spec?.headers, queryParams: spec?.queryParams, name, description, transport, configSchema,
            tags: tags.split(",").map((t) => t.trim()).filter(Boolean),
            command: transport === Transport.STDIO ? command : "", args: transport === Transport.STDIO ? lines(args) : [],
            url: transport === Transport.STDIO ? "" : url,
          });
          if (entry) updateEntry.mutate({ teamId, id: entry.id, spec: next });
          else createEntry.mutate({ teamId, slug, spec: next });
        }}
      >
        {!entry && (
          <Field label="Slug" hint="Names the server in instance ids and prefixes its tools.">
            <input required pattern="[a-z0-9][a-z0-9_\-]*" maxLength={63} value={slug} onChange={(e) => setSlug(e.target.value)} />
          </Field>
        )}
        <Field label="Name"><input required maxLength={200} value={name} onChange={(e) => setName(e.target.value)} /></Field>
        <Field label="Description"><textarea rows={2} value={description} onChange={(e) => setDescription(e.target.value)} /></Field>
        <Field label="Tags" hint="Comma separated."><input value={tags} onChange={(e) => setTags(e.target.value)} /></Field>
        <Field label="Transport">
          <select value={transport} onChange={(e) => setTransport(Number(e.target.value))}>
            <option value={Transport.STDIO}>stdio (runs in a sandbox)</option>
            <option value={Transport.HTTP}>Streamable HTTP (remote)</option>
            <option value={Transport.SSE}>HTTP+SSE (remote, legacy)</option>
          </select>
        </Field>
        {transport === Transport.STDIO ? (
          <>
            <Field label="Command"><input required value={command} onChange={(e) => setCommand(e.target.value)} /></Field>
            <Field label="Arguments" hint="One per line."><textarea rows={3} value={args} onChange={(e) => setArgs(e.target.value)} /></Field>
          </>
        ) : (
          <Field label="URL"><input type="url" required value={url} onChange={(e) => setUrl(e.target.value)} /></Field>
        )}
        <Field label="Configuration schema (JSON)" hint='For example {"env":[{"name":"API_KEY","scope":"CONFIG_SCOPE_TEAM","required":true,"secret":true}]}'>
          <textarea rows={6} className="mono" value={schema} onChange={(e) => setSchema(e.target.value)} />
        </Field>
        {schemaError && <div className="error" role="alert">The schema is not valid: {schemaError}</div>}
        <ErrorNote error={createEntry.error ?? updateEntry.error} />
        <Busy pending={pending}>{entry ? "Save template" : "Create template"}</Busy>{" "}
        {onDone && <button type="button" className="secondary" onClick={onDone}>Cancel</button>}
      </form>
    </Section>
  );
}

function ImportServerJson({ teamId }: { teamId: string }) {
  const [doc, setDoc] = useState("");
  const [slug, setSlug] = useState("");
  const [userFields, setUserFields] = useState("");
  const [preferRemote, setPreferRemote] = useState(false);
  const client = useQueryClient();
  const [, navigate] = useLocation();
  const imp = useMutation(CatalogService.method.importServerJson, {
    onSuccess: async (r) => {
      await client.invalidateQueries();
      navigate(`/teams/${teamId}/catalog/${r.entry!.id}`);
    },
  });
  return (
    <Section title="Import a server.json">
      <p className="muted">Paste or upload a server.json from the MCP registry; nothing is fetched from the network.</p>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          imp.mutate({ teamId, serverJson: doc, slug, userFields: userFields.split(",").map((f) => f.trim()).filter(Boolean), preferRemote });
        }}
      >
        <Field label="Upload a file">
          <input type="file" accept=".json,application/json" onChange={(e) => void e.target.files?.[0]?.text().then(setDoc)} />
        </Field>
        <Field label="server.json"><textarea rows={8} className="mono" required value={doc} onChange={(e) => setDoc(e.target.value)} /></Field>
        <Field label="Slug" hint="Optional; derived from the server's name when empty.">
          <input pattern="[a-z0-9][a-z0-9_\-]*" maxLength={63} value={slug} onChange={(e) => setSlug(e.target.value)} />
        </Field>
        <Field label="Fields each member sets" hint="Comma-separated names of env variables, headers or arguments; the rest are set by the team.">
          <input value={userFields} onChange={(e) => setUserFields(e.target.value)} />
        </Field>
        <label className="check"><input type="checkbox" checked={preferRemote} onChange={(e) => setPreferRemote(e.target.checked)} /> Prefer the remote endpoint over a package</label>
        <ErrorNote error={imp.error} />
        <Busy pending={imp.isPending}>Import</Busy>
      </form>
    </Section>
  );
}
