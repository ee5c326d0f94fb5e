package server_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"

	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	"github.com/orrery/orrery/gen/orrery/api/v1/apiv1connect"
	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/services/controlplane/internal/secrets"
)

func (b *testBundle) historyFor(c *caller) apiv1connect.ConfigHistoryServiceClient {
	return apiv1connect.NewConfigHistoryServiceClient(testClient, b.replicas[0].url, connect.WithInterceptors(withBearer(c.token)))
}

func (b *testBundle) stopsFor(c *caller) apiv1connect.EmergencyStopServiceClient {
	return apiv1connect.NewEmergencyStopServiceClient(testClient, b.replicas[0].url, connect.WithInterceptors(withBearer(c.token)))
}

// governedTemplate is a global template whose schema gives users a plain and a secret value, installed
// by acme.
func governedTemplate(t *testing.T, p product) (*apiv1.CatalogEntry, *apiv1.Installation) {
	t.Helper()
	ctx := t.Context()
	entry := of(p.root.catalog.CreateCatalogEntry(ctx, connect.NewRequest(&apiv1.CreateCatalogEntryRequest{
		Slug: "files", Spec: &apiv1.CatalogEntrySpec{
			Name: "Files", Transport: apiv1.Transport_TRANSPORT_STDIO, Command: "npx",
			Env: map[string]*apiv1.SettingValue{"SHARED_KEY": {Value: "template-secret-1", Secret: true}},
			ConfigSchema: &apiv1.ConfigSchema{Env: []*apiv1.ConfigField{
				{Name: "LEVEL", Scope: apiv1.ConfigScope_CONFIG_SCOPE_USER},
				{Name: "PERSONAL_TOKEN", Scope: apiv1.ConfigScope_CONFIG_SCOPE_USER, Secret: true},
			}},
		},
	}))).must(t, "create template").Msg.Entry
	inst := of(p.admin.installs.CreateInstallation(ctx, connect.NewRequest(&apiv1.CreateInstallationRequest{
		TeamId: p.team.ID.String(), CatalogEntryId: entry.Id, Spec: &apiv1.InstallationSpec{Name: "files"},
	}))).must(t, "install").Msg.Installation
	return entry, inst
}

