package e2e_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/orrery/orrery/e2e"
	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	"github.com/orrery/orrery/gen/orrery/api/v1/apiv1connect"
	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/internal/mcptest"
)

// stopTimeout is how soon an emergency stop must take effect on a connected satellite: the design promises
// "within seconds", and the stop costs one immediate command and one configuration fetch.
const stopTimeout = 5 * time.Second

// governed is a control plane and a satellite with one team whose admin, Dana, installed
// server-everything from a global template, and an MCP client of Dana's at the team endpoint.
type governed struct {
	cp             *e2e.ControlPlane
	sat            *e2e.Satellite
	conn           *pgx.Conn
	teamID         string
	userID         string
	entryID        string
	installationID string
	endpoint       string
	// dana is Dana's API client option; admin the global admin's.
	dana, admin connect.ClientOption
	// danaToken is Dana's personal API token.
	danaToken string
	// listChanged receives a value whenever the client is told the tool list changed.
	listChanged chan struct{}
	session     *mcp.ClientSession
}

func startGoverned(t *testing.T, spec *apiv1.InstallationSpec) *governed {
	t.Helper()
	ctx := t.Context()
	g := &governed{cp: startControlPlane(t), listChanged: make(chan struct{}, 16)}
	g.sat = e2e.StartSatellite(t, g.cp, e2e.SatelliteConfig{RegistrationToken: g.cp.RegistrationToken(t)})
	waitActive(t, g.cp, g.sat.URL)
	g.admin = withToken(g.cp.AdminToken)
	if _, err := apiv1connect.NewUserServiceClient(http.DefaultClient, g.cp.URL, g.admin).CreateUser(ctx, connect.NewRequest(&apiv1.CreateUserRequest{
		Email: "dana@example.test", Name: "Dana", Password: "a long enough password",
	})); err != nil {
		t.Fatal(err)
	}
	command, args := mcptest.Everything(t)
	entry, err := apiv1connect.NewCatalogServiceClient(http.DefaultClient, g.cp.URL, g.admin).CreateCatalogEntry(ctx, connect.NewRequest(&apiv1.CreateCatalogEntryRequest{
		Slug: "everything",
		Spec: &apiv1.CatalogEntrySpec{Name: "Everything", Transport: apiv1.Transport_TRANSPORT_STDIO, Command: command, Args: args},
	}))
	if err != nil {
		t.Fatal(err)
	}
	g.entryID = entry.Msg.Entry.Id
	login, err := apiv1connect.NewAccountServiceClient(http.DefaultClient, g.cp.URL).Login(ctx, connect.NewRequest(&apiv1.LoginRequest{
		Email: "dana@example.test", Password: "a long enough password", ApiTokenName: "e2e",
	}))
	if err != nil {
		t.Fatal(err)
	}
	g.dana, g.userID, g.danaToken = withToken(login.Msg.ApiToken), login.Msg.User.Id, login.Msg.ApiToken
	team, err := apiv1connect.NewTeamServiceClient(http.DefaultClient, g.cp.URL, g.dana).CreateTeam(ctx, connect.NewRequest(&apiv1.CreateTeamRequest{
		Slug: "acme", Name: "Acme",
	}))
	if err != nil {
		t.Fatal(err)
	}
	g.teamID = team.Msg.Team.Id
	installation, err := g.installations().CreateInstallation(ctx, connect.NewRequest(&apiv1.CreateInstallationRequest{
		TeamId: g.teamID, CatalogEntryId: g.entryID, Spec: spec,
	}))
	if err != nil {
		t.Fatal(err)
	}
	g.installationID = installation.Msg.Installation.Id
	if g.conn, err = pgx.Connect(ctx, g.cp.DatabaseURL); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = g.conn.Close(context.WithoutCancel(ctx)) })
	g.connect(t)
	g.waitTools(t, onlineTimeout, "the installation's tools listed", func(names []string) error {
		if !slices.Contains(names, "everything__echo") {
			return fmt.Errorf("tools %v, no everything__echo yet", names)
		}
		return nil
	})
	return g
}

func (g *governed) installations() apiv1connect.InstallationServiceClient {
	return apiv1connect.NewInstallationServiceClient(http.DefaultClient, g.cp.URL, g.dana)
}

