package server_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	"github.com/orrery/orrery/gen/orrery/api/v1/apiv1connect"
	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/services/controlplane/internal/bearer"
	"github.com/orrery/orrery/services/controlplane/internal/instanceapi"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// bearerTransport signs every request, unary or streaming, with a personal API token.
type bearerTransport struct {
	token string
	next  http.RoundTripper
}

func (b bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}

// apiToken stores a personal API token for a user and returns it.
func (b *testBundle) apiToken(t testing.TB, userID uuid.UUID) string {
	t.Helper()
	token, err := bearer.New(bearer.APIToken)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.store().CreateAPIToken(t.Context(), bearer.Hash(token), userID, "test", nil); err != nil {
		t.Fatal(err)
	}
	return token
}

// instanceClient calls InstanceService on replica i as the owner of token, over keep-alive connections as a
// browser or the CLI would.
func (b *testBundle) instanceClient(i int, token string) apiv1connect.InstanceServiceClient {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = 8
	return apiv1connect.NewInstanceServiceClient(&http.Client{Transport: bearerTransport{token, transport}}, b.replicas[i].url)
}

// viewers is a seeded team with a team admin, and clients of replica 0 for its members.
type viewers struct {
	teamFixture
	carol             store.User // team admin
	alice, bob, admin apiv1connect.InstanceServiceClient
	aliceToken        string
	adminToken        string
}

func seedViewers(t *testing.T, b *testBundle, slug string) viewers {
	t.Helper()
	f := seedTeam(t, b, slug)
	carol, err := b.store().CreateUser(t.Context(), slug+"-carol", "carol@"+slug+".test", "Carol")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.store().AddMember(t.Context(), f.team.ID, carol.ID, store.RoleTeamAdmin); err != nil {
		t.Fatal(err)
	}
	v := viewers{teamFixture: f, carol: carol, aliceToken: b.apiToken(t, f.alice.ID)}
	v.alice = b.instanceClient(0, v.aliceToken)
	v.bob = b.instanceClient(0, b.apiToken(t, f.bob.ID))
	v.adminToken = b.apiToken(t, carol.ID)
	v.admin = b.instanceClient(0, v.adminToken)
	return v
}

func emit(t testing.TB, s *satellite, events ...*satellitev1.Event) {
	t.Helper()
	if _, err := s.client.EmitEvents(context.Background(), connect.NewRequest(&satellitev1.EmitEventsRequest{Events: events})); err != nil {
		t.Error(err)
	}
}

func requestEvent(f teamFixture, u store.User, tool string) *satellitev1.Event {
	return &satellitev1.Event{
		Id: uuid.NewString(), OccurredAt: timestamppb.Now(), TeamId: f.team.ID.String(),
		InstallationId: f.installation.ID.String(), InstanceId: f.instanceID(u),
		Payload: &satellitev1.Event_RequestLog{RequestLog: &satellitev1.RequestLog{
			UserId: u.ID.String(), ToolName: tool, Duration: durationpb.New(12 * time.Millisecond), Success: true,
			Request:  structpb.NewStringValue("args of " + tool),
			Response: structpb.NewStringValue("result of " + tool),
			TraceId:  traceIDOf(tool),
		}},
	}
}

// traceIDOf is the W3C trace id the test's call of tool carries.
func traceIDOf(tool string) string {
	sum := sha256.Sum256([]byte(tool))
	return hex.EncodeToString(sum[:16])
}

