import { Code } from "@connectrpc/connect";
import { useMutation } from "@connectrpc/connect-query";
import { useQueryClient } from "@tanstack/react-query";
import { lazy, Suspense, type ComponentType } from "react";
import { Link, Redirect, Route, Switch, useLocation } from "wouter";
import { isCode } from "./api";
import { AccountService, GlobalRole } from "./gen/orrery/api/v1/account_pb";
import { SignInPage } from "./pages/signin";
import { SessionContext, useCurrentUser } from "./session";
import { ErrorNote, Loading } from "./ui";

// Pages load on first visit, so the sign-in page ships only what it needs.
function page<M, K extends keyof M>(load: () => Promise<M>, name: K) {
  return lazy(async () => ({ default: (await load())[name] as ComponentType<any> }));
}
const AccountPage = page(() => import("./pages/account"), "AccountPage");
const AdminPage = page(() => import("./pages/admin"), "AdminPage");
const CatalogPage = page(() => import("./pages/catalog"), "CatalogPage");
const CatalogEntryPage = page(() => import("./pages/catalog"), "CatalogEntryPage");
const NewTemplatePage = page(() => import("./pages/catalog"), "NewTemplatePage");
const ConnectPage = page(() => import("./pages/connect"), "ConnectPage");
const InstallationsPage = page(() => import("./pages/installations"), "InstallationsPage");
const InstallationPage = page(() => import("./pages/installations"), "InstallationPage");
const InstallPage = page(() => import("./pages/installations"), "InstallPage");
const InvitationsPage = page(() => import("./pages/teams"), "InvitationsPage");
const TeamPage = page(() => import("./pages/teams"), "TeamPage");
const TeamsPage = page(() => import("./pages/teams"), "TeamsPage");
const UsagePage = page(() => import("./pages/usage"), "UsagePage");

export function App() {
  const me = useCurrentUser();
  const [location] = useLocation();
  if (me.isPending) return <Loading what="your session" />;
  if (me.error) {
    if (isCode(me.error, Code.Unauthenticated)) return <SignInPage returnTo={location} />;
    return (
      <main className="solo">
        <ErrorNote error={me.error} title="The console cannot reach the control plane" />
        <button onClick={() => void me.refetch()}>Retry</button>
      </main>
    );
  }
  return (
    <SessionContext.Provider value={me.data}>
      <Shell />
    </SessionContext.Provider>
  );
}

function Shell() {
  const me = useCurrentUser().data!;
  const admin = me.user?.globalRole === GlobalRole.ADMIN;
  const client = useQueryClient();
  const [, navigate] = useLocation();
  const logout = useMutation(AccountService.method.logout, {
    onSuccess: () => {
      client.clear();
      navigate("/");
      void client.invalidateQueries();
    },
  });
  return (
    <div className="shell">
      <a className="skip" href="#main">Skip to content</a>
      <header className="top">
        <Link href="/teams" className="brand">Orrery</Link>
        <nav aria-label="Main">
          <Link href="/teams">Teams</Link>
          <Link href="/invitations">Invitations</Link>
          <Link href="/account">Account</Link>
          {admin && <Link href="/admin/satellites">Admin</Link>}
        </nav>
        <span className="who">{me.user?.email}</span>
        <button className="link" onClick={() => logout.mutate({})} disabled={logout.isPending}>
          Sign out
        </button>
      </header>
      <main id="main">
        <ErrorNote error={logout.error} />
        <Suspense fallback={<Loading what="the page" />}>
        <Switch>
          <Route path="/"><Redirect to="/teams" /></Route>
          <Route path="/signin"><Redirect to="/teams" /></Route>
          <Route path="/account" component={AccountPage} />
          <Route path="/invitations" component={InvitationsPage} />
          <Route path="/teams" component={TeamsPage} />
          <Route path="/teams/:teamId">{(p) => <TeamPage teamId={p.teamId} />}</Route>
          <Route path="/teams/:teamId/catalog">{(p) => <CatalogPage teamId={p.teamId} />}</Route>
          <Route path="/teams/:teamId/catalog/new">{(p) => <NewTemplatePage teamId={p.teamId} />}</Route>
          <Route path="/teams/:teamId/catalog/:entryId">{(p) => <CatalogEntryPage teamId={p.teamId} entryId={p.entryId} />}</Route>
          <Route path="/teams/:teamId/install/:entryId">{(p) => <InstallPage teamId={p.teamId} entryId={p.entryId} />}</Route>
          <Route path="/teams/:teamId/installations">{(p) => <InstallationsPage teamId={p.teamId} />}</Route>
          <Route path="/teams/:teamId/installations/:id">{(p) => <InstallationPage teamId={p.teamId} id={p.id} />}</Route>
          <Route path="/teams/:teamId/connect">{(p) => <ConnectPage teamId={p.teamId} />}</Route>
          <Route path="/teams/:teamId/usage">{(p) => <UsagePage teamId={p.teamId} />}</Route>
          <Route path="/admin/:tab">{(p) => <AdminPage tab={p.tab} />}</Route>
          <Route>
            <h1>Not found</h1>
            <p>There is no page here. <Link href="/teams">Go to your teams</Link>.</p>
          </Route>
        </Switch>
        </Suspense>
      </main>
    </div>
  );
}