func (g *governed) history(opt connect.ClientOption) apiv1connect.ConfigHistoryServiceClient {
	return apiv1connect.NewConfigHistoryServiceClient(http.DefaultClient, g.cp.URL, opt)
}

func (g *governed) stops(opt connect.ClientOption) apiv1connect.EmergencyStopServiceClient {
	return apiv1connect.NewEmergencyStopServiceClient(http.DefaultClient, g.cp.URL, opt)
}

// connect (re)connects Dana's MCP client to the team endpoint of the satellite, with an access token for
// it minted in the database.
func (g *governed) connect(t *testing.T) {
	t.Helper()
	g.endpoint = g.sat.URL + "/teams/acme/mcp"
	token := "orat_e2e_" + uuid.NewString()
	hash := sha256.Sum256([]byte(token))
	if _, err := g.conn.Exec(t.Context(), `insert into access_tokens (token_hash, team_id, user_id, client_id, audience, scopes, expires_at)
		values ($1, $2, $3, 'e2e', $4, '{mcp:read,mcp:tools:execute}', now() + interval '1 hour')`,
		hash[:], g.teamID, g.userID, g.endpoint); err != nil {
		t.Fatal(err)
	}
	client := mcp.NewClient(&mcp.Implementation{Name: "e2e", Version: "test"}, &mcp.ClientOptions{
		ToolListChangedHandler: func(context.Context, *mcp.ToolListChangedRequest) {
			select {
			case g.listChanged <- struct{}{}:
			default:
			}
		},
	})
	session, err := client.Connect(t.Context(), &mcp.StreamableClientTransport{
		Endpoint: g.endpoint, HTTPClient: &http.Client{Transport: bearerTransport{token}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = session.Close() })
	g.session = session
}

// waitTools waits until the listed tool names satisfy check.
func (g *governed) waitTools(t *testing.T, timeout time.Duration, what string, check func([]string) error) {
	t.Helper()
	e2e.WaitFor(t, timeout, what, func() error {
		tools, err := g.session.ListTools(t.Context(), nil)
		if err != nil {
			return err
		}
		var names []string
		for _, tool := range tools.Tools {
			names = append(names, tool.Name)
		}
		return check(names)
	})
}

// env calls server-everything's get-env and returns the environment its process runs with.
func (g *governed) env(t *testing.T) (map[string]string, error) {
	res, err := g.session.CallTool(t.Context(), &mcp.CallToolParams{Name: "everything__get-env", Arguments: map[string]any{}})
	if err != nil {
		return nil, err
	}
	if res.IsError || len(res.Content) == 0 {
		return nil, fmt.Errorf("get-env: %v", res.Content)
	}
	text, ok := res.Content[0].(*mcp.TextContent)
	if !ok {
		return nil, fmt.Errorf("get-env answered %T", res.Content[0])
	}
	var env map[string]string
	if err := json.Unmarshal([]byte(text.Text), &env); err != nil {
		return nil, fmt.Errorf("get-env: %w", err)
	}
	return env, nil
}

// waitEnv waits until the running server's environment has want.
func (g *governed) waitEnv(t *testing.T, want map[string]string) {
	t.Helper()
	e2e.WaitFor(t, onlineTimeout, fmt.Sprintf("the server to run with %v", want), func() error {
		env, err := g.env(t)
		if err != nil {
			return err
		}
		for k, v := range want {
			if env[k] != v {
				return fmt.Errorf("%s=%q, want %q", k, env[k], v)
			}
		}
		return nil
	})
}

func textOf(res *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range res.Content {
		if t, ok := c.(*mcp.TextContent); ok {
			b.WriteString(t.Text)
		}
	}
	return b.String()
}

// TestRollbackReachesTheSatellite changes an installation's plain and secret environment, reads the
// history (secrets only as changed), compares versions, tries the history of another team the way an
// attacker would, and rolls back: the satellite then runs the server with the first version's values,
// the secret restored from its sealed value.
func TestRollbackReachesTheSatellite(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	first := map[string]*apiv1.SettingValue{
		"ORRERY_MODE":  {Value: "first"},
		"ORRERY_TOKEN": {Value: "first-secret-value", Secret: true},
	}
	g := startGoverned(t, &apiv1.InstallationSpec{Name: "everything", Env: first})
	g.waitEnv(t, map[string]string{"ORRERY_MODE": "first", "ORRERY_TOKEN": "first-secret-value"})

	if _, err := g.installations().UpdateInstallation(ctx, connect.NewRequest(&apiv1.UpdateInstallationRequest{
		TeamId: g.teamID, Id: g.installationID, Spec: &apiv1.InstallationSpec{Name: "everything", Env: map[string]*apiv1.SettingValue{
			"ORRERY_MODE":  {Value: "second"},
			"ORRERY_TOKEN": {Value: "second-secret-value", Secret: true},
		}},
	})); err != nil {
		t.Fatal(err)
	}
	g.waitEnv(t, map[string]string{"ORRERY_MODE": "second", "ORRERY_TOKEN": "second-secret-value"})

	subject := &apiv1.ConfigSubject{Kind: apiv1.ConfigKind_CONFIG_KIND_INSTALLATION, Id: g.installationID}
	list, err := g.history(g.dana).ListConfigVersions(ctx, connect.NewRequest(&apiv1.ListConfigVersionsRequest{TeamId: g.teamID, Subject: subject}))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := protojson.Marshal(list.Msg)
	if strings.Contains(string(raw), "secret-value") {
		t.Fatalf("history shows a secret's value: %s", raw)
	}
	if len(list.Msg.Versions) != 2 || list.Msg.Versions[0].Version != 2 || list.Msg.Versions[0].Actor != "dana@example.test" {
		t.Fatalf("versions: %s", raw)
	}
	wantChanges := []*apiv1.ConfigChange{
		{Field: "env.ORRERY_MODE", OldValue: `"first"`, NewValue: `"second"`},
		{Field: "env.ORRERY_TOKEN", Secret: true},
	}
	if got := list.Msg.Versions[0].Changes; !sameChanges(got, wantChanges) {
		t.Fatalf("changes of version 2: %v, want %v", got, wantChanges)
	}
	cmp, err := g.history(g.dana).CompareConfigVersions(ctx, connect.NewRequest(&apiv1.CompareConfigVersionsRequest{
		TeamId: g.teamID, Subject: subject, FromVersion: 2, ToVersion: 1,
	}))
	if err != nil {
		t.Fatal(err)
	}
	if want := []*apiv1.ConfigChange{{Field: "env.ORRERY_MODE", OldValue: `"second"`, NewValue: `"first"`}, {Field: "env.ORRERY_TOKEN", Secret: true}}; !sameChanges(cmp.Msg.Changes, want) {
		t.Fatalf("compare 2 to 1: %v, want %v", cmp.Msg.Changes, want)
	}

	// orreryctl shows the same, secrets as changed only.
	ctl := newCLI(t, "ORRERY_TOKEN="+g.danaToken, "ORRERY_URL="+g.cp.URL)
	out := ctl.ok(t, "history", "diff", "everything", "1", "2", "--team", "acme")
	if !strings.Contains(out, "env.ORRERY_MODE") || !strings.Contains(out, `"second"`) || !strings.Contains(out, "(secret, changed)") || strings.Contains(out, "secret-value") {
		t.Fatalf("orreryctl history diff:\n%s", out)
	}
	if out := ctl.ok(t, "history", "list", "everything", "--team", "acme"); !strings.Contains(out, "dana@example.test") || strings.Contains(out, "secret-value") {
		t.Fatalf("orreryctl history list:\n%s", out)
	}

	// Mallory administers a team of her own and asks for Dana's installation's history through it, and
	// through Dana's team: the first is as missing as an id that never existed, the second refused.
	mallory := signUpWithTeam(t, g.cp, "mallory@example.test", "evil")
	page, err := g.history(mallory.opt).ListConfigVersions(ctx, connect.NewRequest(&apiv1.ListConfigVersionsRequest{TeamId: mallory.teamID, Subject: subject}))
	if err != nil || len(page.Msg.Versions) != 0 || page.Msg.NextPageToken != "" {
		t.Fatalf("another team's history through her own team: %v %v", page, err)
	}
	if _, err := g.history(mallory.opt).CompareConfigVersions(ctx, connect.NewRequest(&apiv1.CompareConfigVersionsRequest{
		TeamId: mallory.teamID, Subject: subject, FromVersion: 1, ToVersion: 2,
	})); connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("compare another team's versions: %v, want not_found", err)
	}
	other := &apiv1.ConfigSubject{Kind: apiv1.ConfigKind_CONFIG_KIND_INSTALLATION, Id: uuid.NewString()}
	if _, err := g.history(mallory.opt).CompareConfigVersions(ctx, connect.NewRequest(&apiv1.CompareConfigVersionsRequest{
		TeamId: mallory.teamID, Subject: other, FromVersion: 1, ToVersion: 2,
	})); connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("compare versions of nothing: %v, want not_found", err)
	}
	if _, err := g.history(mallory.opt).RollbackInstallation(ctx, connect.NewRequest(&apiv1.RollbackInstallationRequest{
		TeamId: mallory.teamID, InstallationId: g.installationID, Version: 1,
	})); connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("roll back another team's installation: %v, want not_found", err)
	}
	if _, err := g.history(mallory.opt).ListConfigVersions(ctx, connect.NewRequest(&apiv1.ListConfigVersionsRequest{TeamId: g.teamID, Subject: subject})); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("history through a team she is not in: %v, want permission_denied", err)
	}
	if _, err := g.history(mallory.opt).ListConfigVersions(ctx, connect.NewRequest(&apiv1.ListConfigVersionsRequest{
		Subject: &apiv1.ConfigSubject{Kind: apiv1.ConfigKind_CONFIG_KIND_TEMPLATE, Id: g.entryID},
	})); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("a global template's history as a team admin: %v, want permission_denied", err)
	}
	if _, err := g.history(g.dana).ListConfigVersions(ctx, connect.NewRequest(&apiv1.ListConfigVersionsRequest{
		TeamId: g.teamID, Subject: subject, PageSize: 501,
	})); connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Fatalf("a page of 501: %v, want invalid_argument", err)
	}

	rolled, err := g.history(g.dana).RollbackInstallation(ctx, connect.NewRequest(&apiv1.RollbackInstallationRequest{
		TeamId: g.teamID, InstallationId: g.installationID, Version: 1,
	}))
	if err != nil {
		t.Fatal(err)
	}
	if rolled.Msg.Version != 3 || rolled.Msg.Installation.Spec.Env["ORRERY_MODE"].GetValue() != "first" || rolled.Msg.Installation.Spec.Env["ORRERY_TOKEN"].GetValue() != "" {
		t.Fatalf("rollback answered %v", rolled.Msg)
	}
	g.waitEnv(t, map[string]string{"ORRERY_MODE": "first", "ORRERY_TOKEN": "first-secret-value"})

	list, err = g.history(g.dana).ListConfigVersions(ctx, connect.NewRequest(&apiv1.ListConfigVersionsRequest{TeamId: g.teamID, Subject: subject, PageSize: 1}))
	if err != nil {
		t.Fatal(err)
	}
	if v := list.Msg.Versions; len(v) != 1 || v[0].Action != "rolled_back" || v[0].RolledBackTo != 1 || list.Msg.NextPageToken != "3" {
		t.Fatalf("newest version after the rollback: %v (next %q)", v, list.Msg.NextPageToken)
	}
	var audited int
	if err := g.conn.QueryRow(ctx, `select count(*) from audit_events where action = 'installation.rolled_back' and target = $1`, g.installationID).Scan(&audited); err != nil || audited != 1 {
		t.Fatalf("rollbacks audited: %d, %v", audited, err)
	}
}