func TestInstancesAreVisibleToTheirUserAndTeamAdmins(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	red := seedViewers(t, b, "red")
	sat := b.activeSatellite(t, "")
	emit(t, sat,
		statusEvent(red.teamFixture, red.teamFixture.alice, satellitev1.InstanceStatus_INSTANCE_STATUS_ONLINE),
		statusEvent(red.teamFixture, red.teamFixture.bob, satellitev1.InstanceStatus_INSTANCE_STATUS_ERROR),
		logEvent(red.teamFixture, red.teamFixture.alice, "alice's line"),
		logEvent(red.teamFixture, red.teamFixture.bob, "bob's line"),
		requestEvent(red.teamFixture, red.teamFixture.alice, "read_file"),
		requestEvent(red.teamFixture, red.teamFixture.bob, "write_file"),
	)
	ctx := t.Context()
	team, installation := red.team.ID.String(), red.installation.ID.String()

	list := func(c apiv1connect.InstanceServiceClient) []*apiv1.Instance {
		t.Helper()
		resp, err := c.ListInstances(ctx, connect.NewRequest(&apiv1.ListInstancesRequest{TeamId: team, InstallationId: installation}))
		if err != nil {
			t.Fatal(err)
		}
		return resp.Msg.Instances
	}
	if got := list(red.alice); len(got) != 1 || got[0].Id != red.instanceID(red.teamFixture.alice) ||
		got[0].Status != satellitev1.InstanceStatus_INSTANCE_STATUS_ONLINE {
		t.Errorf("alice lists %v, want only her online instance", got)
	}
	if got := list(red.admin); len(got) != 3 {
		t.Errorf("team admin lists %d instances, want all 3", len(got))
	}

	st, err := red.admin.GetInstanceStatus(ctx, connect.NewRequest(&apiv1.GetInstanceStatusRequest{
		TeamId: team, InstanceId: red.instanceID(red.teamFixture.bob),
	}))
	if err != nil {
		t.Fatal(err)
	}
	if st.Msg.Instance.Status != satellitev1.InstanceStatus_INSTANCE_STATUS_ERROR || len(st.Msg.RecentEvents) != 1 ||
		st.Msg.RecentEvents[0].Status != satellitev1.InstanceStatus_INSTANCE_STATUS_ERROR {
		t.Errorf("bob's status as the admin sees it: %v", st.Msg)
	}
	_, err = red.alice.GetInstanceStatus(ctx, connect.NewRequest(&apiv1.GetInstanceStatusRequest{
		TeamId: team, InstanceId: red.instanceID(red.teamFixture.bob),
	}))
	wantCode(t, "alice reading bob's status", err, connect.CodeNotFound, "")

	logs, err := red.alice.ListServerLogs(ctx, connect.NewRequest(&apiv1.ListServerLogsRequest{TeamId: team, InstallationId: installation}))
	if err != nil {
		t.Fatal(err)
	}
	if len(logs.Msg.Lines) != 1 || logs.Msg.Lines[0].Message != "alice's line" {
		t.Errorf("alice's server logs: %v", logs.Msg.Lines)
	}
	logs, err = red.admin.ListServerLogs(ctx, connect.NewRequest(&apiv1.ListServerLogsRequest{TeamId: team, InstallationId: installation}))
	if err != nil {
		t.Fatal(err)
	}
	if len(logs.Msg.Lines) != 2 || logs.Msg.Lines[0].Message != "bob's line" {
		t.Errorf("admin's server logs, newest first: %v", logs.Msg.Lines)
	}

	reqs, err := red.admin.ListRequestLogs(ctx, connect.NewRequest(&apiv1.ListRequestLogsRequest{TeamId: team, InstallationId: installation, PageSize: 1}))
	if err != nil {
		t.Fatal(err)
	}
	if len(reqs.Msg.RequestLogs) != 1 || reqs.Msg.RequestLogs[0].ToolName != "write_file" || reqs.Msg.NextBeforeId == 0 ||
		reqs.Msg.RequestLogs[0].Request != nil || reqs.Msg.RequestLogs[0].TraceId != traceIDOf("write_file") {
		t.Fatalf("admin's first page of request logs: %v", reqs.Msg)
	}
	bobsCall := reqs.Msg.RequestLogs[0].Id
	reqs, err = red.admin.ListRequestLogs(ctx, connect.NewRequest(&apiv1.ListRequestLogsRequest{
		TeamId: team, InstallationId: installation, PageSize: 1, BeforeId: reqs.Msg.NextBeforeId,
	}))
	if err != nil {
		t.Fatal(err)
	}
	if len(reqs.Msg.RequestLogs) != 1 || reqs.Msg.RequestLogs[0].ToolName != "read_file" {
		t.Fatalf("admin's second page of request logs: %v", reqs.Msg)
	}
	detail, err := red.admin.GetRequestLog(ctx, connect.NewRequest(&apiv1.GetRequestLogRequest{
		TeamId: team, InstallationId: installation, RequestId: bobsCall,
	}))
	if err != nil {
		t.Fatal(err)
	}
	if detail.Msg.RequestLog.Response.GetStringValue() != "result of write_file" || detail.Msg.RequestLog.TraceId != traceIDOf("write_file") {
		t.Errorf("request log detail: %v", detail.Msg.RequestLog)
	}
	_, err = red.alice.GetRequestLog(ctx, connect.NewRequest(&apiv1.GetRequestLogRequest{
		TeamId: team, InstallationId: installation, RequestId: bobsCall,
	}))
	wantCode(t, "alice reading bob's request", err, connect.CodeNotFound, "")

	// Streams narrow a team user to their own instance too.
	watch, err := red.alice.WatchInstanceStatus(ctx, connect.NewRequest(&apiv1.WatchInstanceStatusRequest{TeamId: team, InstallationId: installation}))
	if err != nil {
		t.Fatal(err)
	}
	if !watch.Receive() || len(watch.Msg().Events) != 1 || watch.Msg().Events[0].InstanceId != red.instanceID(red.teamFixture.alice) {
		t.Errorf("alice's status watch: %v, %v; want only her event", watch.Msg(), watch.Err())
	}
	watch.Close()
	calls, err := red.alice.StreamRequestLogs(ctx, connect.NewRequest(&apiv1.StreamRequestLogsRequest{TeamId: team, InstallationId: installation}))
	if err != nil {
		t.Fatal(err)
	}
	if !calls.Receive() || len(calls.Msg().RequestLogs) != 1 || calls.Msg().RequestLogs[0].ToolName != "read_file" {
		t.Errorf("alice's request log stream: %v, %v; want only her call", calls.Msg(), calls.Err())
	}
	calls.Close()
}

