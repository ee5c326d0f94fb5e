package server_test

import (
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	adminv1 "github.com/orrery/orrery/gen/orrery/admin/v1"
	"github.com/orrery/orrery/gen/orrery/admin/v1/adminv1connect"
	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	"github.com/orrery/orrery/gen/orrery/api/v1/apiv1connect"
	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// reportsFixture has team red with its own satellite, which has sent two heartbeats (the second listing a
// process) and two dropped-event reports, a global satellite, and the admins of red and of team blue.
type reportsFixture struct {
	red              viewers
	blue             viewers
	redSat, global   *satellite
	redAdmin, blueAd adminv1connect.AdminServiceClient
}

func setupReports(t *testing.T, b *testBundle) reportsFixture {
	t.Helper()
	f := reportsFixture{red: seedViewers(t, b, "rep-red"), blue: seedViewers(t, b, "rep-blue")}
	f.redSat = b.activeSatellite(t, f.red.team.ID.String())
	f.global = b.activeSatellite(t, "")
	f.redAdmin = adminv1connect.NewAdminServiceClient(testClient, b.replicas[0].url,
		connect.WithInterceptors(withBearer(f.red.adminToken)))
	f.blueAd = adminv1connect.NewAdminServiceClient(testClient, b.replicas[0].url,
		connect.WithInterceptors(withBearer(f.blue.adminToken)))

	red := f.red.team.ID.String()
	if _, err := f.redSat.client.Heartbeat(t.Context(), connect.NewRequest(&satellitev1.HeartbeatRequest{
		System:        &satellitev1.SystemMetrics{CpuPercent: 40, MemoryTotalBytes: 2 << 30},
		ProcessCounts: []*satellitev1.TeamProcessCount{{TeamId: red, Running: 1, Total: 3}},
		Processes: []*satellitev1.ProcessReport{{
			InstanceId: f.red.instanceID(f.red.teamFixture.alice), TeamId: red, InstallationId: f.red.installation.ID.String(),
			Status: satellitev1.InstanceStatus_INSTANCE_STATUS_ONLINE, Health: satellitev1.ProcessHealth_PROCESS_HEALTH_HEALTHY,
			Pid: 4242, MemoryBytes: 50 << 20, Uptime: durationpb.New(90 * time.Second), RequestCount: 17,
		}},
	})); err != nil {
		t.Fatal(err)
	}
	for _, n := range []uint64{7, 5} {
		emit(t, f.redSat, &satellitev1.Event{Id: uuid.NewString(), OccurredAt: timestamppb.Now(),
			Payload: &satellitev1.Event_EventsDropped{EventsDropped: &satellitev1.EventsDropped{Count: n, Reason: "buffer full"}}})
	}
	return f
}

func TestSatelliteReportsAreReadable(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	f := setupReports(t, b)
	ctx := t.Context()
	red := f.red.team.ID.String()

	// A team admin pages through their team satellite's heartbeats, newest first.
	first, err := f.redAdmin.ListSatelliteHeartbeats(ctx, connect.NewRequest(&adminv1.ListSatelliteHeartbeatsRequest{
		SatelliteId: f.redSat.id, TeamId: red, PageSize: 1,
	}))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(first.Msg.Heartbeats); n != 1 || first.Msg.NextPageToken == "" {
		t.Fatalf("first page: %d heartbeats, next %q; want 1 and a token", n, first.Msg.NextPageToken)
	}
	newest := first.Msg.Heartbeats[0]
	if newest.System.GetCpuPercent() != 40 || len(newest.ProcessCounts) != 1 || newest.ProcessCounts[0].Total != 3 ||
		newest.ProcessCounts[0].TeamId != red {
		t.Errorf("newest heartbeat %v, want the second one with red's counts", newest)
	}
	second, err := f.redAdmin.ListSatelliteHeartbeats(ctx, connect.NewRequest(&adminv1.ListSatelliteHeartbeatsRequest{
		SatelliteId: f.redSat.id, TeamId: red, PageSize: 1, PageToken: first.Msg.NextPageToken,
	}))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(second.Msg.Heartbeats); n != 1 || second.Msg.Heartbeats[0].System.GetCpuPercent() != 12.5 ||
		!second.Msg.Heartbeats[0].ReceivedAt.AsTime().Before(newest.ReceivedAt.AsTime().Add(time.Nanosecond)) {
		t.Errorf("second page %v, want the first heartbeat", second.Msg.Heartbeats)
	}

	procs, err := f.redAdmin.ListSatelliteProcesses(ctx, connect.NewRequest(&adminv1.ListSatelliteProcessesRequest{
		SatelliteId: f.redSat.id, TeamId: red,
	}))
	if err != nil {
		t.Fatal(err)
	}
	if len(procs.Msg.Processes) != 1 {
		t.Fatalf("processes %v, want alice's", procs.Msg.Processes)
	}
	p := procs.Msg.Processes[0].Process
	if p.InstanceId != f.red.instanceID(f.red.teamFixture.alice) || p.Status != satellitev1.InstanceStatus_INSTANCE_STATUS_ONLINE ||
		p.Health != satellitev1.ProcessHealth_PROCESS_HEALTH_HEALTHY || p.Pid != 4242 || p.MemoryBytes != 50<<20 ||
		p.Uptime.AsDuration() != 90*time.Second || p.RequestCount != 17 || procs.Msg.Processes[0].ReportedAt == nil {
		t.Errorf("process %v, want it as reported", procs.Msg.Processes[0])
	}

	dropped, err := f.redAdmin.ListDroppedEventReports(ctx, connect.NewRequest(&adminv1.ListDroppedEventReportsRequest{
		SatelliteId: f.redSat.id, TeamId: red, PageSize: 1,
	}))
	if err != nil {
		t.Fatal(err)
	}
	if dropped.Msg.TotalDropped != 12 || len(dropped.Msg.Reports) != 1 || dropped.Msg.Reports[0].Reason != "buffer full" ||
		dropped.Msg.NextPageToken == "" {
		t.Errorf("dropped events: %v, want 12 in all, one report a page", dropped.Msg)
	}
	rest, err := f.redAdmin.ListDroppedEventReports(ctx, connect.NewRequest(&adminv1.ListDroppedEventReportsRequest{
		SatelliteId: f.redSat.id, TeamId: red, PageSize: 1, PageToken: dropped.Msg.NextPageToken,
	}))
	if err != nil {
		t.Fatal(err)
	}
	if len(rest.Msg.Reports) != 1 || rest.Msg.Reports[0].Id == dropped.Msg.Reports[0].Id ||
		rest.Msg.Reports[0].Count+dropped.Msg.Reports[0].Count != 12 {
		t.Errorf("second page of dropped events: %v after %v", rest.Msg.Reports, dropped.Msg.Reports)
	}

	// A global admin reads any satellite, the global one included, without a team.
	global, err := b.admin(0).ListSatelliteHeartbeats(ctx, connect.NewRequest(&adminv1.ListSatelliteHeartbeatsRequest{
		SatelliteId: f.global.id,
	}))
	if err != nil {
		t.Fatal(err)
	}
	if len(global.Msg.Heartbeats) != 1 || global.Msg.NextPageToken != "" {
		t.Errorf("global satellite: %v, want its one heartbeat", global.Msg)
	}
	if _, err := b.admin(0).ListSatelliteProcesses(ctx, connect.NewRequest(&adminv1.ListSatelliteProcessesRequest{
		SatelliteId: f.redSat.id,
	})); err != nil {
		t.Errorf("global admin reading a team satellite's processes: %v", err)
	}
}

// TestSatelliteReportsStayWithinTheirTeam is the attacker's view: another team's admin names their own
// team, the victim's team or none, and probes ids; nothing answers differently for a satellite that exists
// elsewhere than for one that does not exist.
func TestSatelliteReportsStayWithinTheirTeam(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	f := setupReports(t, b)
	ctx := t.Context()
	blue, red, missing := f.blue.team.ID.String(), f.red.team.ID.String(), uuid.NewString()
	type call func(satelliteID, teamID string) error
	calls := map[string]call{
		"heartbeats": func(s, team string) error {
			_, err := f.blueAd.ListSatelliteHeartbeats(ctx, connect.NewRequest(&adminv1.ListSatelliteHeartbeatsRequest{SatelliteId: s, TeamId: team}))
			return err
		},
		"processes": func(s, team string) error {
			_, err := f.blueAd.ListSatelliteProcesses(ctx, connect.NewRequest(&adminv1.ListSatelliteProcessesRequest{SatelliteId: s, TeamId: team}))
			return err
		},
		"dropped events": func(s, team string) error {
			_, err := f.blueAd.ListDroppedEventReports(ctx, connect.NewRequest(&adminv1.ListDroppedEventReportsRequest{SatelliteId: s, TeamId: team}))
			return err
		},
	}
	for name, c := range calls {
		for _, tc := range []struct {
			what, satellite, team string
			want                  connect.Code
		}{
			{"red's satellite under blue", f.redSat.id, blue, connect.CodeNotFound},
			{"the global satellite under blue", f.global.id, blue, connect.CodeNotFound},
			{"red's satellite under red", f.redSat.id, red, connect.CodePermissionDenied},
			{"red's satellite without a team", f.redSat.id, "", connect.CodePermissionDenied},
			{"the global satellite without a team", f.global.id, "", connect.CodePermissionDenied},
		} {
			err := c(tc.satellite, tc.team)
			if connect.CodeOf(err) != tc.want {
				t.Errorf("%s of %s: %v, want %v", name, tc.what, err, tc.want)
			}
		}
		// A satellite of another team reads exactly as one that does not exist.
		other, none := c(f.redSat.id, blue), c(missing, blue)
		if other == nil || none == nil || other.Error() != strings.ReplaceAll(none.Error(), missing, f.redSat.id) {
			t.Errorf("%s: another team's satellite answers %v, a missing one %v", name, other, none)
		}
		// Malformed input is refused before anything is read.
		if err := c("not-a-uuid", blue); connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Errorf("%s with a malformed id: %v, want invalid_argument", name, err)
		}
	}
	// A page token is opaque and checked.
	if _, err := f.redAdmin.ListSatelliteHeartbeats(ctx, connect.NewRequest(&adminv1.ListSatelliteHeartbeatsRequest{
		SatelliteId: f.redSat.id, TeamId: red, PageToken: "AAAA",
	})); connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Errorf("forged page token: %v, want invalid_argument", err)
	}
}

