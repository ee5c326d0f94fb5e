package server_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"
	"golang.org/x/oauth2"

	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	"github.com/orrery/orrery/gen/orrery/api/v1/apiv1connect"
	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/internal/oauthtest"
	"github.com/orrery/orrery/services/controlplane/internal/remoteauth"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// upstream is a remote MCP server protected by OAuth: the control plane's own authorization server plays
// its authorization server, and the server is team red's endpoint on the fixture's satellite, so its
// tokens are the ones the authorization server issues for that endpoint. Its one tool, whoami, answers
// with the user id of the token it was called with.
type upstream struct {
	url string // the MCP endpoint, also the resource
}

func startUpstream(t *testing.T, f *oauthFixture) *upstream {
	t.Helper()
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	u := &upstream{url: srv.URL + "/teams/red/mcp"}
	// The fixture's satellite now publishes this server's origin, so red's endpoint there is a resource the
	// authorization server issues tokens for.
	f.sat.heartbeat(t, srv.URL)

	server := mcp.NewServer(&mcp.Implementation{Name: "upstream", Version: "1"}, nil)
	mcp.AddTool(server, &mcp.Tool{Name: "whoami", Description: "the caller's user id"},
		func(_ context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: req.Extra.TokenInfo.UserID}}}, nil, nil
		})
	verify := func(ctx context.Context, token string, _ *http.Request) (*auth.TokenInfo, error) {
		resp, err := f.sat.client.IntrospectToken(ctx, connect.NewRequest(&satellitev1.IntrospectTokenRequest{Token: token}))
		if err != nil {
			return nil, err
		}
		got := resp.Msg
		if !got.Active || got.Audience != u.url {
			return nil, auth.ErrInvalidToken
		}
		return &auth.TokenInfo{Scopes: got.Scopes, Expiration: got.ExpiresAt.AsTime(), UserID: got.UserId}, nil
	}
	metadataPath := "/.well-known/oauth-protected-resource/teams/red/mcp"
	mux.Handle("/teams/red/mcp", auth.RequireBearerToken(verify, &auth.RequireBearerTokenOptions{ResourceMetadataURL: srv.URL + metadataPath})(
		mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, nil)))
	mux.Handle(metadataPath, auth.ProtectedResourceMetadataHandler(&oauthex.ProtectedResourceMetadata{
		Resource: u.url, AuthorizationServers: []string{f.b.issuer()}, ScopesSupported: []string{"mcp:read", "mcp:tools:execute"},
	}))
	return u
}

// whoami calls the upstream's whoami tool with headers, as a satellite would with an instance's headers.
func (u *upstream) whoami(ctx context.Context, headers map[string]string) (string, error) {
	client := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "1"}, nil)
	session, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: u.url,
		HTTPClient: &http.Client{Transport: headerTransport(headers)}}, nil)
	if err != nil {
		return "", err
	}
	defer session.Close()
	res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "whoami"})
	if err != nil {
		return "", err
	}
	return res.Content[0].(*mcp.TextContent).Text, nil
}

type headerTransport map[string]string

func (h headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	for k, v := range h {
		r.Header.Set(k, v)
	}
	return testClient.Transport.RoundTrip(r)
}

// instanceHeaders are the headers the satellite's configuration gives the instance of installationID for
// userID, and whether there is such an instance.
func instanceHeaders(t *testing.T, s *satellite, installationID, userID string) (map[string]string, bool) {
	t.Helper()
	for _, inst := range getConfiguration(t, s, "").Instances {
		if inst.InstallationId == installationID && inst.UserId == userID {
			return inst.Headers, true
		}
	}
	return nil, false
}