func sameChanges(got, want []*apiv1.ConfigChange) bool {
	return slices.EqualFunc(got, want, func(a, b *apiv1.ConfigChange) bool {
		return a.Field == b.Field && a.OldValue == b.OldValue && a.NewValue == b.NewValue && a.Secret == b.Secret
	})
}

// member is a signed-in user with a team of their own.
type member struct {
	opt    connect.ClientOption
	teamID string
}

func signUpWithTeam(t *testing.T, cp *e2e.ControlPlane, email, slug string) member {
	t.Helper()
	ctx := t.Context()
	if _, err := apiv1connect.NewUserServiceClient(http.DefaultClient, cp.URL, withToken(cp.AdminToken)).CreateUser(ctx, connect.NewRequest(&apiv1.CreateUserRequest{
		Email: email, Name: slug, Password: "a long enough password",
	})); err != nil {
		t.Fatal(err)
	}
	login, err := apiv1connect.NewAccountServiceClient(http.DefaultClient, cp.URL).Login(ctx, connect.NewRequest(&apiv1.LoginRequest{
		Email: email, Password: "a long enough password", ApiTokenName: "e2e",
	}))
	if err != nil {
		t.Fatal(err)
	}
	m := member{opt: withToken(login.Msg.ApiToken)}
	team, err := apiv1connect.NewTeamServiceClient(http.DefaultClient, cp.URL, m.opt).CreateTeam(ctx, connect.NewRequest(&apiv1.CreateTeamRequest{Slug: slug, Name: slug}))
	if err != nil {
		t.Fatal(err)
	}
	m.teamID = team.Msg.Team.Id
	return m
}