func TestTemplateHealthIsReadableWithinItsScope(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	ctx := t.Context()
	red, blue := seedViewers(t, b, "hl-red"), seedViewers(t, b, "hl-blue")
	st := b.store()
	private, err := st.CreateCatalogEntry(ctx, store.CatalogEntry{
		TeamID: &red.team.ID, Slug: "hl-red-tools", Name: "Red tools", Transport: "stdio", Command: "npx",
	}, store.SystemAuthor)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateInstallation(ctx, store.Installation{TeamID: red.team.ID, CatalogEntryID: private.ID, Name: "tools"}, store.SystemAuthor); err != nil {
		t.Fatal(err)
	}
	catalog := func(token string) apiv1connect.CatalogServiceClient {
		return apiv1connect.NewCatalogServiceClient(testClient, b.replicas[0].url, connect.WithInterceptors(withBearer(token)))
	}
	health := func(c apiv1connect.CatalogServiceClient, id, team string) (*apiv1.TemplateHealth, error) {
		resp, err := c.GetCatalogEntryHealth(ctx, connect.NewRequest(&apiv1.GetCatalogEntryHealthRequest{Id: id, TeamId: team}))
		if err != nil {
			return nil, err
		}
		return resp.Msg.Health, nil
	}
	redCatalog, blueCatalog := catalog(red.adminToken), catalog(blue.adminToken)

	// Before the job has run there is nothing to report, and that is not an error.
	if h, err := health(redCatalog, private.ID.String(), red.team.ID.String()); err != nil ||
		h.Status != apiv1.TemplateHealthStatus_TEMPLATE_HEALTH_STATUS_UNSPECIFIED || h.AggregatedAt != nil {
		t.Fatalf("before aggregation: %v, %v; want an empty health", h, err)
	}
	if _, err := st.AggregateTemplateHealth(ctx); err != nil {
		t.Fatal(err)
	}
	h, err := health(redCatalog, private.ID.String(), red.team.ID.String())
	if err != nil {
		t.Fatal(err)
	}
	if h.Instances != 3 || h.Failing != 0 || h.Status != apiv1.TemplateHealthStatus_TEMPLATE_HEALTH_STATUS_HEALTHY ||
		h.AggregatedAt == nil {
		t.Errorf("red's template: %v, want 3 instances, none failing, healthy", h)
	}

	// The global template is installed by both teams: its figures are every team's, for global admins only.
	global := red.installation.CatalogEntryID.String()
	if _, err := health(redCatalog, global, red.team.ID.String()); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Errorf("team admin reading a global template's health: %v, want permission_denied", err)
	}
	if _, err := health(redCatalog, global, ""); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Errorf("team admin reading a global template's health without a team: %v, want permission_denied", err)
	}
	if h, err := health(catalog(adminToken), global, ""); err != nil || h.Instances != 3 {
		t.Errorf("global admin reading a global template's health: %v, %v; want red's 3 instances", h, err)
	}
	// Another team sees red's private template as missing, and team members who are not admins get nothing.
	if _, err := health(blueCatalog, private.ID.String(), blue.team.ID.String()); connect.CodeOf(err) != connect.CodeNotFound {
		t.Errorf("blue's admin naming red's template under blue: %v, want not_found", err)
	}
	if _, err := health(blueCatalog, private.ID.String(), red.team.ID.String()); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Errorf("blue's admin naming red: %v, want permission_denied", err)
	}
	if _, err := health(catalog(red.aliceToken), private.ID.String(), red.team.ID.String()); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Errorf("a team user: %v, want permission_denied", err)
	}
}
