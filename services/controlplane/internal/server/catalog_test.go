package server_test

import (
	"bytes"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	"github.com/orrery/orrery/gen/orrery/api/v1/apiv1connect"
	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/services/controlplane/internal/bearer"
	"github.com/orrery/orrery/services/controlplane/internal/secrets"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// caller is a user with an API token and clients of the product API on one replica.
type caller struct {
	user     store.User
	token    string
	catalog  apiv1connect.CatalogServiceClient
	installs apiv1connect.InstallationServiceClient
	secrets  apiv1connect.SecretServiceClient
}

func (b *testBundle) caller(t *testing.T, email, globalRole string) *caller {
	t.Helper()
	user, _, err := b.store().CreateAccount(t.Context(), store.NewAccount{Email: email, Name: email, GlobalRole: globalRole})
	if err != nil {
		t.Fatal(err)
	}
	token := "test-token-" + uuid.NewString()
	if _, err := b.store().CreateAPIToken(t.Context(), bearer.Hash(token), user.ID, "test", nil); err != nil {
		t.Fatal(err)
	}
	return b.clientsFor(0, user, token)
}

func (b *testBundle) clientsFor(i int, user store.User, token string) *caller {
	opt := connect.WithInterceptors(withBearer(token))
	url := b.replicas[i].url
	return &caller{
		user: user, token: token,
		catalog:  apiv1connect.NewCatalogServiceClient(testClient, url, opt),
		installs: apiv1connect.NewInstallationServiceClient(testClient, url, opt),
		secrets:  apiv1connect.NewSecretServiceClient(testClient, url, opt),
	}
}

// product is a global admin, a team (acme) with an admin and a member, and another team (globex) with
// its admin.
type product struct {
	root, admin, member, outsider *caller
	team, other                   store.Team
}

func seedProduct(t *testing.T, b *testBundle) product {
	t.Helper()
	ctx := t.Context()
	var p product
	var err error
	p.root = b.caller(t, "root@example.test", store.RoleGlobalAdmin)
	p.admin = b.caller(t, "admin@acme.test", store.RoleGlobalUser)
	p.member = b.caller(t, "member@acme.test", store.RoleGlobalUser)
	p.outsider = b.caller(t, "admin@globex.test", store.RoleGlobalUser)
	if p.team, err = b.store().CreateOwnedTeam(ctx, "acme", "Acme", p.admin.user.ID); err != nil {
		t.Fatal(err)
	}
	if err := b.store().AddMember(ctx, p.team.ID, p.member.user.ID, store.RoleTeamUser); err != nil {
		t.Fatal(err)
	}
	if p.other, err = b.store().CreateOwnedTeam(ctx, "globex", "Globex", p.outsider.user.ID); err != nil {
		t.Fatal(err)
	}
	return p
}

func wantCode(t *testing.T, what string, err error, code connect.Code, mention string) {
	t.Helper()
	if connect.CodeOf(err) != code {
		t.Fatalf("%s: got %v, want %v", what, err, code)
	}
	if mention != "" && !strings.Contains(err.Error(), mention) {
		t.Fatalf("%s: error %q does not name %q", what, err, mention)
	}
}

// result is a call's result, so a test can require it succeeded in one expression.
type result[T any] struct {
	v   T
	err error
}

func of[T any](v T, err error) result[T] { return result[T]{v, err} }

func (r result[T]) must(t *testing.T, what string) T {
	t.Helper()
	if r.err != nil {
		t.Fatalf("%s: %v", what, r.err)
	}
	return r.v
}

func secretValue(v string) *apiv1.SettingValue { return &apiv1.SettingValue{Value: v, Secret: true} }
func plainValue(v string) *apiv1.SettingValue  { return &apiv1.SettingValue{Value: v} }

// transcript keeps every response of a test, so it can be searched for secrets.
type transcript struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (r *transcript) add(t *testing.T, m proto.Message) {
	t.Helper()
	raw, err := protojson.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf.Write(raw)
}

// syncBuffer is a log destination that handlers on several goroutines may write to.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

func TestCatalogCRUDSearchAndVisibility(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	p := seedProduct(t, b)
	ctx := t.Context()
	teamID := p.team.ID.String()

	global := of(p.root.catalog.CreateCatalogEntry(ctx, connect.NewRequest(&apiv1.CreateCatalogEntryRequest{
		Slug: "github",
		Spec: &apiv1.CatalogEntrySpec{
			Name: "GitHub", Description: "Issues and pull requests", Tags: []string{"vcs", "official"},
			Transport: apiv1.Transport_TRANSPORT_STDIO, Command: "npx", Args: []string{"-y", "@example/github-mcp"},
			Env: map[string]*apiv1.SettingValue{"SHARED_KEY": secretValue("template-secret-1")},
			ConfigSchema: &apiv1.ConfigSchema{Env: []*apiv1.ConfigField{{
				Name: "GITHUB_TOKEN", Scope: apiv1.ConfigScope_CONFIG_SCOPE_USER, Required: true, Secret: true,
			}}},
		},
	}))).must(t, "create global").Msg.Entry
	if v := global.Spec.Env["SHARED_KEY"]; v.Value != "" || !v.Secret || !v.Set {
		t.Fatalf("template secret in the response: %v", v)
	}
	if global.TeamId != "" || global.Spec.ConfigSchema.Env[0].Name != "GITHUB_TOKEN" {
		t.Fatalf("global entry %v", global)
	}
	weather := of(p.root.catalog.CreateCatalogEntry(ctx, connect.NewRequest(&apiv1.CreateCatalogEntryRequest{
		Slug: "weather", Spec: &apiv1.CatalogEntrySpec{
			Name: "Weather", Tags: []string{"data"}, Transport: apiv1.Transport_TRANSPORT_HTTP, Url: "https://weather.example.com/mcp",
		},
	}))).must(t, "create second global")
	// Admins installing at once cannot both take the same tool prefix.
	var wg sync.WaitGroup
	var mu sync.Mutex
	var installed int
	for range 4 {
		wg.Go(func() {
			_, err := p.admin.installs.CreateInstallation(ctx, connect.NewRequest(&apiv1.CreateInstallationRequest{
				TeamId: teamID, CatalogEntryId: weather.Msg.Entry.Id, Spec: &apiv1.InstallationSpec{Name: "weather"},
			}))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				installed++
			case connect.CodeOf(err) != connect.CodeInvalidArgument:
				t.Errorf("concurrent install: %v", err)
			}
		})
	}
	wg.Wait()
	if installed != 1 {
		t.Fatalf("%d concurrent installations took the prefix \"weather\", want 1", installed)
	}

	private := of(p.admin.catalog.CreateCatalogEntry(ctx, connect.NewRequest(&apiv1.CreateCatalogEntryRequest{
		TeamId: teamID, Slug: "acme-internal", Spec: &apiv1.CatalogEntrySpec{
			Name: "Acme internal", Transport: apiv1.Transport_TRANSPORT_SSE, Url: "https://mcp.acme.test/sse", Tags: []string{"vcs"},
		},
	}))).must(t, "create private").Msg.Entry

	// Who may write what.
	_, err := p.admin.catalog.CreateCatalogEntry(ctx, connect.NewRequest(&apiv1.CreateCatalogEntryRequest{
		Slug: "sneaky", Spec: &apiv1.CatalogEntrySpec{Name: "x", Transport: apiv1.Transport_TRANSPORT_HTTP, Url: "https://x.test"},
	}))
	wantCode(t, "team admin creating a global template", err, connect.CodePermissionDenied, "")
	_, err = p.member.catalog.CreateCatalogEntry(ctx, connect.NewRequest(&apiv1.CreateCatalogEntryRequest{
		TeamId: teamID, Slug: "sneaky", Spec: &apiv1.CatalogEntrySpec{Name: "x", Transport: apiv1.Transport_TRANSPORT_HTTP, Url: "https://x.test"},
	}))
	wantCode(t, "team user creating a template", err, connect.CodePermissionDenied, "")
	_, err = p.admin.catalog.UpdateCatalogEntry(ctx, connect.NewRequest(&apiv1.UpdateCatalogEntryRequest{
		TeamId: teamID, Id: global.Id, Spec: &apiv1.CatalogEntrySpec{Name: "x", Transport: apiv1.Transport_TRANSPORT_HTTP, Url: "https://x.test"},
	}))
	wantCode(t, "team admin updating a global template", err, connect.CodePermissionDenied, "global")
	_, err = p.root.catalog.CreateCatalogEntry(ctx, connect.NewRequest(&apiv1.CreateCatalogEntryRequest{
		Slug: "broken", Spec: &apiv1.CatalogEntrySpec{Name: "x", Transport: apiv1.Transport_TRANSPORT_STDIO},
	}))
	wantCode(t, "stdio template without a command", err, connect.CodeInvalidArgument, "command")

	// Who sees what.
	of(p.member.catalog.GetCatalogEntry(ctx, connect.NewRequest(&apiv1.GetCatalogEntryRequest{TeamId: teamID, Id: private.Id}))).must(t, "member gets private")
	_, err = p.outsider.catalog.GetCatalogEntry(ctx, connect.NewRequest(&apiv1.GetCatalogEntryRequest{TeamId: p.other.ID.String(), Id: private.Id}))
	wantCode(t, "other team getting a private template", err, connect.CodeNotFound, "")
	_, err = p.outsider.catalog.GetCatalogEntry(ctx, connect.NewRequest(&apiv1.GetCatalogEntryRequest{TeamId: teamID, Id: private.Id}))
	wantCode(t, "outsider naming acme", err, connect.CodePermissionDenied, "")
	_, err = p.outsider.catalog.UpdateCatalogEntry(ctx, connect.NewRequest(&apiv1.UpdateCatalogEntryRequest{
		TeamId: p.other.ID.String(), Id: private.Id, Spec: private.Spec,
	}))
	wantCode(t, "other team updating acme's private template", err, connect.CodeNotFound, "")
	_, err = p.outsider.catalog.DeleteCatalogEntry(ctx, connect.NewRequest(&apiv1.DeleteCatalogEntryRequest{TeamId: p.other.ID.String(), Id: private.Id}))
	wantCode(t, "other team deleting acme's private template", err, connect.CodeNotFound, "")
	_, err = p.outsider.installs.CreateInstallation(ctx, connect.NewRequest(&apiv1.CreateInstallationRequest{
		TeamId: p.other.ID.String(), CatalogEntryId: private.Id, Spec: &apiv1.InstallationSpec{Name: "stolen"},
	}))
	wantCode(t, "other team installing acme's private template", err, connect.CodeNotFound, "")
	slugs := func(c *caller, req *apiv1.ListCatalogEntriesRequest) string {
		t.Helper()
		resp := of(c.catalog.ListCatalogEntries(ctx, connect.NewRequest(req))).must(t, "list")
		var out []string
		for _, e := range resp.Msg.Entries {
			out = append(out, e.Slug)
		}
		return strings.Join(out, ",")
	}
	for _, tc := range []struct {
		name string
		who  *caller
		req  *apiv1.ListCatalogEntriesRequest
		want string
	}{
		{"signed in, global only", p.outsider, &apiv1.ListCatalogEntriesRequest{}, "github,weather"},
		{"other team", p.outsider, &apiv1.ListCatalogEntriesRequest{TeamId: p.other.ID.String()}, "github,weather"},
		{"team", p.member, &apiv1.ListCatalogEntriesRequest{TeamId: teamID}, "acme-internal,github,weather"},
		{"search description", p.member, &apiv1.ListCatalogEntriesRequest{TeamId: teamID, Search: "PULL"}, "github"},
		{"search is literal", p.member, &apiv1.ListCatalogEntriesRequest{TeamId: teamID, Search: "%"}, ""},
		{"tags", p.member, &apiv1.ListCatalogEntriesRequest{TeamId: teamID, Tags: []string{"vcs"}}, "acme-internal,github"},
		{"all tags", p.member, &apiv1.ListCatalogEntriesRequest{TeamId: teamID, Tags: []string{"vcs", "official"}}, "github"},
	} {
		if got := slugs(tc.who, tc.req); got != tc.want {
			t.Errorf("%s: listed %q, want %q", tc.name, got, tc.want)
		}
	}
	first := of(p.member.catalog.ListCatalogEntries(ctx, connect.NewRequest(&apiv1.ListCatalogEntriesRequest{TeamId: teamID, PageSize: 2}))).must(t, "page 1").Msg
	second := of(p.member.catalog.ListCatalogEntries(ctx, connect.NewRequest(&apiv1.ListCatalogEntriesRequest{
		TeamId: teamID, PageSize: 2, PageToken: first.NextPageToken,
	}))).must(t, "page 2").Msg
	if len(first.Entries) != 2 || len(second.Entries) != 1 || second.Entries[0].Slug != "weather" || second.NextPageToken != "" {
		t.Errorf("pages %v / %v", first.Entries, second.Entries)
	}

	// An update that resubmits the masked secret keeps it.
	spec := proto.CloneOf(global.Spec)
	spec.Description = "Issues, pull requests and reviews"
	updated := of(p.root.catalog.UpdateCatalogEntry(ctx, connect.NewRequest(&apiv1.UpdateCatalogEntryRequest{Id: global.Id, Spec: spec}))).must(t, "update").Msg.Entry
	if updated.Spec.Description != spec.Description || !updated.Spec.Env["SHARED_KEY"].Set {
		t.Errorf("updated %v", updated)
	}
	var sealed string
	if err := b.pool(t).QueryRow(ctx, "select env->'SHARED_KEY'->>'sealed' from catalog_entries where slug = 'github'").Scan(&sealed); err != nil {
		t.Fatal(err)
	}
	if plain, err := b.keyring.Open(sealed); err != nil || plain != "template-secret-1" {
		t.Errorf("kept secret opens to %q, %v", plain, err)
	}

	of(p.admin.catalog.DeleteCatalogEntry(ctx, connect.NewRequest(&apiv1.DeleteCatalogEntryRequest{TeamId: teamID, Id: private.Id}))).must(t, "delete private")
	_, err = p.member.catalog.GetCatalogEntry(ctx, connect.NewRequest(&apiv1.GetCatalogEntryRequest{TeamId: teamID, Id: private.Id}))
	wantCode(t, "get deleted", err, connect.CodeNotFound, "")

	doc, err := os.ReadFile("../serverjson/testdata/weather.server.json")
	if err != nil {
		t.Fatal(err)
	}
	imported := of(p.admin.catalog.ImportServerJson(ctx, connect.NewRequest(&apiv1.ImportServerJsonRequest{
		TeamId: teamID, ServerJson: string(doc), Slug: "acme-weather", UserFields: []string{"WEATHER_API_KEY"},
	}))).must(t, "import").Msg.Entry
	if imported.TeamId != teamID || imported.Spec.Command != "npx" || len(imported.Spec.ConfigSchema.Env) != 3 {
		t.Errorf("imported %v", imported)
	}
	_, err = p.admin.catalog.ImportServerJson(ctx, connect.NewRequest(&apiv1.ImportServerJsonRequest{TeamId: teamID, ServerJson: `{"name": "a/b"}`}))
	wantCode(t, "import of nothing runnable", err, connect.CodeInvalidArgument, "server_json")
}

