package server_test

import (
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "github.com/orrery/orrery/gen/orrery/admin/v1"
	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// teamFixture is a team with two members and one installation of a stdio template with secrets at every
// configuration level.
type teamFixture struct {
	team         store.Team
	alice, bob   store.User
	installation store.Installation
}

func seedTeam(t testing.TB, b *testBundle, slug string) teamFixture {
	t.Helper()
	ctx := t.Context()
	st := b.store()
	var f teamFixture
	var err error
	if f.team, err = st.CreateTeam(ctx, slug, "Team "+slug); err != nil {
		t.Fatal(err)
	}
	if f.alice, err = st.CreateUser(ctx, slug+"-alice", "alice@"+slug+".test", "Alice"); err != nil {
		t.Fatal(err)
	}
	if f.bob, err = st.CreateUser(ctx, slug+"-bob", "bob@"+slug+".test", "Bob"); err != nil {
		t.Fatal(err)
	}
	entry, err := st.CreateCatalogEntry(ctx, store.CatalogEntry{
		Slug: slug + "-files", Name: "Files", Transport: "stdio", Command: "npx",
		Args: []string{"-y", "server-files"},
		Env:  store.Settings{"LOG_LEVEL": {Value: "info"}, "SHARED": {Value: "template"}},
		ConfigSchema: store.ConfigSchema{Env: []store.ConfigField{
			{Name: "SHARED", Scope: store.ScopeUserField},
			{Name: "PERSONAL_TOKEN", Scope: store.ScopeUserField, Secret: true},
		}},
	}, store.SystemAuthor)
	if err != nil {
		t.Fatal(err)
	}
	f.installation, err = st.CreateInstallation(ctx, store.Installation{
		TeamID: f.team.ID, CatalogEntryID: entry.ID, Name: "files", Args: []string{"--root", "/srv"},
		Env:                   store.Settings{"API_TOKEN": {Value: slug + "-team-secret", Secret: true}, "SHARED": {Value: "team"}},
		RequestLoggingEnabled: true,
	}, store.SystemAuthor)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []store.User{f.alice, f.bob} {
		if err := st.AddMember(ctx, f.team.ID, u.ID, "team_user"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.SetUserConfiguration(ctx, store.UserConfiguration{
		InstallationID: f.installation.ID, TeamID: f.team.ID, UserID: f.alice.ID, Args: []string{"--verbose"},
		Env: store.Settings{"SHARED": {Value: "alice"}, "PERSONAL_TOKEN": {Value: "alice-secret", Secret: true}},
	}, store.SystemAuthor); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f teamFixture) instanceID(u store.User) string {
	return f.team.Slug + "-files-" + f.team.Slug + "-" + u.Slug + "-" + f.installation.ID.String()
}

func getConfiguration(t *testing.T, s *satellite, etag string) *satellitev1.GetConfigurationResponse {
	t.Helper()
	resp, err := s.client.GetConfiguration(t.Context(), connect.NewRequest(&satellitev1.GetConfigurationRequest{IfNoneMatch: etag}))
	if err != nil {
		t.Fatal(err)
	}
	return resp.Msg
}

func TestConfigurationMergesLevelsAndDecryptsSecrets(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	f := seedTeam(t, b, "acme")
	sat := b.activeSatellite(t, "")
	cfg := getConfiguration(t, sat, "")
	if len(cfg.Instances) != 2 {
		t.Fatalf("got %d instances, want one per member (2)", len(cfg.Instances))
	}
	byID := map[string]*satellitev1.Instance{}
	for _, inst := range cfg.Instances {
		byID[inst.Id] = inst
	}
	alice := byID[f.instanceID(f.alice)]
	if alice == nil {
		t.Fatalf("no instance %s among %v", f.instanceID(f.alice), cfg.Instances)
	}
	if got := strings.Join(alice.Args, " "); got != "-y server-files --root /srv --verbose" {
		t.Errorf("alice args %q: want template, team, user appended", got)
	}
	wantEnv := map[string]string{"LOG_LEVEL": "info", "SHARED": "alice", "API_TOKEN": "acme-team-secret", "PERSONAL_TOKEN": "alice-secret"}
	for k, v := range wantEnv {
		if alice.Env[k] != v {
			t.Errorf("alice env %s=%q, want %q", k, alice.Env[k], v)
		}
	}
	bob := byID[f.instanceID(f.bob)]
	if bob.Env["SHARED"] != "team" || bob.Env["PERSONAL_TOKEN"] != "" {
		t.Errorf("bob env %v: must not see alice's settings", bob.Env)
	}
	if alice.ToolPrefix != "acme-files" {
		t.Errorf("alice tool prefix %q, want the server slug by default", alice.ToolPrefix)
	}
	if alice.ContentHash == "" || alice.ContentHash == bob.ContentHash {
		t.Errorf("content hashes alice %q bob %q: want distinct and set", alice.ContentHash, bob.ContentHash)
	}

	again := getConfiguration(t, sat, cfg.Etag)
	if !again.NotModified || len(again.Instances) != 0 || again.Etag != cfg.Etag {
		t.Fatalf("unchanged configuration with its etag: %v", again)
	}
	if _, err := b.store().SetUserConfiguration(t.Context(), store.UserConfiguration{
		InstallationID: f.installation.ID, TeamID: f.team.ID, UserID: f.bob.ID, Env: store.Settings{"SHARED": {Value: "bob"}},
	}, store.SystemAuthor); err != nil {
		t.Fatal(err)
	}
	changed := getConfiguration(t, sat, cfg.Etag)
	if changed.NotModified || changed.Etag == cfg.Etag {
		t.Fatal("changed configuration reported as not modified")
	}
	for _, inst := range changed.Instances {
		if inst.Id == alice.Id && inst.ContentHash != alice.ContentHash {
			t.Error("alice's hash changed though only bob's configuration did")
		}
		if inst.Id == bob.Id && inst.ContentHash == bob.ContentHash {
			t.Error("bob's hash did not change with his configuration")
		}
	}
}

func TestSecretsAreSealedAtRest(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	seedTeam(t, b, "sealed")
	pool := b.pool(t)
	var raw string
	if err := pool.QueryRow(t.Context(), "select env::text from installations").Scan(&raw); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(raw, "sealed-team-secret") || !strings.Contains(raw, `"sealed"`) {
		t.Fatalf("stored env %s: secret must be sealed", raw)
	}
}

func TestTeamSatelliteSeesOnlyItsTeam(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	red := seedTeam(t, b, "red")
	blue := seedTeam(t, b, "blue")
	redSat := b.activeSatellite(t, red.team.ID.String())
	cfg := getConfiguration(t, redSat, "")
	if len(cfg.Instances) != 2 {
		t.Fatalf("red satellite got %d instances, want red's 2", len(cfg.Instances))
	}
	for _, inst := range cfg.Instances {
		if inst.TeamId != red.team.ID.String() || strings.Contains(inst.Env["API_TOKEN"], "blue") {
			t.Fatalf("red satellite got %v", inst)
		}
	}
	// Red has a satellite of its own, so the global satellite serves blue alone.
	global := b.activeSatellite(t, "")
	for _, inst := range getConfiguration(t, global, "").Instances {
		if inst.TeamId != blue.team.ID.String() {
			t.Fatalf("global satellite got %v, want only blue's instances", inst)
		}
	}
	if n := len(getConfiguration(t, global, "").Instances); n != 2 {
		t.Fatalf("global satellite got %d instances, want blue's 2", n)
	}

	// Commands for blue fan out to blue's satellites and the global one, never to red's.
	resp, err := b.admin(0).EnqueueCommand(t.Context(), connect.NewRequest(&adminv1.EnqueueCommandRequest{
		Target: &adminv1.EnqueueCommandRequest_TeamId{TeamId: blue.team.ID.String()}, Action: &adminv1.EnqueueCommandRequest_Configure{Configure: configure.GetConfigure()}, Priority: immediate,
	}))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Msg.Commands) != 1 || resp.Msg.Commands[0].SatelliteId != global.id {
		t.Fatalf("blue's command went to %v, want only the global satellite", resp.Msg.Commands)
	}
	if cmds := redSat.poll(t, 0); len(cmds) != 0 {
		t.Fatalf("red satellite received blue's commands: %v", cmds)
	}

	// Red's satellite cannot write events about blue's instances.
	_, err = redSat.client.EmitEvents(t.Context(), connect.NewRequest(&satellitev1.EmitEventsRequest{Events: []*satellitev1.Event{
		statusEvent(blue, blue.alice, satellitev1.InstanceStatus_INSTANCE_STATUS_ERROR),
	}}))
	if connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("red satellite emitting blue's event: got %v, want PermissionDenied", err)
	}
}

func statusEvent(f teamFixture, u store.User, status satellitev1.InstanceStatus) *satellitev1.Event {
	return &satellitev1.Event{
		Id: uuid.NewString(), OccurredAt: timestamppb.Now(), TeamId: f.team.ID.String(),
		InstallationId: f.installation.ID.String(), InstanceId: f.instanceID(u),
		Payload: &satellitev1.Event_StatusChanged{StatusChanged: &satellitev1.StatusChanged{Status: status, Message: "m"}},
	}
}

func logEvent(f teamFixture, u store.User, line string) *satellitev1.Event {
	return &satellitev1.Event{
		Id: uuid.NewString(), OccurredAt: timestamppb.Now(), TeamId: f.team.ID.String(),
		InstallationId: f.installation.ID.String(), InstanceId: f.instanceID(u),
		Payload: &satellitev1.Event_ServerLog{ServerLog: &satellitev1.ServerLog{Message: line}},
	}
}

func TestEventsAreStoredOnceAndLogsTrimmed(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	f := seedTeam(t, b, "events")
	sat := b.activeSatellite(t, f.team.ID.String())
	emit := func(events ...*satellitev1.Event) *satellitev1.EmitEventsResponse {
		t.Helper()
		resp, err := sat.client.EmitEvents(t.Context(), connect.NewRequest(&satellitev1.EmitEventsRequest{Events: events}))
		if err != nil {
			t.Fatal(err)
		}
		return resp.Msg
	}
	batch := []*satellitev1.Event{
		statusEvent(f, f.alice, satellitev1.InstanceStatus_INSTANCE_STATUS_ONLINE),
		{
			Id: uuid.NewString(), OccurredAt: timestamppb.Now(), TeamId: f.team.ID.String(),
			InstallationId: f.installation.ID.String(), InstanceId: f.instanceID(f.alice),
			Payload: &satellitev1.Event_ToolsDiscovered{ToolsDiscovered: &satellitev1.ToolsDiscovered{Tools: []*satellitev1.Tool{
				{Name: "read_file", Description: "Reads a file", TokenCount: 42},
				{Name: "write_file", TokenCount: 50},
			}}},
		},
		{
			Id: uuid.NewString(), OccurredAt: timestamppb.Now(), TeamId: f.team.ID.String(),
			InstallationId: f.installation.ID.String(), InstanceId: f.instanceID(f.alice),
			Payload: &satellitev1.Event_RequestLog{RequestLog: &satellitev1.RequestLog{
				UserId: f.alice.ID.String(), ToolName: "read_file", Duration: durationpb.New(15 * time.Millisecond), Success: true,
			}},
		},
		{
			Id: uuid.NewString(), OccurredAt: timestamppb.Now(), TeamId: f.team.ID.String(),
			InstallationId: f.installation.ID.String(), InstanceId: f.instanceID(f.alice),
			Payload: &satellitev1.Event_Lifecycle{Lifecycle: &satellitev1.Lifecycle{Kind: satellitev1.LifecycleKind_LIFECYCLE_KIND_STARTED}},
		},
		{
			Id: uuid.NewString(), OccurredAt: timestamppb.Now(),
			Payload: &satellitev1.Event_EventsDropped{EventsDropped: &satellitev1.EventsDropped{Count: 3, Reason: "buffer full"}},
		},
	}
	if got := emit(batch...); got.Stored != 5 || got.Duplicates != 0 {
		t.Fatalf("first delivery: %v", got)
	}
	if got := emit(batch...); got.Stored != 0 || got.Duplicates != 5 {
		t.Fatalf("retried delivery: %v, want all duplicates", got)
	}
	ctx := t.Context()
	inst, err := b.store().Instance(ctx, f.team.ID, f.instanceID(f.alice))
	if err != nil {
		t.Fatal(err)
	}
	if inst.Status != "online" {
		t.Errorf("instance status %q, want online", inst.Status)
	}
	tools, err := b.store().DiscoveredTools(ctx, f.team.ID, f.instanceID(f.alice))
	if err != nil || len(tools) != 2 || tools[0].TokenCount != 42 {
		t.Errorf("discovered tools %v, %v", tools, err)
	}

	var logs []*satellitev1.Event
	for i := range 130 {
		logs = append(logs, logEvent(f, f.bob, "line "+string(rune('a'+i%26))))
	}
	emit(logs[:70]...)
	emit(logs[70:]...)
	lines, err := b.store().ServerLogs(ctx, store.Viewer{TeamID: f.team.ID}, f.installation.ID, store.LogWindow{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 100 {
		t.Fatalf("kept %d log lines, want the newest 100", len(lines))
	}
}

// TestTemplateSandboxReachesTheSatellite sets a template's sandbox through the catalog API and checks that
// it reaches the satellite with every instance, changing their content hash.
func TestTemplateSandboxReachesTheSatellite(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	f := seedTeam(t, b, "acme")
	sat := b.activeSatellite(t, "")
	before := getConfiguration(t, sat, "")
	root := b.caller(t, "root@example.test", store.RoleGlobalAdmin)
	entry := of(root.catalog.GetCatalogEntry(t.Context(), connect.NewRequest(&apiv1.GetCatalogEntryRequest{
		Id: f.installation.CatalogEntryID.String(),
	}))).must(t, "get template").Msg.Entry
	spec := entry.Spec
	spec.Sandbox = &satellitev1.Sandbox{
		NetworkDisabled: true, Home: satellitev1.HomeScope_HOME_SCOPE_USER,
		Limits: &satellitev1.ResourceLimits{MemoryBytes: 512 << 20},
	}
	updated := of(root.catalog.UpdateCatalogEntry(t.Context(), connect.NewRequest(&apiv1.UpdateCatalogEntryRequest{
		Id: entry.Id, Spec: spec,
	}))).must(t, "update template").Msg.Entry
	if !proto.Equal(updated.Spec.Sandbox, spec.Sandbox) {
		t.Errorf("template sandbox = %v, want %v", updated.Spec.Sandbox, spec.Sandbox)
	}
	after := getConfiguration(t, sat, before.Etag)
	if after.NotModified {
		t.Fatal("changing the sandbox left the configuration unchanged")
	}
	for _, inst := range after.Instances {
		if !proto.Equal(inst.Sandbox, spec.Sandbox) {
			t.Errorf("instance %s sandbox %v, want the template's", inst.Id, inst.Sandbox)
		}
	}
}

// TestTemplateSourceReachesTheSatellite sets a template's source archive through the catalog API and
// checks that it reaches the satellite with every instance, changing their content hash, and that the
// API refuses sources a satellite must not fetch.
func TestTemplateSourceReachesTheSatellite(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	f := seedTeam(t, b, "acme")
	sat := b.activeSatellite(t, "")
	before := getConfiguration(t, sat, "")
	root := b.caller(t, "root@example.test", store.RoleGlobalAdmin)
	entry := of(root.catalog.GetCatalogEntry(t.Context(), connect.NewRequest(&apiv1.GetCatalogEntryRequest{
		Id: f.installation.CatalogEntryID.String(),
	}))).must(t, "get template").Msg.Entry
	spec := entry.Spec
	good := &satellitev1.Source{
		Url:          "https://github.com/acme/mcp-server/archive/0123abc.tar.gz",
		Sha256:       strings.Repeat("ab", 32),
		BuildCommand: "npm ci && npm run build",
	}
	for _, bad := range []*satellitev1.Source{
		{Url: "http://github.com/acme/mcp-server/archive/0123abc.tar.gz", Sha256: good.Sha256},
		{Url: "file:///etc/passwd", Sha256: good.Sha256},
		{Url: good.Url, Sha256: "not-a-checksum"},
		{Url: good.Url},
	} {
		spec.Source = bad
		_, err := root.catalog.UpdateCatalogEntry(t.Context(), connect.NewRequest(&apiv1.UpdateCatalogEntryRequest{
			Id: entry.Id, Spec: spec,
		}))
		wantCode(t, "source "+bad.String(), err, connect.CodeInvalidArgument, "")
	}
	spec.Source = good
	updated := of(root.catalog.UpdateCatalogEntry(t.Context(), connect.NewRequest(&apiv1.UpdateCatalogEntryRequest{
		Id: entry.Id, Spec: spec,
	}))).must(t, "update template").Msg.Entry
	if !proto.Equal(updated.Spec.Source, good) {
		t.Errorf("template source = %v, want %v", updated.Spec.Source, good)
	}
	after := getConfiguration(t, sat, before.Etag)
	if after.NotModified {
		t.Fatal("setting the source left the configuration unchanged")
	}
	for _, inst := range after.Instances {
		if !proto.Equal(inst.Source, good) {
			t.Errorf("instance %s source %v, want the template's", inst.Id, inst.Source)
		}
	}
}