// streamed is what a resuming client received: the ids in order and the cursor to resume from.
type streamed struct {
	ids    []int64
	cursor int64
}

// receiveSome opens a stream from the cursor, receives at least n entries, and disconnects.
func receiveSome[T any](t *testing.T, s *streamed, n int, open func(ctx context.Context, after int64) (*connect.ServerStreamForClient[T], error), entries func(*T) ([]int64, int64)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	stream, err := open(ctx, s.cursor)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	got := 0
	for got < n && stream.Receive() {
		ids, cursor := entries(stream.Msg())
		s.ids = append(s.ids, ids...)
		s.cursor = cursor
		got += len(ids)
	}
	if got < n {
		t.Fatalf("stream ended after %d entries: %v", got, stream.Err())
	}
}

func idsOf[E any](entries []E, id func(E) int64) []int64 {
	ids := make([]int64, len(entries))
	for i, e := range entries {
		ids[i] = id(e)
	}
	return ids
}

// checkExactlyOnce fails unless ids are total distinct ids in increasing order.
func checkExactlyOnce(t *testing.T, what string, ids []int64, total int) {
	t.Helper()
	for i := 1; i < len(ids); i++ {
		if ids[i] <= ids[i-1] {
			t.Fatalf("%s: id %d after %d: a duplicate or out of order", what, ids[i], ids[i-1])
		}
	}
	if len(ids) != total {
		t.Fatalf("%s: received %d entries, want %d", what, len(ids), total)
	}
}

