import { useMutation, useQuery } from "@connectrpc/connect-query";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import { AccountService } from "../gen/orrery/api/v1/account_pb";
import { useSession } from "../session";
import { Busy, CopyBox, Empty, ErrorNote, Field, Loading, Section, When } from "../ui";

export function AccountPage() {
  const me = useSession();
  return (
    <>
      <h1>Your account</h1>
      <p>
        Signed in as <strong>{me.user?.name || me.user?.email}</strong> ({me.user?.email}).
      </p>
      <ChangePassword />
      <ApiTokens />
    </>
  );
}

function ChangePassword() {
  const [current, setCurrent] = useState("");
  const [next, setNext] = useState("");
  const change = useMutation(AccountService.method.changePassword, {
    onSuccess: () => {
      setCurrent("");
      setNext("");
    },
  });
  return (
    <Section title="Change password">
      <form
        onSubmit={(e) => {
          e.preventDefault();
          change.mutate({ currentPassword: current, newPassword: next });
        }}
      >
        <Field label="Current password">
          <input type="password" autoComplete="current-password" required value={current}
            onChange={(e) => setCurrent(e.target.value)} />
        </Field>
        <Field label="New password" hint="At least 12 characters.">
          <input type="password" autoComplete="new-password" required minLength={12} value={next}
            onChange={(e) => setNext(e.target.value)} />
        </Field>
        <ErrorNote error={change.error} />
        {change.isSuccess && <p role="status" className="ok">Password changed.</p>}
        <Busy pending={change.isPending}>Change password</Busy>
      </form>
    </Section>
  );
}

function ApiTokens() {
  const client = useQueryClient();
  const list = useQuery(AccountService.method.listApiTokens, {});
  const [name, setName] = useState("");
  const [days, setDays] = useState(90);
  const create = useMutation(AccountService.method.createApiToken, {
    onSuccess: () => {
      setName("");
      void client.invalidateQueries();
    },
  });
  const revoke = useMutation(AccountService.method.revokeApiToken, {
    onSuccess: () => void client.invalidateQueries(),
  });
  return (
    <Section title="Personal API tokens">
      <p className="muted">For orreryctl, scripts and buf curl: send as "Authorization: Bearer …".</p>
      <form
        className="inline"
        onSubmit={(e) => {
          e.preventDefault();
          create.mutate({ name, ttl: durationFromMs(days * 86_400_000) });
        }}
      >
        <Field label="Token name">
          <input required maxLength={100} value={name} onChange={(e) => setName(e.target.value)} />
        </Field>
        <Field label="Valid for (days)">
          <input type="number" min={1} max={365} value={days} onChange={(e) => setDays(Number(e.target.value))} />
        </Field>
        <Busy pending={create.isPending}>Create token</Busy>
      </form>
      <ErrorNote error={create.error} />
      {create.data && (
        <div className="once" role="status">
          <p>Copy the token now: it is shown only once.</p>
          <CopyBox value={create.data.token} label="token" />
        </div>
      )}
      <ErrorNote error={revoke.error} />
      {list.isPending ? (
        <Loading what="tokens" />
      ) : list.error ? (
        <ErrorNote error={list.error} />
      ) : list.data.apiTokens.length === 0 ? (
        <Empty>No tokens yet. Create one above to use the API from a terminal.</Empty>
      ) : (
        <table>
          <thead>
            <tr><th>Name</th><th>Created</th><th>Expires</th><th>Last used</th><th /></tr>
          </thead>
          <tbody>
            {list.data.apiTokens.map((t) => (
              <tr key={t.id}>
                <td>{t.name}</td>
                <td><When at={t.createdAt} /></td>
                <td><When at={t.expiresAt} /></td>
                <td><When at={t.lastUsedAt} /></td>
                <td>
                  {t.revokedAt ? (
                    <span className="muted">revoked</span>
                  ) : (
                    <button className="danger" onClick={() => revoke.mutate({ id: t.id })}>Revoke</button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </Section>
  );
}