func TestConfigHistoryOfTemplatesAndMembers(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t, setupOpts{})
	p := seedProduct(t, b)
	entry, inst := governedTemplate(t, p)
	team := p.team.ID.String()

	// A global template's history: the global admins', secrets only as changed.
	spec := entry.Spec
	spec.Env = map[string]*apiv1.SettingValue{"SHARED_KEY": {Value: "template-secret-2", Secret: true}}
	spec.Description = "now described"
	of(p.root.catalog.UpdateCatalogEntry(ctx, connect.NewRequest(&apiv1.UpdateCatalogEntryRequest{Id: entry.Id, Spec: spec}))).must(t, "update template")
	tmpl := &apiv1.ConfigSubject{Kind: apiv1.ConfigKind_CONFIG_KIND_TEMPLATE, Id: entry.Id}
	versions := of(b.historyFor(p.root).ListConfigVersions(ctx, connect.NewRequest(&apiv1.ListConfigVersionsRequest{Subject: tmpl}))).must(t, "template history").Msg
	raw, _ := protojson.Marshal(versions)
	if strings.Contains(string(raw), "template-secret") || len(versions.Versions) != 2 {
		t.Fatalf("template history: %s", raw)
	}
	if got := versions.Versions[0].Changes; len(got) != 2 || got[0].Field != "description" || got[1].Field != "env.SHARED_KEY" || !got[1].Secret {
		t.Fatalf("template changes: %v", got)
	}
	_, err := b.historyFor(p.admin).ListConfigVersions(ctx, connect.NewRequest(&apiv1.ListConfigVersionsRequest{Subject: tmpl}))
	wantCode(t, "a team admin reading a global template's history", err, connect.CodePermissionDenied, "global admins")
	_, err = b.historyFor(p.admin).ListConfigVersions(ctx, connect.NewRequest(&apiv1.ListConfigVersionsRequest{TeamId: team, Subject: tmpl}))
	if err != nil {
		t.Fatal(err)
	}

	// A member's own configuration: theirs to read, their team admins' too, nobody else's.
	for _, level := range []string{"low", "high"} {
		of(p.member.installs.SetUserConfiguration(ctx, connect.NewRequest(&apiv1.SetUserConfigurationRequest{
			TeamId: team, InstallationId: inst.Id, Env: map[string]*apiv1.SettingValue{
				"LEVEL": {Value: level}, "PERSONAL_TOKEN": {Value: "member-secret-" + level, Secret: true},
			},
		}))).must(t, "set user configuration")
	}
	mine := &apiv1.ConfigSubject{Kind: apiv1.ConfigKind_CONFIG_KIND_USER_CONFIGURATION, Id: inst.Id}
	own := of(b.historyFor(p.member).ListConfigVersions(ctx, connect.NewRequest(&apiv1.ListConfigVersionsRequest{TeamId: team, Subject: mine}))).must(t, "own history").Msg
	if len(own.Versions) != 2 || own.Versions[0].Actor != "member@acme.test" || own.Versions[1].Action != "created" {
		t.Fatalf("own configuration history: %v", own.Versions)
	}
	cmp := of(b.historyFor(p.member).CompareConfigVersions(ctx, connect.NewRequest(&apiv1.CompareConfigVersionsRequest{
		TeamId: team, Subject: mine, FromVersion: 1, ToVersion: 2,
	}))).must(t, "compare own").Msg
	if len(cmp.Changes) != 2 || cmp.Changes[0].NewValue != `"high"` || !cmp.Changes[1].Secret || cmp.Changes[1].NewValue != "" {
		t.Fatalf("own comparison: %v", cmp.Changes)
	}
	theirs := &apiv1.ConfigSubject{Kind: apiv1.ConfigKind_CONFIG_KIND_USER_CONFIGURATION, Id: inst.Id, UserId: p.member.user.ID.String()}
	if got := of(b.historyFor(p.admin).ListConfigVersions(ctx, connect.NewRequest(&apiv1.ListConfigVersionsRequest{TeamId: team, Subject: theirs}))).must(t, "admin reads member's").Msg; len(got.Versions) != 2 {
		t.Fatalf("the team admin sees %d versions of the member's configuration", len(got.Versions))
	}
	adminsOwn := &apiv1.ConfigSubject{Kind: apiv1.ConfigKind_CONFIG_KIND_USER_CONFIGURATION, Id: inst.Id, UserId: p.admin.user.ID.String()}
	_, err = b.historyFor(p.member).ListConfigVersions(ctx, connect.NewRequest(&apiv1.ListConfigVersionsRequest{TeamId: team, Subject: adminsOwn}))
	wantCode(t, "a member reading another member's history", err, connect.CodePermissionDenied, "")
	_, err = b.historyFor(p.outsider).ListConfigVersions(ctx, connect.NewRequest(&apiv1.ListConfigVersionsRequest{TeamId: team, Subject: theirs}))
	wantCode(t, "an outsider reading acme's history", err, connect.CodePermissionDenied, "")

	// Rolling back is for team admins; a version that does not exist is missing.
	_, err = b.historyFor(p.member).RollbackInstallation(ctx, connect.NewRequest(&apiv1.RollbackInstallationRequest{TeamId: team, InstallationId: inst.Id, Version: 1}))
	wantCode(t, "a member rolling back", err, connect.CodePermissionDenied, "")
	_, err = b.historyFor(p.admin).RollbackInstallation(ctx, connect.NewRequest(&apiv1.RollbackInstallationRequest{TeamId: team, InstallationId: inst.Id, Version: 9}))
	wantCode(t, "rolling back to a version that never was", err, connect.CodeNotFound, "")
	_, err = b.historyFor(p.admin).ListConfigVersions(ctx, connect.NewRequest(&apiv1.ListConfigVersionsRequest{
		TeamId: team, Subject: &apiv1.ConfigSubject{Kind: apiv1.ConfigKind_CONFIG_KIND_INSTALLATION, Id: inst.Id}, PageToken: "x",
	}))
	wantCode(t, "a forged page token", err, connect.CodeInvalidArgument, "page_token")
}