func TestStreamsResumeAcrossReplicasWithoutLossOrDuplicates(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{replicas: 2})
	v := seedViewers(t, b, "resume")
	sat := b.activeSatellite(t, v.team.ID.String())
	watcher := b.instanceClient(1, b.apiToken(t, v.carol.ID))
	team, installation := v.team.ID.String(), v.installation.ID.String()
	const rounds = 30 // 60 log lines: within the 100 retained

	// A watch starts from a snapshot; its cursor is where the client resumes.
	status, err := watcher.WatchInstanceStatus(t.Context(), connect.NewRequest(&apiv1.WatchInstanceStatusRequest{
		TeamId: team, InstallationId: installation, Snapshot: true,
	}))
	if err != nil {
		t.Fatal(err)
	}
	if !status.Receive() || len(status.Msg().Instances) != 3 {
		t.Fatalf("first message of a status watch: %v, %v; want a snapshot of 3 instances", status.Msg(), status.Err())
	}
	events := streamed{cursor: status.Msg().Cursor}
	status.Close()

	var wg sync.WaitGroup
	// Lines of one installation are stored concurrently through both replicas, so their ids are allocated
	// by transactions that race to commit.
	for i, u := range []store.User{v.teamFixture.alice, v.teamFixture.bob} {
		emitter := b.connect(i, sat.id, sat.apiKey)
		wg.Go(func() {
			for n := range rounds {
				emit(t, emitter, logEvent(v.teamFixture, u, fmt.Sprintf("%s %d", u.Slug, n)))
			}
		})
	}
	wg.Go(func() {
		for i := range rounds {
			status := satellitev1.InstanceStatus_INSTANCE_STATUS_ONLINE
			if i%2 == 1 {
				status = satellitev1.InstanceStatus_INSTANCE_STATUS_RESTARTING
			}
			emit(t, sat, statusEvent(v.teamFixture, v.teamFixture.bob, status))
		}
	})

	// Both clients reconnect every few entries, in turns, while the satellite emits.
	var logs streamed
	for len(logs.ids) < 2*rounds || len(events.ids) < rounds {
		if len(logs.ids) < 2*rounds {
			receiveSome(t, &logs, min(15, 2*rounds-len(logs.ids)),
				func(ctx context.Context, after int64) (*connect.ServerStreamForClient[apiv1.StreamServerLogsResponse], error) {
					return watcher.StreamServerLogs(ctx, connect.NewRequest(&apiv1.StreamServerLogsRequest{
						TeamId: team, InstallationId: installation, AfterId: after,
					}))
				},
				func(m *apiv1.StreamServerLogsResponse) ([]int64, int64) {
					return idsOf(m.Lines, (*apiv1.ServerLogLine).GetId), m.Cursor
				})
		}
		if len(events.ids) < rounds {
			receiveSome(t, &events, min(7, rounds-len(events.ids)),
				func(ctx context.Context, after int64) (*connect.ServerStreamForClient[apiv1.WatchInstanceStatusResponse], error) {
					return watcher.WatchInstanceStatus(ctx, connect.NewRequest(&apiv1.WatchInstanceStatusRequest{
						TeamId: team, InstallationId: installation, AfterId: after,
					}))
				},
				func(m *apiv1.WatchInstanceStatusResponse) ([]int64, int64) {
					return idsOf(m.Events, (*apiv1.InstanceEvent).GetId), m.Cursor
				})
		}
	}
	wg.Wait()
	checkExactlyOnce(t, "server logs", logs.ids, 2*rounds)
	checkExactlyOnce(t, "status events", events.ids, rounds)
}