// TestEmergencyStop stops an installation on a running satellite and measures how soon a call is refused;
// a call in flight is cancelled, the tools leave the endpoint with list_changed, and a call by name is
// refused naming the stop. Resuming brings the tools back. A template stop is the global admins' alone,
// and reaches a satellite that was offline when it was made as soon as it returns.
func TestEmergencyStop(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	g := startGoverned(t, &apiv1.InstallationSpec{Name: "everything"})

	// A call that would run for 30 s, in flight when the stop comes.
	inFlight := make(chan *mcp.CallToolResult, 1)
	inFlightErr := make(chan error, 1)
	go func() {
		res, err := g.session.CallTool(ctx, &mcp.CallToolParams{Name: "everything__trigger-long-running-operation",
			Arguments: map[string]any{"duration": 30, "steps": 30}})
		inFlight <- res
		inFlightErr <- err
	}()
	time.Sleep(500 * time.Millisecond) // the call reaches the server; nothing observable says when

	drain(g.listChanged)
	start := time.Now()
	stopped, err := g.stops(g.dana).StopInstallation(ctx, connect.NewRequest(&apiv1.StopInstallationRequest{
		TeamId: g.teamID, InstallationId: g.installationID, Reason: "leaks tokens, see INC-42",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if s := stopped.Msg.Installation.Stop; s.GetScope() != apiv1.EmergencyStopScope_EMERGENCY_STOP_SCOPE_INSTALLATION || s.GetReason() != "leaks tokens, see INC-42" {
		t.Fatalf("stopped installation shows stop %v", s)
	}
	var refusedAfter time.Duration
	e2e.WaitFor(t, stopTimeout, "a call by name to be refused naming the stop", func() error {
		res, err := g.session.CallTool(ctx, &mcp.CallToolParams{Name: "everything__echo", Arguments: map[string]any{"message": "hi"}})
		if err != nil {
			return err
		}
		if !res.IsError || !strings.Contains(textOf(res), "leaks tokens, see INC-42") {
			return fmt.Errorf("echo answered %q", textOf(res))
		}
		refusedAfter = time.Since(start)
		return nil
	})
	t.Logf("emergency stop to the first refused call: %v", refusedAfter)

	select {
	case res := <-inFlight:
		err := <-inFlightErr
		if err == nil && (!res.IsError || !strings.Contains(textOf(res), "emergency stop")) {
			t.Fatalf("the call in flight finished as %q, not cancelled by the stop", textOf(res))
		}
		if err != nil {
			t.Logf("call in flight ended with %v", err)
		}
	case <-time.After(stopTimeout):
		t.Fatal("the call in flight still runs after the stop")
	}
	select {
	case <-g.listChanged:
	case <-time.After(stopTimeout):
		t.Fatal("no tools/list_changed after the stop")
	}
	g.waitTools(t, stopTimeout, "the stopped installation's tools gone", func(names []string) error {
		if len(names) != 0 {
			return fmt.Errorf("still listed: %v", names)
		}
		return nil
	})

	// The instance's status says why (the satellite reports it through its event batch, flushed in ~3 s).
	instances := apiv1connect.NewInstanceServiceClient(http.DefaultClient, g.cp.URL, g.dana)
	e2e.WaitFor(t, 15*time.Second, "the instance's status to name the stop", func() error {
		list, err := instances.ListInstances(ctx, connect.NewRequest(&apiv1.ListInstancesRequest{TeamId: g.teamID, InstallationId: g.installationID}))
		if err != nil {
			return err
		}
		for _, in := range list.Msg.Instances {
			if in.Status != satellitev1.InstanceStatus_INSTANCE_STATUS_OFFLINE || !strings.Contains(in.StatusMessage, "INC-42") {
				return fmt.Errorf("instance %s is %v: %q", in.Id, in.Status, in.StatusMessage)
			}
		}
		return nil
	})

	// A template stop is for global admins: the team's own admin is refused.
	if _, err := g.stops(g.dana).StopTemplate(ctx, connect.NewRequest(&apiv1.StopTemplateRequest{Id: g.entryID, Reason: "mine"})); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("a team admin stopping a template: %v, want permission_denied", err)
	}

	drain(g.listChanged)
	if _, err := g.stops(g.dana).ResumeInstallation(ctx, connect.NewRequest(&apiv1.ResumeInstallationRequest{
		TeamId: g.teamID, InstallationId: g.installationID,
	})); err != nil {
		t.Fatal(err)
	}
	g.waitTools(t, onlineTimeout, "the tools back after resuming", func(names []string) error {
		if !slices.Contains(names, "everything__echo") {
			return fmt.Errorf("tools %v", names)
		}
		return nil
	})

	// The satellite goes away; a global admin stops the template meanwhile; on its return the satellite
	// refuses from its first configuration, with no command needed.
	listen := strings.TrimPrefix(g.sat.URL, "http://")
	g.sat.Stop(t)
	entry, err := g.stops(g.admin).StopTemplate(ctx, connect.NewRequest(&apiv1.StopTemplateRequest{Id: g.entryID, Reason: "CVE-2026-0001"}))
	if err != nil {
		t.Fatal(err)
	}
	if entry.Msg.Entry.Stop.GetReason() != "CVE-2026-0001" {
		t.Fatalf("stopped template shows %v", entry.Msg.Entry.Stop)
	}
	got, err := g.installations().GetInstallation(ctx, connect.NewRequest(&apiv1.GetInstallationRequest{TeamId: g.teamID, Id: g.installationID}))
	if err != nil {
		t.Fatal(err)
	}
	if s := got.Msg.Installation.Stop; s.GetScope() != apiv1.EmergencyStopScope_EMERGENCY_STOP_SCOPE_TEMPLATE || s.GetReason() != "CVE-2026-0001" {
		t.Fatalf("the installation of a stopped template shows %v", s)
	}
	if _, err := g.conn.Exec(ctx, `delete from satellite_commands`); err != nil { // the command it missed is gone too
		t.Fatal(err)
	}
	g.sat = e2e.StartSatellite(t, g.cp, e2e.SatelliteConfig{StateDir: g.sat.StateDir, Env: []string{"ORRERY_SATELLITE_LISTEN=" + listen}})
	e2e.WaitFor(t, onlineTimeout, "the satellite back", func() error { return e2e.HTTPOK(g.sat.URL + "/readyz") })
	g.connect(t)
	res, err := g.session.CallTool(ctx, &mcp.CallToolParams{Name: "everything__echo", Arguments: map[string]any{"message": "hi"}})
	if err != nil {
		t.Fatal(err)
	}
	if !res.IsError || !strings.Contains(textOf(res), "CVE-2026-0001") {
		t.Fatalf("a returning satellite answered %q, not the template's stop", textOf(res))
	}
	tools, err := g.session.ListTools(ctx, nil)
	if err != nil || len(tools.Tools) != 0 {
		t.Fatalf("a returning satellite lists %v (%v)", tools, err)
	}

	// orreryctl shows why, and lifts the stop.
	if out := newCLI(t, "ORRERY_TOKEN="+g.danaToken, "ORRERY_URL="+g.cp.URL).ok(t, "installations", "list", "--team", "acme"); !strings.Contains(out, "CVE-2026-0001") {
		t.Fatalf("orreryctl installations list does not say why:\n%s", out)
	}
	newCLI(t, "ORRERY_TOKEN="+g.cp.AdminToken, "ORRERY_URL="+g.cp.URL).ok(t, "stop", "everything", "--template", "--resume")
	g.waitTools(t, onlineTimeout, "the tools back after the template resumed", func(names []string) error {
		if !slices.Contains(names, "everything__echo") {
			return fmt.Errorf("tools %v", names)
		}
		return nil
	})
	res, err = g.session.CallTool(ctx, &mcp.CallToolParams{Name: "everything__echo", Arguments: map[string]any{"message": "back"}})
	if err != nil || res.IsError {
		t.Fatalf("echo after resuming: %v %v", textOf(res), err)
	}
}