// TestRemoteAccountPerUserOAuth has a member connect their own account at a remote MCP server protected
// by OAuth: the control plane discovers the server's authorization server, registers, runs the code flow
// with PKCE and the resource, and delivers the member's token in their instance's configuration alone. The
// token works at the server as that member; it is refreshed before it expires; a refused refresh stops its
// delivery; disconnecting removes it everywhere. Another member of the team, a member of another team and
// another browser never get it.
func TestRemoteAccountPerUserOAuth(t *testing.T) {
	t.Parallel()
	// The upstream runs on loopback, which only AllowPrivate lets the control plane reach.
	f := setupOAuth(t, setupOpts{remoteAccounts: remoteauth.Config{AllowPrivate: true}})
	ctx := t.Context()
	st := f.b.store()
	up := startUpstream(t, f)

	// Ada's team green installs the remote server; Cy is another member of green, Bo installs it in blue.
	green, err := st.CreateOwnedTeam(ctx, "green", "Green", f.user.user.ID)
	if err != nil {
		t.Fatal(err)
	}
	cy := newCaller(t, st, "cy@green.test", store.RoleGlobalUser)
	if err := st.AddMember(ctx, green.ID, cy.user.ID, store.RoleTeamUser); err != nil {
		t.Fatal(err)
	}
	ada := f.b.clientsFor(0, f.user.user, f.user.token)
	entry := of(ada.catalog.CreateCatalogEntry(ctx, connect.NewRequest(&apiv1.CreateCatalogEntryRequest{
		TeamId: green.ID.String(), Slug: "upstream", Spec: &apiv1.CatalogEntrySpec{
			Name: "Upstream", Transport: apiv1.Transport_TRANSPORT_HTTP, Url: up.url, PerUserAuthorization: true,
		},
	}))).must(t, "create template").Msg.Entry
	installation := of(ada.installs.CreateInstallation(ctx, connect.NewRequest(&apiv1.CreateInstallationRequest{
		TeamId: green.ID.String(), CatalogEntryId: entry.Id, Spec: &apiv1.InstallationSpec{Name: "upstream"},
	}))).must(t, "install").Msg.Installation
	remote := func(token string) apiv1connect.RemoteAccountServiceClient {
		return apiv1connect.NewRemoteAccountServiceClient(testClient, f.b.replicas[0].url, connect.WithInterceptors(withBearer(token)))
	}
	greenInstallation := &apiv1.ConnectRemoteAccountRequest{TeamId: green.ID.String(), InstallationId: installation.Id}

	// Before connecting, Ada's instance carries no credential, and the server refuses it.
	if h, ok := instanceHeaders(t, f.sat, installation.Id, f.user.user.ID.String()); !ok || h["Authorization"] != "" {
		t.Fatalf("Ada's instance before connecting: %v %v", ok, h)
	}
	if _, err := up.whoami(ctx, nil); err == nil {
		t.Fatal("the upstream answered without a token")
	}
	link := instanceOf(t, f.sat, f.user.user.ID, installation.Id).ConnectAccountUrl
	if !strings.HasPrefix(link, f.b.oauthURL(remoteauth.ConnectPath)+"?") {
		t.Fatalf("Ada's instance before connecting: connect link %q", link)
	}
	// The link starts the flow only in a browser signed in as a member of the team.
	if p := get(t, oauthtest.NewBrowser(), link); p.Status != http.StatusUnauthorized {
		t.Fatalf("connect link without signing in: %d %s", p.Status, p.Body)
	}

	// Someone else's browser cannot finish Ada's authorization: the callback wants Ada signed in.
	started := of(remote(f.user.token).ConnectRemoteAccount(ctx, connect.NewRequest(greenInstallation))).must(t, "connect").Msg
	if !strings.Contains(started.AuthorizationUrl, "resource=") || !strings.Contains(started.AuthorizationUrl, "code_challenge_method=S256") {
		t.Fatalf("authorization URL %s: want a resource and PKCE", started.AuthorizationUrl)
	}
	q, err := oauthtest.NewBrowser().Authorize(ctx, started.AuthorizationUrl, f.user.user.Email, testPassword)
	if err != nil {
		t.Fatal(err)
	}
	if p := get(t, oauthtest.NewBrowser(), f.b.oauthURL(remoteauth.CallbackPath)+"?"+q.Encode()); p.Status != http.StatusForbidden {
		t.Fatalf("callback in a browser not signed in: %d %s", p.Status, p.Body)
	}

	// Ada connects in her own browser, through the link.
	br := oauthtest.NewBrowser()
	signIn(t, br, authorizeURL(f.config(f.clientID, f.redirect), oauth2.GenerateVerifier(), up.url), f.user.user.Email)
	p := get(t, br, link)
	if p.Status != http.StatusFound || !strings.HasPrefix(p.Location, f.b.oauthURL("/oauth/authorize?")) {
		t.Fatalf("connect link signed in: %d %s, want the redirect to the authorization server", p.Status, p.Location)
	}
	// Signed in, and her consent to the control plane as a client is remembered: straight back.
	q = redirectQuery(t, get(t, br, p.Location))
	callback := f.b.oauthURL(remoteauth.CallbackPath) + "?" + q.Encode()
	if p := get(t, br, callback); p.Status != http.StatusOK || !strings.Contains(p.Body, "connected") {
		t.Fatalf("callback: %d %s", p.Status, p.Body)
	}
	if p := get(t, br, callback); p.Status != http.StatusBadRequest {
		t.Fatalf("the same answer again: %d, want 400", p.Status)
	}
	status := of(remote(f.user.token).GetRemoteAccount(ctx, connect.NewRequest(&apiv1.GetRemoteAccountRequest{
		TeamId: green.ID.String(), InstallationId: installation.Id,
	}))).must(t, "get remote account").Msg
	if !status.Connected || status.AuthorizationServer != f.b.issuer() {
		t.Fatalf("Ada's account: %v", status)
	}

	// Only Ada's instance carries her token, and it works at the server as Ada.
	headers, _ := instanceHeaders(t, f.sat, installation.Id, f.user.user.ID.String())
	if !strings.HasPrefix(headers["Authorization"], "Bearer ") {
		t.Fatalf("Ada's instance headers: %v", headers)
	}
	if who, err := up.whoami(ctx, headers); err != nil || who != f.user.user.ID.String() {
		t.Fatalf("whoami with Ada's instance headers: %q %v", who, err)
	}
	if h, ok := instanceHeaders(t, f.sat, installation.Id, cy.user.ID.String()); !ok || h["Authorization"] != "" {
		t.Fatalf("Cy's instance: %v %v, want no credential", ok, h)
	}
	if got := instanceOf(t, f.sat, cy.user.ID, installation.Id).ConnectAccountUrl; got != link {
		t.Fatalf("Cy's instance: connect link %q, want %q", got, link)
	}
	if got := instanceOf(t, f.sat, f.user.user.ID, installation.Id).ConnectAccountUrl; got != "" {
		t.Fatalf("Ada's connected instance still has a connect link %q", got)
	}
	if _, err := remote(cy.token).GetRemoteAccount(ctx, connect.NewRequest(&apiv1.GetRemoteAccountRequest{
		TeamId: green.ID.String(), InstallationId: installation.Id,
	})); err != nil {
		t.Fatal(err)
	}
	accounts := func() map[string]apiv1.RemoteAccountState {
		t.Helper()
		resp := of(remote(f.user.token).ListRemoteAccounts(ctx, connect.NewRequest(&apiv1.ListRemoteAccountsRequest{
			TeamId: green.ID.String(), InstallationId: installation.Id,
		}))).must(t, "list remote accounts").Msg
		if !resp.PerUserAuthorization {
			t.Fatalf("list remote accounts: %v, want the template's per-user authorization", resp)
		}
		out := map[string]apiv1.RemoteAccountState{}
		for _, a := range resp.Accounts {
			out[a.Email] = a.State
		}
		return out
	}
	if got := accounts(); got[f.user.user.Email] != apiv1.RemoteAccountState_REMOTE_ACCOUNT_STATE_CONNECTED ||
		got[cy.user.Email] != apiv1.RemoteAccountState_REMOTE_ACCOUNT_STATE_NOT_CONNECTED || len(got) != 2 {
		t.Fatalf("green's accounts: %v, want Ada connected and Cy yet to connect", got)
	}
	if _, err := remote(cy.token).ListRemoteAccounts(ctx, connect.NewRequest(&apiv1.ListRemoteAccountsRequest{
		TeamId: green.ID.String(), InstallationId: installation.Id,
	})); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("a team user lists the team's accounts: %v, want PermissionDenied", err)
	}
	for _, inst := range getConfiguration(t, f.sat, "").Instances {
		if inst.UserId != f.user.user.ID.String() && strings.Contains(inst.Headers["Authorization"], strings.TrimPrefix(headers["Authorization"], "Bearer ")) {
			t.Fatalf("instance %s of another member carries Ada's token", inst.Id)
		}
	}
	// Bo, of team blue, cannot start or read anything about green's installation.
	bo := newCaller(t, st, "bo2@blue.test", store.RoleGlobalUser)
	if _, err := remote(bo.token).ConnectRemoteAccount(ctx, connect.NewRequest(greenInstallation)); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("an outsider connects to green's installation: %v, want PermissionDenied", err)
	}
	// Cy cannot connect through an installation id of another team either.
	if _, err := remote(cy.token).ConnectRemoteAccount(ctx, connect.NewRequest(&apiv1.ConnectRemoteAccountRequest{
		TeamId: green.ID.String(), InstallationId: "00000000-0000-4000-8000-000000000000",
	})); connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("an unknown installation: %v, want NotFound", err)
	}

	// The token is refreshed before it expires: an hour later it is due, and a new one is delivered.
	f.clock.advance(time.Hour)
	connector, err := remoteauth.New(nil, st, remoteauth.Config{CallbackURL: f.b.oauthURL(remoteauth.CallbackPath),
		AllowPrivate: true, Now: f.clock.now})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := connector.RefreshDue(ctx); err != nil || n != 1 {
		t.Fatalf("refresh due: %d %v, want 1", n, err)
	}
	refreshed, _ := instanceHeaders(t, f.sat, installation.Id, f.user.user.ID.String())
	if refreshed["Authorization"] == headers["Authorization"] || refreshed["Authorization"] == "" {
		t.Fatalf("after refresh: %v, want a new token", refreshed)
	}
	if who, err := up.whoami(ctx, refreshed); err != nil || who != f.user.user.ID.String() {
		t.Fatalf("whoami with the refreshed token: %q %v", who, err)
	}

	// Ada withdraws her consent at the upstream: the next refresh is refused, delivery stops, and her
	// status says to connect again.
	if _, err := f.oauthService(f.user.token).WithdrawOAuthConsent(ctx, connect.NewRequest(&apiv1.WithdrawOAuthConsentRequest{
		ClientId: mustRemoteClientID(t, st, f.b.issuer()), ConsentTeamId: f.red.ID.String(),
	})); err != nil {
		t.Fatal(err)
	}
	f.clock.advance(time.Hour)
	if n, err := connector.RefreshDue(ctx); err != nil || n != 0 {
		t.Fatalf("refresh after consent withdrawn: %d %v", n, err)
	}
	if h, _ := instanceHeaders(t, f.sat, installation.Id, f.user.user.ID.String()); h["Authorization"] != "" {
		t.Fatalf("Ada's instance after a refused refresh: %v", h)
	}
	status = of(remote(f.user.token).GetRemoteAccount(ctx, connect.NewRequest(&apiv1.GetRemoteAccountRequest{
		TeamId: green.ID.String(), InstallationId: installation.Id,
	}))).must(t, "get remote account").Msg
	if status.Connected || !status.NeedsReconnect {
		t.Fatalf("Ada's account after a refused refresh: %v", status)
	}
	if got := accounts(); got[f.user.user.Email] != apiv1.RemoteAccountState_REMOTE_ACCOUNT_STATE_NEEDS_RECONNECT {
		t.Fatalf("green's accounts after a refused refresh: %v", got)
	}
	if got := instanceOf(t, f.sat, f.user.user.ID, installation.Id).ConnectAccountUrl; got != link {
		t.Fatalf("Ada's instance after a refused refresh: connect link %q, want %q", got, link)
	}
	// A signed-in person outside the team gets nothing from the link.
	outsider := oauthtest.NewBrowser()
	signIn(t, outsider, authorizeURL(f.config(f.clientID, f.redirect), oauth2.GenerateVerifier(),
		strings.TrimSuffix(up.url, "/red/mcp")+"/blue/mcp"), "bo@blue.test")
	if p := get(t, outsider, link); p.Status != http.StatusNotFound {
		t.Fatalf("connect link for someone outside the team: %d %s", p.Status, p.Body)
	}

	// Disconnecting forgets the connection.
	if _, err := remote(f.user.token).DisconnectRemoteAccount(ctx, connect.NewRequest(&apiv1.DisconnectRemoteAccountRequest{
		TeamId: green.ID.String(), InstallationId: installation.Id,
	})); err != nil {
		t.Fatal(err)
	}
	if _, err := st.RemoteOAuthConnection(ctx, green.ID, mustUUID(t, installation.Id), f.user.user.ID); err == nil {
		t.Fatal("the connection survived disconnecting")
	}
}