func TestRESTReadsReturnJSON(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	v := seedViewers(t, b, "rest")
	sat := b.activeSatellite(t, v.team.ID.String())
	emit(t, sat,
		statusEvent(v.teamFixture, v.teamFixture.alice, satellitev1.InstanceStatus_INSTANCE_STATUS_ONLINE),
		logEvent(v.teamFixture, v.teamFixture.alice, "hello"),
		requestEvent(v.teamFixture, v.teamFixture.alice, "read_file"))
	teamURL := b.replicas[0].url + "/api/teams/" + v.team.ID.String() + "/mcp"
	base := teamURL + "/installations/" + v.installation.ID.String()
	get := func(path, token string, into any) int {
		t.Helper()
		a := rest(t, http.MethodGet, base+path, token, "")
		if ct := a.contentType; a.status == http.StatusOK && ct != "application/json" {
			t.Errorf("GET %s: content type %q", path, ct)
		}
		if into != nil && a.status == http.StatusOK {
			if err := json.Unmarshal(a.body, into); err != nil {
				t.Errorf("GET %s: %v", path, err)
			}
		}
		return a.status
	}

	var status struct {
		Instances []struct{ ID, Status string }
	}
	if code := get("/status", v.aliceToken, &status); code != http.StatusOK || len(status.Instances) != 1 ||
		status.Instances[0].Status != "INSTANCE_STATUS_ONLINE" {
		t.Errorf("GET status: %d %+v", code, status)
	}
	var logs struct {
		Lines []struct{ ID, Message string }
	}
	if code := get("/logs", v.aliceToken, &logs); code != http.StatusOK || len(logs.Lines) != 1 || logs.Lines[0].Message != "hello" {
		t.Errorf("GET logs: %d %+v", code, logs)
	}
	var requests struct {
		RequestLogs []struct{ ID, ToolName string }
	}
	if code := get("/requests", v.aliceToken, &requests); code != http.StatusOK || len(requests.RequestLogs) != 1 {
		t.Fatalf("GET requests: %d %+v", code, requests)
	}
	var detail struct {
		RequestLog struct{ Request, Response any }
	}
	if code := get("/requests/"+requests.RequestLogs[0].ID, v.aliceToken, &detail); code != http.StatusOK ||
		detail.RequestLog.Response != "result of read_file" {
		t.Errorf("GET a request: %d %+v", code, detail)
	}
	if code := get("/logs", "", nil); code != http.StatusUnauthorized {
		t.Errorf("GET logs without a token: %d, want 401", code)
	}
	if code := get("/requests/999999", v.aliceToken, nil); code != http.StatusNotFound {
		t.Errorf("GET an unknown request: %d, want 404", code)
	}
	// The team-wide paths, for the admin.
	base = teamURL
	if code := get("/instances", v.adminToken, &status); code != http.StatusOK || len(status.Instances) != 3 {
		t.Errorf("GET the team's instances: %d %+v", code, status)
	}
	var one struct {
		Instance  struct{ ID string }
		ToolCount int
	}
	if code := get("/instances/"+v.instanceID(v.teamFixture.alice)+"/status", v.adminToken, &one); code != http.StatusOK ||
		one.Instance.ID != v.instanceID(v.teamFixture.alice) {
		t.Errorf("GET an instance's status: %d %+v", code, one)
	}
}

// TestRESTPatchSettings turns request logging off through the REST path; team users may not, and the team's
// satellite is told at once.
func TestRESTPatchSettings(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	v := seedViewers(t, b, "patch")
	sat := b.activeSatellite(t, v.team.ID.String())
	url := b.replicas[0].url + "/api/teams/" + v.team.ID.String() + "/mcp/installations/" + v.installation.ID.String() + "/settings"
	patch := func(token string) (int, string) {
		t.Helper()
		a := rest(t, http.MethodPatch, url, token, `{"requestLoggingEnabled": false}`)
		return a.status, string(a.body)
	}
	if code, _ := patch(v.aliceToken); code != http.StatusForbidden {
		t.Errorf("PATCH settings as a team user: %d, want 403", code)
	}
	code, body := patch(v.adminToken)
	if code != http.StatusOK || !strings.Contains(body, `"requestLoggingEnabled":false`) {
		t.Fatalf("PATCH settings as the team admin: %d %s", code, body)
	}
	cfg := getConfiguration(t, sat, "")
	for _, inst := range cfg.Instances {
		if inst.RequestLoggingEnabled {
			t.Errorf("instance %s still logs request bodies", inst.Id)
		}
	}
	if cmds := sat.poll(t, 0); len(cmds) == 0 || cmds[len(cmds)-1].Priority != satellitev1.CommandPriority_COMMAND_PRIORITY_IMMEDIATE {
		t.Errorf("after PATCH the satellite got %v, want an immediate configure", cmds)
	}
}