// installationFixture is a template whose schema has team and user fields, secret and not.
func createTemplate(t *testing.T, p product) *apiv1.CatalogEntry {
	t.Helper()
	return of(p.root.catalog.CreateCatalogEntry(t.Context(), connect.NewRequest(&apiv1.CreateCatalogEntryRequest{
		Slug: "tracker", Spec: &apiv1.CatalogEntrySpec{
			Name: "Tracker", Transport: apiv1.Transport_TRANSPORT_STDIO, Command: "tracker-mcp",
			Env: map[string]*apiv1.SettingValue{"LOG_LEVEL": plainValue("info")},
			ConfigSchema: &apiv1.ConfigSchema{
				Args: []*apiv1.ConfigField{{Name: "root", Flag: "--root", Scope: apiv1.ConfigScope_CONFIG_SCOPE_TEAM}},
				Env: []*apiv1.ConfigField{
					{Name: "API_URL", Scope: apiv1.ConfigScope_CONFIG_SCOPE_TEAM, Required: true},
					{Name: "MAX_RESULTS", Scope: apiv1.ConfigScope_CONFIG_SCOPE_TEAM, Type: apiv1.ValueType_VALUE_TYPE_NUMBER},
					{Name: "TEAM_TOKEN", Scope: apiv1.ConfigScope_CONFIG_SCOPE_TEAM, Required: true, Secret: true},
					{Name: "WEBHOOK_SECRET", Scope: apiv1.ConfigScope_CONFIG_SCOPE_TEAM, Secret: true},
					{Name: "USER_TOKEN", Scope: apiv1.ConfigScope_CONFIG_SCOPE_USER, Required: true, Secret: true},
				},
			},
		},
	}))).must(t, "create template").Msg.Entry
}