// mustRemoteClientID is the client id the control plane registered with the authorization server issuer.
func mustRemoteClientID(t *testing.T, st *store.Store, issuer string) string {
	t.Helper()
	c, err := st.RemoteOAuthClient(t.Context(), issuer)
	if err != nil {
		t.Fatal(err)
	}
	return c.ClientID
}

func mustUUID(t *testing.T, s string) uuid.UUID {
	t.Helper()
	id, err := uuid.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestPerUserAuthorizationIsForRemoteTemplates: a stdio template cannot ask members to connect accounts.
func TestPerUserAuthorizationIsForRemoteTemplates(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	p := seedProduct(t, b)
	_, err := p.root.catalog.CreateCatalogEntry(t.Context(), connect.NewRequest(&apiv1.CreateCatalogEntryRequest{
		Slug: "local", Spec: &apiv1.CatalogEntrySpec{
			Name: "Local", Transport: apiv1.Transport_TRANSPORT_STDIO, Command: "npx", PerUserAuthorization: true,
		},
	}))
	if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "remote") {
		t.Fatalf("a stdio template with per-user authorization: %v, want InvalidArgument", err)
	}
}

// TestConnectRemoteAccountRefusals: a stdio installation has no account to connect; a server on a loopback
// address is never reached (the control plane fetches what a tenant names, so by default only public
// addresses), and the refusal names no address.
func TestConnectRemoteAccountRefusals(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{}) // the production HTTP client: public addresses only
	p := seedProduct(t, b)
	ctx := t.Context()
	// A server on loopback: by default the control plane never even reaches it.
	var reached atomic.Int32
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		reached.Add(1)
		http.NotFound(w, nil)
	}))
	t.Cleanup(plain.Close)
	install := func(slug string, spec *apiv1.CatalogEntrySpec) string {
		t.Helper()
		entry := of(p.admin.catalog.CreateCatalogEntry(ctx, connect.NewRequest(&apiv1.CreateCatalogEntryRequest{
			TeamId: p.team.ID.String(), Slug: slug, Spec: spec,
		}))).must(t, "create template").Msg.Entry
		return of(p.admin.installs.CreateInstallation(ctx, connect.NewRequest(&apiv1.CreateInstallationRequest{
			TeamId: p.team.ID.String(), CatalogEntryId: entry.Id, Spec: &apiv1.InstallationSpec{Name: slug},
		}))).must(t, "install").Msg.Installation.Id
	}
	remote := apiv1connect.NewRemoteAccountServiceClient(testClient, b.replicas[0].url, connect.WithInterceptors(withBearer(p.member.token)))
	for _, c := range []struct {
		name, installation, mention string
	}{
		{"stdio", install("local", &apiv1.CatalogEntrySpec{Name: "Local", Transport: apiv1.Transport_TRANSPORT_STDIO, Command: "npx"}),
			"not a remote server"},
		{"loopback", install("internal", &apiv1.CatalogEntrySpec{Name: "Internal", Transport: apiv1.Transport_TRANSPORT_HTTP,
			Url: plain.URL + "/mcp", PerUserAuthorization: true}), "does not offer OAuth"},
	} {
		_, err := remote.ConnectRemoteAccount(ctx, connect.NewRequest(&apiv1.ConnectRemoteAccountRequest{
			TeamId: p.team.ID.String(), InstallationId: c.installation,
		}))
		wantCode(t, c.name, err, connect.CodeFailedPrecondition, c.mention)
		if strings.Contains(err.Error(), "127.0.0.1") {
			t.Errorf("%s: the error names an address: %v", c.name, err)
		}
	}
	if n := reached.Load(); n != 0 {
		t.Errorf("the control plane sent %d requests to a loopback server a tenant named", n)
	}
	// A member of another team learns nothing about this team's installation.
	other := apiv1connect.NewRemoteAccountServiceClient(testClient, b.replicas[0].url, connect.WithInterceptors(withBearer(p.outsider.token)))
	_, err := other.GetRemoteAccount(ctx, connect.NewRequest(&apiv1.GetRemoteAccountRequest{
		TeamId: p.team.ID.String(), InstallationId: install("third", &apiv1.CatalogEntrySpec{Name: "Third",
			Transport: apiv1.Transport_TRANSPORT_HTTP, Url: "https://third.example.test/mcp"}),
	}))
	wantCode(t, "another team's member", err, connect.CodePermissionDenied, "")
}
