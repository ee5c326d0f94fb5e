import { Code } from "@connectrpc/connect";
import { useMutation } from "@connectrpc/connect-query";
import { useQueryClient } from "@tanstack/react-query";
import { Link, Redirect, Route, Switch, useLocation } from "wouter";
import { isCode } from "./api";
import { AccountService, GlobalRole } from "./gen/orrery/api/v1/account_pb";
import { AccountPage } from "./pages/account";
import { AdminPage } from "./pages/admin";
import { CatalogEntryPage, CatalogPage, NewTemplatePage } from "./pages/catalog";
import { ConnectPage } from "./pages/connect";
import { InstallationPage, InstallationsPage, InstallPage } from "./pages/installations";
import { SignInPage } from "./pages/signin";
import { InvitationsPage, TeamPage, TeamsPage } from "./pages/teams";
import { SessionContext, useCurrentUser } from "./session";
import { ErrorNote, Loading } from "./ui";

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
          <Route path="/admin/:tab">{(p) => <AdminPage tab={p.tab} />}</Route>
          <Route>
            <h1>Not found</h1>
            <p>There is no page here. <Link href="/teams">Go to your teams</Link>.</p>
          </Route>
        </Switch>
      </main>
    </div>
  );
}