func TestIdleStreamSendsKeepAlives(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{instances: instanceapi.Config{KeepAlive: 20 * time.Millisecond}})
	v := seedViewers(t, b, "idle")
	sat := b.activeSatellite(t, v.team.ID.String())
	emit(t, sat, logEvent(v.teamFixture, v.teamFixture.alice, "first"))
	stream, err := v.alice.StreamServerLogs(t.Context(), connect.NewRequest(&apiv1.StreamServerLogsRequest{
		TeamId: v.team.ID.String(), InstallationId: v.installation.ID.String(),
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	receive := func() *apiv1.StreamServerLogsResponse {
		t.Helper()
		if !stream.Receive() {
			t.Fatal(stream.Err())
		}
		return stream.Msg()
	}
	first := receive()
	if len(first.Lines) != 1 || first.Cursor != first.Lines[0].Id {
		t.Fatalf("first message %v, want the stored line and its id as the cursor", first)
	}
	if keepAlive := receive(); len(keepAlive.Lines) != 0 || keepAlive.Cursor != first.Cursor {
		t.Fatalf("idle stream sent %v, want an empty message with the cursor unchanged", keepAlive)
	}
	emit(t, sat, logEvent(v.teamFixture, v.teamFixture.alice, "second"))
	for {
		m := receive()
		if len(m.Lines) == 0 {
			continue // another keep-alive
		}
		if len(m.Lines) != 1 || m.Lines[0].Message != "second" || m.Cursor != m.Lines[0].Id {
			t.Fatalf("after the keep-alive: %v", m)
		}
		return
	}
}

// TestEmptyStreamOpensAtOnce: a stream with nothing to send yet answers at once, so its client (and any
// proxy in between) sees the response headers now, not at the first entry or keep-alive an hour later.
func TestEmptyStreamOpensAtOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{instances: instanceapi.Config{KeepAlive: time.Hour}})
	v := seedViewers(t, b, "open")
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	stream, err := v.alice.StreamRequestLogs(ctx, connect.NewRequest(&apiv1.StreamRequestLogsRequest{
		TeamId: v.team.ID.String(), InstallationId: v.installation.ID.String(),
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	if !stream.Receive() {
		t.Fatalf("empty stream: %v, want an immediate empty message", stream.Err())
	}
	if m := stream.Msg(); len(m.RequestLogs) != 0 || m.Cursor != 0 {
		t.Fatalf("first message of an empty stream: %v, want no entries and cursor 0", m)
	}
	if got := stream.ResponseHeader().Get("Content-Type"); got == "" {
		t.Fatal("no response headers with the first message")
	}
}

// receiver is a server stream as its client sees it.
type receiver interface {
	Receive() bool
	Err() error
	Close() error
}

// TestEveryInstanceProcedureRefusesOtherTeams calls every InstanceService procedure as another team's admin,
// naming the team (PermissionDenied), and as a team's admin naming the other team's ids under their own
// team (NotFound), and without credentials (Unauthenticated).
func TestEveryInstanceProcedureRefusesOtherTeams(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	red := seedViewers(t, b, "red")
	blue := seedViewers(t, b, "blue")
	sat := b.activeSatellite(t, "")
	emit(t, sat, requestEvent(blue.teamFixture, blue.teamFixture.alice, "read_file"),
		logEvent(blue.teamFixture, blue.teamFixture.alice, "hello"))
	blueCalls, err := blue.admin.ListRequestLogs(t.Context(), connect.NewRequest(&apiv1.ListRequestLogsRequest{
		TeamId: blue.team.ID.String(), InstallationId: blue.installation.ID.String(),
	}))
	if err != nil || len(blueCalls.Msg.RequestLogs) != 1 {
		t.Fatalf("blue's request logs: %v, %v", blueCalls, err)
	}
	blueCall := blueCalls.Msg.RequestLogs[0].Id
	anonymous := apiv1connect.NewInstanceServiceClient(testClient, b.replicas[0].url)

	// firstOf receives a stream's first message, for the error it carries.
	firstOf := func(open func(ctx context.Context) (receiver, error)) error {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		s, err := open(ctx)
		if err != nil {
			return err
		}
		defer s.Close()
		if s.Receive() {
			return nil
		}
		return s.Err()
	}
	type call func(c apiv1connect.InstanceServiceClient, team string) error
	procedures := map[string]call{
		"ListInstances": func(c apiv1connect.InstanceServiceClient, team string) error {
			_, err := c.ListInstances(t.Context(), connect.NewRequest(&apiv1.ListInstancesRequest{
				TeamId: team, InstallationId: blue.installation.ID.String(),
			}))
			return err
		},
		"GetInstanceStatus": func(c apiv1connect.InstanceServiceClient, team string) error {
			_, err := c.GetInstanceStatus(t.Context(), connect.NewRequest(&apiv1.GetInstanceStatusRequest{
				TeamId: team, InstanceId: blue.instanceID(blue.teamFixture.alice),
			}))
			return err
		},
		"ListServerLogs": func(c apiv1connect.InstanceServiceClient, team string) error {
			_, err := c.ListServerLogs(t.Context(), connect.NewRequest(&apiv1.ListServerLogsRequest{
				TeamId: team, InstallationId: blue.installation.ID.String(),
			}))
			return err
		},
		"ListRequestLogs": func(c apiv1connect.InstanceServiceClient, team string) error {
			_, err := c.ListRequestLogs(t.Context(), connect.NewRequest(&apiv1.ListRequestLogsRequest{
				TeamId: team, InstallationId: blue.installation.ID.String(),
			}))
			return err
		},
		"GetRequestLog": func(c apiv1connect.InstanceServiceClient, team string) error {
			_, err := c.GetRequestLog(t.Context(), connect.NewRequest(&apiv1.GetRequestLogRequest{
				TeamId: team, InstallationId: blue.installation.ID.String(), RequestId: blueCall,
			}))
			return err
		},
		"RestartInstance": func(c apiv1connect.InstanceServiceClient, team string) error {
			_, err := c.RestartInstance(t.Context(), connect.NewRequest(&apiv1.RestartInstanceRequest{
				TeamId: team, InstanceId: blue.instanceID(blue.teamFixture.alice),
			}))
			return err
		},
		"WatchInstanceStatus": func(c apiv1connect.InstanceServiceClient, team string) error {
			return firstOf(func(ctx context.Context) (receiver, error) {
				return c.WatchInstanceStatus(ctx, connect.NewRequest(&apiv1.WatchInstanceStatusRequest{
					TeamId: team, InstallationId: blue.installation.ID.String(), Snapshot: true,
				}))
			})
		},
		"StreamServerLogs": func(c apiv1connect.InstanceServiceClient, team string) error {
			return firstOf(func(ctx context.Context) (receiver, error) {
				return c.StreamServerLogs(ctx, connect.NewRequest(&apiv1.StreamServerLogsRequest{
					TeamId: team, InstallationId: blue.installation.ID.String(),
				}))
			})
		},
		"StreamRequestLogs": func(c apiv1connect.InstanceServiceClient, team string) error {
			return firstOf(func(ctx context.Context) (receiver, error) {
				return c.StreamRequestLogs(ctx, connect.NewRequest(&apiv1.StreamRequestLogsRequest{
					TeamId: team, InstallationId: blue.installation.ID.String(),
				}))
			})
		},
	}
	if want := apiv1.File_orrery_api_v1_instance_proto.Services().ByName("InstanceService").Methods().Len(); len(procedures) != want {
		t.Fatalf("the test covers %d procedures of %d", len(procedures), want)
	}
	for name, call := range procedures {
		wantCode(t, name+" naming another team", call(red.admin, blue.team.ID.String()), connect.CodePermissionDenied, "")
		wantCode(t, name+" with another team's ids", call(red.admin, red.team.ID.String()), connect.CodeNotFound, "")
		wantCode(t, name+" without credentials", call(anonymous, blue.team.ID.String()), connect.CodeUnauthenticated, "")
		if err := call(blue.admin, blue.team.ID.String()); err != nil {
			t.Errorf("%s by blue's admin: %v", name, err)
		}
	}
}
