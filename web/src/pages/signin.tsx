import { useMutation, useQuery } from "@connectrpc/connect-query";
import { useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import { useLocation } from "wouter";
import { SingleSignOnService } from "../gen/orrery/admin/v1/sso_pb";
import { AccountService } from "../gen/orrery/api/v1/account_pb";
import { Busy, ErrorNote, Field } from "../ui";

// SignInPage starts a browser session: the server answers with an HttpOnly cookie the console never sees.
export function SignInPage({ returnTo }: { returnTo: string }) {
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const client = useQueryClient();
  const [, navigate] = useLocation();
  // Identity providers a global admin configured; each signs in through the provider and comes back here.
  const providers = useQuery(SingleSignOnService.method.listSignInOptions, {});
  const target = returnTo === "/signin" ? "/teams" : returnTo;
  const login = useMutation(AccountService.method.login, {
    onSuccess: async () => {
      await client.invalidateQueries();
      navigate(target, { replace: true });
    },
  });
  return (
    <main className="solo" id="main">
      <h1>Sign in to Orrery</h1>
      <form
        className="card"
        onSubmit={(e) => {
          e.preventDefault();
          login.mutate({ email, password });
        }}
      >
        <Field label="Email">
          <input type="email" name="email" autoComplete="username" required value={email} autoFocus
            onChange={(e) => setEmail(e.target.value)} />
        </Field>
        <Field label="Password">
          <input type="password" name="password" autoComplete="current-password" required value={password}
            onChange={(e) => setPassword(e.target.value)} />
        </Field>
        <ErrorNote error={login.error} title="Sign-in failed" />
        <Busy pending={login.isPending}>Sign in</Busy>
        <p className="muted">No account? A global admin of this Orrery creates accounts.</p>
      </form>
      {(providers.data?.options.length ?? 0) > 0 && (
        <section className="card" aria-label="Sign in through your organisation">
          {providers.data?.options.map((o) => (
            <p key={o.startPath}>
              <a className="sso" href={`${o.startPath}?return=${encodeURIComponent(target)}`}>Sign in with {o.displayName}</a>
            </p>
          ))}
        </section>
      )}
    </main>
  );
}