// configureCommands polls a satellite and returns its configure commands' priorities by event.
func configureCommands(t *testing.T, sat *satellite) map[satellitev1.ConfigureEvent]satellitev1.CommandPriority {
	t.Helper()
	out := map[satellitev1.ConfigureEvent]satellitev1.CommandPriority{}
	for _, cmd := range sat.poll(t, 0) {
		if c := cmd.GetConfigure(); c != nil {
			out[c.GetEvent()] = cmd.Priority
		}
		if _, err := sat.client.ReportCommandResult(t.Context(), connect.NewRequest(&satellitev1.ReportCommandResultRequest{
			CommandId: cmd.Id, Result: satellitev1.CommandResult_COMMAND_RESULT_COMPLETED,
		})); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func instanceOf(t *testing.T, sat *satellite, userID uuid.UUID, installationID string) *satellitev1.Instance {
	t.Helper()
	for _, inst := range getConfiguration(t, sat, "").Instances {
		if inst.UserId == userID.String() && inst.InstallationId == installationID {
			return inst
		}
	}
	t.Fatalf("no instance of installation %s for user %s", installationID, userID)
	return nil
}

func TestInstallationLifecycle(t *testing.T) {
	t.Parallel()
	logs := new(syncBuffer)
	b := setup(t, setupOpts{logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	p := seedProduct(t, b)
	ctx := t.Context()
	teamID := p.team.ID.String()
	tmpl := createTemplate(t, p)
	sat := b.activeSatellite(t, teamID)
	seen := new(transcript)
	secrets := []string{"team-secret-1", "team-secret-2", "user-secret-1", "webhook-secret"}

	spec := &apiv1.InstallationSpec{
		Name:      "tracker",
		ArgValues: map[string]*apiv1.SettingValue{"root": plainValue("/srv/tracker")},
		Env: map[string]*apiv1.SettingValue{
			"API_URL": plainValue("https://tracker.acme.test"), "MAX_RESULTS": plainValue("many"),
			"TEAM_TOKEN":     plainValue("team-secret-1"), // the schema makes it secret whatever the request says
			"WEBHOOK_SECRET": secretValue("webhook-secret"),
		},
	}
	create := func(c *caller, s *apiv1.InstallationSpec) (*connect.Response[apiv1.CreateInstallationResponse], error) {
		return c.installs.CreateInstallation(ctx, connect.NewRequest(&apiv1.CreateInstallationRequest{TeamId: teamID, CatalogEntryId: tmpl.Id, Spec: s}))
	}
	_, err := create(p.admin, spec)
	wantCode(t, "wrong type", err, connect.CodeInvalidArgument, "env.MAX_RESULTS")
	spec.Env["MAX_RESULTS"] = plainValue("25")
	delete(spec.Env, "API_URL")
	_, err = create(p.admin, spec)
	wantCode(t, "missing required", err, connect.CodeInvalidArgument, "env.API_URL")
	spec.Env["API_URL"] = plainValue("https://tracker.acme.test")
	_, err = create(p.member, spec)
	wantCode(t, "team user creating", err, connect.CodePermissionDenied, "")
	if cmds := configureCommands(t, sat); len(cmds) != 0 {
		t.Fatalf("refused writes enqueued %v", cmds)
	}

	created := of(create(p.admin, spec)).must(t, "create").Msg.Installation
	seen.add(t, created)
	if v := created.Spec.Env["TEAM_TOKEN"]; v.Value != "" || !v.Secret || !v.Set {
		t.Fatalf("TEAM_TOKEN in the response: %v", v)
	}
	if created.EffectiveToolPrefix != "tracker" || !created.Spec.GetRequestLoggingEnabled() {
		t.Errorf("created %v", created)
	}
	if got := configureCommands(t, sat); got[store.EventInstallationCreated] != immediate {
		t.Errorf("after create: commands %v, want an immediate %s", got, store.EventInstallationCreated)
	}

	// Tool prefixes may not collide within the team.
	_, err = create(p.admin, spec)
	wantCode(t, "second installation with the same prefix", err, connect.CodeInvalidArgument, "tool_prefix")
	spec2 := proto.CloneOf(spec)
	spec2.ToolPrefix = proto.String("")
	spec2.Env["TEAM_TOKEN"] = secretValue("team-secret-2")
	spec2.ToolPrefix = proto.String("tracker__v2")
	_, err = create(p.admin, spec2)
	wantCode(t, "prefix continuing another past __", err, connect.CodeInvalidArgument, "tool_prefix")
	spec2.ToolPrefix = proto.String("")
	second := of(create(p.admin, spec2)).must(t, "create unprefixed").Msg.Installation
	seen.add(t, second)
	_, err = create(p.admin, spec2)
	wantCode(t, "two unprefixed installations", err, connect.CodeInvalidArgument, "tool_prefix")
	configureCommands(t, sat)

	// Reads: members see the installation, masked; another team's admin finds nothing.
	got := of(p.member.installs.GetInstallation(ctx, connect.NewRequest(&apiv1.GetInstallationRequest{TeamId: teamID, Id: created.Id}))).must(t, "member gets").Msg.Installation
	seen.add(t, got)
	list := of(p.member.installs.ListInstallations(ctx, connect.NewRequest(&apiv1.ListInstallationsRequest{TeamId: teamID}))).must(t, "member lists").Msg
	seen.add(t, list)
	if len(list.Installations) != 2 || list.Installations[0].Id != created.Id {
		t.Errorf("listed %v", list.Installations)
	}
	_, err = p.outsider.installs.GetInstallation(ctx, connect.NewRequest(&apiv1.GetInstallationRequest{TeamId: p.other.ID.String(), Id: created.Id}))
	wantCode(t, "other team's admin getting acme's installation", err, connect.CodeNotFound, "")
	_, err = p.outsider.installs.DeleteInstallation(ctx, connect.NewRequest(&apiv1.DeleteInstallationRequest{TeamId: p.other.ID.String(), Id: created.Id}))
	wantCode(t, "other team's admin deleting acme's installation", err, connect.CodeNotFound, "")
	_, err = p.outsider.installs.UpdateInstallation(ctx, connect.NewRequest(&apiv1.UpdateInstallationRequest{TeamId: p.other.ID.String(), Id: created.Id, Spec: spec}))
	wantCode(t, "other team's admin updating acme's installation", err, connect.CodeNotFound, "")

	// Team users read but do not write; rotation is the global admins'.
	_, err = p.member.installs.UpdateInstallation(ctx, connect.NewRequest(&apiv1.UpdateInstallationRequest{TeamId: teamID, Id: created.Id, Spec: got.Spec}))
	wantCode(t, "team user updating", err, connect.CodePermissionDenied, "")
	_, err = p.member.installs.DeleteInstallation(ctx, connect.NewRequest(&apiv1.DeleteInstallationRequest{TeamId: teamID, Id: created.Id}))
	wantCode(t, "team user deleting", err, connect.CodePermissionDenied, "")
	_, err = p.admin.secrets.RotateSecrets(ctx, connect.NewRequest(&apiv1.RotateSecretsRequest{}))
	wantCode(t, "team admin rotating", err, connect.CodePermissionDenied, "")
	_, err = p.root.installs.SetUserConfiguration(ctx, connect.NewRequest(&apiv1.SetUserConfigurationRequest{TeamId: teamID, InstallationId: created.Id}))
	wantCode(t, "global admin outside the team configuring", err, connect.CodeFailedPrecondition, "")

	// The member's own configuration.
	setUser := func(req *apiv1.SetUserConfigurationRequest) (*connect.Response[apiv1.SetUserConfigurationResponse], error) {
		req.TeamId, req.InstallationId = teamID, created.Id
		return p.member.installs.SetUserConfiguration(ctx, connect.NewRequest(req))
	}
	_, err = setUser(&apiv1.SetUserConfigurationRequest{Env: map[string]*apiv1.SettingValue{"TEAM_TOKEN": secretValue("mine")}})
	wantCode(t, "user setting a team field", err, connect.CodeInvalidArgument, "env.TEAM_TOKEN")
	_, err = setUser(&apiv1.SetUserConfigurationRequest{Env: map[string]*apiv1.SettingValue{"NODE_OPTIONS": plainValue("--require /tmp/x.js")}})
	wantCode(t, "user setting an undeclared name", err, connect.CodeInvalidArgument, "env.NODE_OPTIONS")
	_, err = setUser(&apiv1.SetUserConfigurationRequest{})
	wantCode(t, "user leaving a required field", err, connect.CodeInvalidArgument, "env.USER_TOKEN")
	uc := of(setUser(&apiv1.SetUserConfigurationRequest{Env: map[string]*apiv1.SettingValue{"USER_TOKEN": secretValue("user-secret-1")}})).must(t, "set user").Msg.Configuration
	seen.add(t, uc)
	if v := uc.Env["USER_TOKEN"]; v.Value != "" || !v.Set {
		t.Fatalf("USER_TOKEN in the response: %v", v)
	}
	// Resubmitting the masked form keeps the secret.
	of(setUser(&apiv1.SetUserConfigurationRequest{Env: map[string]*apiv1.SettingValue{"USER_TOKEN": secretValue("")}})).must(t, "resubmit user")
	mine := of(p.member.installs.GetUserConfiguration(ctx, connect.NewRequest(&apiv1.GetUserConfigurationRequest{TeamId: teamID, InstallationId: created.Id}))).must(t, "get user").Msg.Configuration
	seen.add(t, mine)
	if !mine.Env["USER_TOKEN"].Set || mine.UserId != p.member.user.ID.String() {
		t.Errorf("member's configuration %v", mine)
	}
	if got := configureCommands(t, sat); got[store.EventInstallationUpdated] != immediate {
		t.Errorf("after user configuration: commands %v, want an immediate update", got)
	}

	inst := instanceOf(t, sat, p.member.user.ID, created.Id)
	if inst.Env["TEAM_TOKEN"] != "team-secret-1" || inst.Env["USER_TOKEN"] != "user-secret-1" || inst.Env["LOG_LEVEL"] != "info" ||
		inst.Env["WEBHOOK_SECRET"] != "webhook-secret" {
		t.Errorf("member's instance env %v", inst.Env)
	}
	if strings.Join(inst.Args, " ") != "--root /srv/tracker" {
		t.Errorf("member's instance args %q", inst.Args)
	}

	// An update that resubmits the masked secret keeps it, and one it leaves out is removed; the
	// satellite sees the change.
	upd := proto.CloneOf(got.Spec)
	upd.Env["API_URL"] = plainValue("https://tracker2.acme.test")
	delete(upd.Env, "WEBHOOK_SECRET")
	upd.RequestLoggingEnabled = proto.Bool(false)
	updated := of(p.admin.installs.UpdateInstallation(ctx, connect.NewRequest(&apiv1.UpdateInstallationRequest{TeamId: teamID, Id: created.Id, Spec: upd}))).must(t, "update").Msg.Installation
	seen.add(t, updated)
	if got := configureCommands(t, sat); got[store.EventInstallationUpdated] != immediate {
		t.Errorf("after update: commands %v, want an immediate update", got)
	}
	inst = instanceOf(t, sat, p.member.user.ID, created.Id)
	if inst.Env["API_URL"] != "https://tracker2.acme.test" || inst.Env["TEAM_TOKEN"] != "team-secret-1" ||
		inst.Env["WEBHOOK_SECRET"] != "" || inst.RequestLoggingEnabled {
		t.Errorf("member's instance after update: env %v, request logging %v", inst.Env, inst.RequestLoggingEnabled)
	}

	// A change to the template reaches the teams that installed it.
	tmplSpec := proto.CloneOf(tmpl.Spec)
	tmplSpec.Env["LOG_LEVEL"] = plainValue("debug")
	of(p.root.catalog.UpdateCatalogEntry(ctx, connect.NewRequest(&apiv1.UpdateCatalogEntryRequest{Id: tmpl.Id, Spec: tmplSpec}))).must(t, "update template")
	if got := configureCommands(t, sat); got[store.EventInstallationUpdated] != immediate {
		t.Errorf("after a template update: commands %v, want an immediate update", got)
	}
	if env := instanceOf(t, sat, p.member.user.ID, created.Id).Env; env["LOG_LEVEL"] != "debug" {
		t.Errorf("member's instance after a template update: env %v", env)
	}
	_, err = p.root.catalog.DeleteCatalogEntry(ctx, connect.NewRequest(&apiv1.DeleteCatalogEntryRequest{Id: tmpl.Id}))
	wantCode(t, "deleting an installed template", err, connect.CodeFailedPrecondition, "installed")

	of(p.admin.installs.DeleteInstallation(ctx, connect.NewRequest(&apiv1.DeleteInstallationRequest{TeamId: teamID, Id: created.Id}))).must(t, "delete")
	if got := configureCommands(t, sat); got[store.EventInstallationDeleted] != high {
		t.Errorf("after delete: commands %v, want a high-priority %s", got, store.EventInstallationDeleted)
	}
	_, err = p.member.installs.GetInstallation(ctx, connect.NewRequest(&apiv1.GetInstallationRequest{TeamId: teamID, Id: created.Id}))
	wantCode(t, "get deleted", err, connect.CodeNotFound, "")

	// Secrets reach the satellite and nothing else: not responses, logs or the audit log.
	var audit string
	if err := b.pool(t).QueryRow(ctx, "select string_agg(action || ' ' || details::text, E'\n') from audit_events").Scan(&audit); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"installation.created", "installation.updated", "installation.deleted", "env.TEAM_TOKEN", "env.USER_TOKEN",
		`"secrets_removed": "env.WEBHOOK_SECRET"`,
	} {
		if !strings.Contains(audit, want) {
			t.Errorf("audit log lacks %q:\n%s", want, audit)
		}
	}
	if !strings.Contains(logs.String(), "permission denied") {
		t.Fatal("the replica's logs were not captured")
	}
	for _, secret := range secrets {
		for where, text := range map[string]string{"responses": seen.buf.String(), "logs": logs.String(), "audit log": audit} {
			if strings.Contains(text, secret) {
				t.Errorf("secret %q appears in the %s", secret, where)
			}
		}
	}
}

func TestSecretRotation(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	f := seedTeam(t, b, "rot")
	sat := b.activeSatellite(t, "")
	before := getConfiguration(t, sat, "")

	// Deploy the new key beside the old one, then rotate through a replica that seals with it.
	newSpec, err := secrets.NewKeySpec("test2")
	if err != nil {
		t.Fatal(err)
	}
	oldSpec := b.keySpec
	if b.keyring, err = secrets.ParseKeyring(newSpec + "," + oldSpec); err != nil {
		t.Fatal(err)
	}
	b.replicas = append(b.replicas, b.startReplica(t, setupOpts{}))
	root := b.clientsFor(1, store.User{}, adminToken)
	resp := of(root.secrets.RotateSecrets(t.Context(), connect.NewRequest(&apiv1.RotateSecretsRequest{}))).must(t, "rotate").Msg
	// seedTeam seals one secret in the installation and one in alice's configuration.
	if resp.KeyId != "test2" || resp.Rows != 2 || resp.Values != 2 {
		t.Fatalf("rotation %v: want 2 rows and values under test2", resp)
	}
	var stale int
	if err := b.pool(t).QueryRow(t.Context(), `
		select count(*) from (
			select env from installations union all select env from user_configurations union all select env from catalog_entries
		) s, jsonb_each(s.env) e
		where e.value->>'secret' = 'true' and e.value->>'sealed' not like 'test2:%'`).Scan(&stale); err != nil {
		t.Fatal(err)
	}
	if stale != 0 {
		t.Fatalf("%d values still sealed with the old key", stale)
	}
	again := of(root.secrets.RotateSecrets(t.Context(), connect.NewRequest(&apiv1.RotateSecretsRequest{}))).must(t, "rotate again").Msg
	if again.Rows != 0 {
		t.Errorf("second rotation rewrote %d rows", again.Rows)
	}

	// Once rotated, a replica with only the new key serves the same configuration.
	if b.keyring, err = secrets.ParseKeyring(newSpec); err != nil {
		t.Fatal(err)
	}
	b.replicas = append(b.replicas, b.startReplica(t, setupOpts{}))
	after := getConfiguration(t, b.connect(2, sat.id, sat.apiKey), "")
	if after.Etag != before.Etag {
		t.Errorf("configuration changed with the rotation: etag %q, was %q", after.Etag, before.Etag)
	}
	alice := instanceOf(t, b.connect(2, sat.id, sat.apiKey), f.alice.ID, f.installation.ID.String())
	if alice.Env["API_TOKEN"] != "rot-team-secret" || alice.Env["PERSONAL_TOKEN"] != "alice-secret" {
		t.Errorf("alice's env after rotation %v", alice.Env)
	}
	_, err = b.clientsFor(0, store.User{}, "not-a-token-at-all-0123456789").secrets.RotateSecrets(t.Context(), connect.NewRequest(&apiv1.RotateSecretsRequest{}))
	wantCode(t, "rotation without credentials", err, connect.CodeUnauthenticated, "")
}

// TestCatalogSlugsArePerTeam lets two teams use the same slug for their own templates, so a taken slug says
// nothing about another team, and keeps slugs distinct within what one team sees.
func TestCatalogSlugsArePerTeam(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	p := seedProduct(t, b)
	ctx := t.Context()
	create := func(c *caller, teamID, slug string) error {
		_, err := c.catalog.CreateCatalogEntry(ctx, connect.NewRequest(&apiv1.CreateCatalogEntryRequest{
			TeamId: teamID, Slug: slug,
			Spec: &apiv1.CatalogEntrySpec{Name: slug, Transport: apiv1.Transport_TRANSPORT_STDIO, Command: "npx"},
		}))
		return err
	}
	if err := create(p.admin, p.team.ID.String(), "tools"); err != nil {
		t.Fatal(err)
	}
	if err := create(p.outsider, p.other.ID.String(), "tools"); err != nil {
		t.Fatalf("another team's template with the same slug: %v", err)
	}
	wantCode(t, "the same slug twice in one team", create(p.admin, p.team.ID.String(), "tools"), connect.CodeAlreadyExists, "")
	wantCode(t, "a global template over a team's slug", create(p.root, "", "tools"), connect.CodeAlreadyExists, "")
	if err := create(p.root, "", "search"); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "a team template over a global slug", create(p.admin, p.team.ID.String(), "search"), connect.CodeAlreadyExists, "")
}