func TestEmergencyStopRules(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t, setupOpts{})
	p := seedProduct(t, b)
	entry, inst := governedTemplate(t, p)
	team := p.team.ID.String()
	sat := b.activeSatellite(t, "")

	// Another team's admin stopping acme's installation through their own team finds nothing.
	_, err := b.stopsFor(p.outsider).StopInstallation(ctx, connect.NewRequest(&apiv1.StopInstallationRequest{
		TeamId: p.other.ID.String(), InstallationId: inst.Id, Reason: "sabotage",
	}))
	wantCode(t, "stopping another team's installation", err, connect.CodeNotFound, "")
	_, err = b.stopsFor(p.member).StopInstallation(ctx, connect.NewRequest(&apiv1.StopInstallationRequest{TeamId: team, InstallationId: inst.Id, Reason: "x"}))
	wantCode(t, "a team user stopping", err, connect.CodePermissionDenied, "")
	_, err = b.stopsFor(p.admin).StopInstallation(ctx, connect.NewRequest(&apiv1.StopInstallationRequest{TeamId: team, InstallationId: inst.Id, Reason: strings.Repeat("x", 501)}))
	wantCode(t, "a reason too long", err, connect.CodeInvalidArgument, "reason")
	_, err = b.stopsFor(p.admin).StopTemplate(ctx, connect.NewRequest(&apiv1.StopTemplateRequest{Id: entry.Id, Reason: "x"}))
	wantCode(t, "a team admin stopping a template", err, connect.CodePermissionDenied, "")

	// A global admin's stop holds against the team's admin.
	stopped := of(b.stopsFor(p.root).StopInstallation(ctx, connect.NewRequest(&apiv1.StopInstallationRequest{
		TeamId: team, InstallationId: inst.Id, Reason: "under investigation",
	}))).must(t, "stop as global admin").Msg.Installation
	if stopped.Stop.GetReason() != "under investigation" || stopped.Stop.GetScope() != apiv1.EmergencyStopScope_EMERGENCY_STOP_SCOPE_INSTALLATION {
		t.Fatalf("stopped installation: %v", stopped.Stop)
	}
	_, err = b.stopsFor(p.admin).ResumeInstallation(ctx, connect.NewRequest(&apiv1.ResumeInstallationRequest{TeamId: team, InstallationId: inst.Id}))
	wantCode(t, "a team admin lifting a global admin's stop", err, connect.CodePermissionDenied, "global admin")

	// The satellite is told at once and its configuration carries the stop, without secrets.
	var sawStop bool
	for _, c := range sat.poll(t, time.Second) {
		sawStop = sawStop || (c.GetConfigure().GetEvent() == satellitev1.ConfigureEvent_CONFIGURE_EVENT_EMERGENCY_STOP &&
			c.Priority == satellitev1.CommandPriority_COMMAND_PRIORITY_IMMEDIATE)
	}
	if !sawStop {
		t.Fatal("no immediate emergency-stop command reached the satellite")
	}
	cfg := getConfiguration(t, sat, "")
	if len(cfg.Instances) == 0 {
		t.Fatal("no instances in the configuration")
	}
	for _, in := range cfg.Instances {
		if !strings.Contains(in.EmergencyStop, "under investigation") || len(in.Env) != 0 || len(in.Args) != 0 {
			t.Fatalf("stopped instance in the configuration: %v", in)
		}
	}
	of(b.stopsFor(p.root).ResumeInstallation(ctx, connect.NewRequest(&apiv1.ResumeInstallationRequest{TeamId: team, InstallationId: inst.Id}))).must(t, "resume")
	for _, in := range getConfiguration(t, sat, "").Instances {
		if in.EmergencyStop != "" || in.Env["SHARED_KEY"] != "template-secret-1" {
			t.Fatalf("resumed instance in the configuration: stop %q", in.EmergencyStop)
		}
	}
}

func TestRollbackRefusesSecretsSealedWithADroppedKey(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	b := setup(t, setupOpts{})
	p := seedProduct(t, b)
	_, inst := governedTemplate(t, p)
	spec, err := secrets.NewKeySpec("dropped")
	if err != nil {
		t.Fatal(err)
	}
	dropped, err := secrets.ParseKeyring(spec)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := dropped.Seal("old secret")
	if err != nil {
		t.Fatal(err)
	}
	// Version 1 as a key rotation that dropped its key would leave it.
	env, _ := json.Marshal(map[string]any{"TOKEN": map[string]any{"sealed": sealed, "secret": true}})
	if _, err := b.pool(t).Exec(ctx, `update config_versions set snapshot = jsonb_set(snapshot, '{env}', $1::jsonb)
		where kind = 'installation' and subject_id = $2 and version = 1`, string(env), inst.Id); err != nil {
		t.Fatal(err)
	}
	_, err = b.historyFor(p.admin).RollbackInstallation(ctx, connect.NewRequest(&apiv1.RollbackInstallationRequest{
		TeamId: p.team.ID.String(), InstallationId: inst.Id, Version: 1,
	}))
	wantCode(t, "rolling back to secrets nobody can open", err, connect.CodeFailedPrecondition, "no longer configured")
}
