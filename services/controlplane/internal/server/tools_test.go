package server_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	"github.com/orrery/orrery/gen/orrery/api/v1/apiv1connect"
	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/internal/tokens"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// toolsFixture is team A with an installation whose two members' instances reported different tools,
// and team B with an installation of its own.
type toolsFixture struct {
	x          tenants
	installA   store.Installation
	installB   store.Installation
	instanceOf map[uuid.UUID]string // team A's instances by user
}

func (b *testBundle) toolClient(token string) apiv1connect.ToolServiceClient {
	return apiv1connect.NewToolServiceClient(testClient, b.replicas[0].url, connect.WithInterceptors(withBearer(token)))
}

func seedTools(t *testing.T, b *testBundle) toolsFixture {
	t.Helper()
	ctx := t.Context()
	st := b.store()
	f := toolsFixture{x: seedTenants(t, b), instanceOf: map[uuid.UUID]string{}}
	entry, err := st.CreateCatalogEntry(ctx, store.CatalogEntry{Slug: "everything", Name: "Everything", Transport: "stdio", Command: "npx"}, store.SystemAuthor)
	if err != nil {
		t.Fatal(err)
	}
	install := func(team store.Team) store.Installation {
		in, err := st.CreateInstallation(ctx, store.Installation{TeamID: team.ID, CatalogEntryID: entry.ID, Name: "everything", RequestLoggingEnabled: true}, store.SystemAuthor)
		if err != nil {
			t.Fatal(err)
		}
		return in
	}
	f.installA, f.installB = install(f.x.teamA), install(f.x.teamB)
	rows, err := b.pool(t).Query(ctx, "select id, user_id from instances where installation_id = $1", f.installA.ID)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id string
		var user uuid.UUID
		if err := rows.Scan(&id, &user); err != nil {
			t.Fatal(err)
		}
		f.instanceOf[user] = id
	}
	if rows.Err() != nil || len(f.instanceOf) != 2 {
		t.Fatalf("team A's instances: %v, %v", f.instanceOf, rows.Err())
	}

	object := func(js string) *structpb.Struct {
		s := &structpb.Struct{}
		if err := s.UnmarshalJSON([]byte(js)); err != nil {
			t.Fatal(err)
		}
		return s
	}
	echo := &satellitev1.Tool{Name: "echo", Description: "Echoes back the input", InputSchema: object(`{"type":"object"}`)}
	discovered := func(user uuid.UUID, tools ...*satellitev1.Tool) *satellitev1.Event {
		return &satellitev1.Event{
			Id: uuid.NewString(), OccurredAt: timestamppb.Now(), TeamId: f.x.teamA.ID.String(),
			InstallationId: f.installA.ID.String(), InstanceId: f.instanceOf[user],
			Payload: &satellitev1.Event_ToolsDiscovered{ToolsDiscovered: &satellitev1.ToolsDiscovered{Tools: tools}},
		}
	}
	sat := b.activeSatellite(t, "")
	_, err = sat.client.EmitEvents(ctx, connect.NewRequest(&satellitev1.EmitEventsRequest{Events: []*satellitev1.Event{
		discovered(f.x.userA.user.ID, echo, &satellitev1.Tool{
			Name: "get-sum", Title: "Sum", Description: "Adds two numbers",
			InputSchema:  object(`{"type":"object","properties":{"a":{"type":"number"},"b":{"type":"number"}}}`),
			OutputSchema: object(`{"type":"object","properties":{"sum":{"type":"number"}}}`),
			Annotations:  object(`{"readOnlyHint":true}`),
		}),
		discovered(f.x.adminA.user.ID, echo, &satellitev1.Tool{Name: "get-env", Description: "Lists the environment"}),
	}}))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func toolNames(tools []*apiv1.Tool) string {
	var names []string
	for _, tool := range tools {
		names = append(names, tool.Name)
	}
	return strings.Join(names, ",")
}

func toolNamed(t *testing.T, tools []*apiv1.Tool, name string) *apiv1.Tool {
	t.Helper()
	for _, tool := range tools {
		if tool.Name == name {
			return tool
		}
	}
	t.Fatalf("no tool %q among %s", name, toolNames(tools))
	return nil
}

func TestToolsAreListedAsTheEndpointShowsThem(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	f := seedTools(t, b)
	ctx := t.Context()
	list := func(c caller) *apiv1.ListToolsResponse {
		t.Helper()
		resp, err := b.toolClient(c.token).ListTools(ctx, connect.NewRequest(&apiv1.ListToolsRequest{
			TeamId: f.x.teamA.ID.String(), InstallationId: f.installA.ID.String()}))
		if err != nil {
			t.Fatal(err)
		}
		return resp.Msg
	}

	// A team user sees their own instance's tools, a team admin every member's.
	user := list(f.x.userA)
	if got := toolNames(user.Tools); got != "echo,get-sum" {
		t.Errorf("team user's tools %s, want their own instance's echo,get-sum", got)
	}
	if got := toolNames(list(f.x.adminA).Tools); got != "echo,get-env,get-sum" {
		t.Errorf("team admin's tools %s, want every instance's", got)
	}

	echo := toolNamed(t, user.Tools, "echo")
	counter, err := tokens.Load()
	if err != nil {
		t.Fatal(err)
	}
	// The definition a client receives for echo in tools/list.
	listed := `{"name":"everything__echo","description":"Echoes back the input","inputSchema":{"type":"object"}}`
	if echo.ExposedName != "everything__echo" || echo.TokenCount != uint32(counter.Count(listed)) || !echo.Selected || echo.Hidden {
		t.Errorf("echo = %v, want exposed as everything__echo, %d tokens, selected", echo, counter.Count(listed))
	}
	sum := toolNamed(t, user.Tools, "get-sum")
	if sum.Title != "Sum" || sum.OutputSchema.GetFields()["type"].GetStringValue() != "object" ||
		!sum.Annotations.GetFields()["readOnlyHint"].GetBoolValue() || sum.InputSchema.GetFields()["properties"] == nil {
		t.Errorf("get-sum lost parts of its definition: %v", sum)
	}
	if user.TotalTokens != echo.TokenCount+sum.TokenCount {
		t.Errorf("total tokens %d, want %d", user.TotalTokens, echo.TokenCount+sum.TokenCount)
	}

	// The REST route answers the same.
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet,
		b.replicas[0].url+"/api/teams/"+f.x.teamA.ID.String()+"/mcp/installations/"+f.installA.ID.String()+"/tools", nil)
	req.Header.Set("Authorization", "Bearer "+f.x.userA.token)
	res, err := testClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	var rest struct {
		Tools []struct {
			ExposedName string `json:"exposedName"`
			TokenCount  uint32 `json:"tokenCount"`
		} `json:"tools"`
	}
	if err := json.Unmarshal(body, &rest); err != nil || res.StatusCode != http.StatusOK || len(rest.Tools) != 2 ||
		rest.Tools[0].ExposedName != "everything__echo" || rest.Tools[0].TokenCount != echo.TokenCount {
		t.Errorf("REST tools: %d %s (%v)", res.StatusCode, body, err)
	}
}

func TestToolSelectionIsTheAdminsAndHiddenToolsTheMembers(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	f := seedTools(t, b)
	ctx := t.Context()
	team, installation := f.x.teamA.ID.String(), f.installA.ID.String()
	setSelection := func(c caller, sel *apiv1.ToolSelection) error {
		_, err := b.toolClient(c.token).SetToolSelection(ctx, connect.NewRequest(&apiv1.SetToolSelectionRequest{
			TeamId: team, InstallationId: installation, Selection: sel}))
		return err
	}

	sat := b.activeSatellite(t, "")
	before := getConfiguration(t, sat, "")

	if err := setSelection(f.x.userA, &apiv1.ToolSelection{Deny: []string{"echo"}}); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Errorf("team user setting the team's selection: %v, want PermissionDenied", err)
	}
	err := setSelection(f.x.adminA, &apiv1.ToolSelection{Allow: []string{"*"}, Deny: []string{"get-*", "[a-"}})
	if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), `selection.deny[1] "[a-": syntax error in pattern`) {
		t.Errorf("malformed pattern: %v, want InvalidArgument naming it", err)
	}
	tooMany := make([]string, 101)
	for i := range tooMany {
		tooMany[i] = "t"
	}
	if err := setSelection(f.x.adminA, &apiv1.ToolSelection{Deny: tooMany}); connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Errorf("101 deny patterns: %v, want InvalidArgument", err)
	}
	if err := setSelection(f.x.adminA, &apiv1.ToolSelection{Deny: []string{strings.Repeat("x", 257)}}); connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Errorf("a 257-character pattern: %v, want InvalidArgument", err)
	}
	long := map[string]string{}
	for i := range 20 {
		long[fmt.Sprint("tool-", i)] = strings.Repeat("d", 4000)
	}
	if err := setSelection(f.x.adminA, &apiv1.ToolSelection{Descriptions: long}); connect.CodeOf(err) != connect.CodeInvalidArgument ||
		!strings.Contains(err.Error(), "at most 65536") {
		t.Errorf("80 KB of descriptions: %v, want InvalidArgument with the bound", err)
	}
	if err := setSelection(f.x.adminA, &apiv1.ToolSelection{
		Deny: []string{"get-*"}, Descriptions: map[string]string{"echo": "Repeat a message."},
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.toolClient(f.x.userA.token).SetHiddenTools(ctx, connect.NewRequest(&apiv1.SetHiddenToolsRequest{
		TeamId: team, InstallationId: installation, Hidden: []string{"[x"}})); connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Errorf("malformed hidden pattern: %v, want InvalidArgument", err)
	}
	if _, err := b.toolClient(f.x.userA.token).SetHiddenTools(ctx, connect.NewRequest(&apiv1.SetHiddenToolsRequest{
		TeamId: team, InstallationId: installation, Hidden: []string{"echo"}})); err != nil {
		t.Fatal(err)
	}

	resp, err := b.toolClient(f.x.userA.token).ListTools(ctx, connect.NewRequest(&apiv1.ListToolsRequest{TeamId: team, InstallationId: installation}))
	if err != nil {
		t.Fatal(err)
	}
	echo, sum := toolNamed(t, resp.Msg.Tools, "echo"), toolNamed(t, resp.Msg.Tools, "get-sum")
	if echo.Description != "Repeat a message." || echo.ServerDescription != "Echoes back the input" || !echo.Selected || !echo.Hidden {
		t.Errorf("echo = %v, want the override, selected, hidden by the user", echo)
	}
	if sum.Selected || sum.Hidden || resp.Msg.TotalTokens != 0 {
		t.Errorf("get-sum = %v and total %d, want it denied and nothing offered", sum, resp.Msg.TotalTokens)
	}
	got, err := b.toolClient(f.x.adminA.token).GetToolSelection(ctx, connect.NewRequest(&apiv1.GetToolSelectionRequest{TeamId: team, InstallationId: installation}))
	if err != nil || strings.Join(got.Msg.Selection.Deny, ",") != "get-*" || len(got.Msg.Hidden) != 0 {
		t.Errorf("admin's view of the selection: %v, %v; the user's hidden tools are theirs alone", got, err)
	}

	var audited string
	if err := b.pool(t).QueryRow(ctx, `select details::text from audit_events where team_id = $1 and action = 'installation.tool_selection_changed' and target = $2`,
		f.x.teamA.ID, installation).Scan(&audited); err != nil || !strings.Contains(audited, `"deny": "get-*"`) {
		t.Errorf("audit of the selection change: %q, %v", audited, err)
	}

	// The satellite receives the selection with each instance, without a new content hash.
	after := getConfiguration(t, sat, before.Etag)
	if after.NotModified {
		t.Fatal("configuration not modified after a selection change")
	}
	hashes := map[string]string{}
	for _, inst := range before.Instances {
		hashes[inst.Id] = inst.ContentHash
	}
	for _, inst := range after.Instances {
		if inst.TeamId != team {
			continue
		}
		sel := inst.GetToolSelection()
		wantHidden := ""
		if inst.UserId == f.x.userA.user.ID.String() {
			wantHidden = "echo"
		}
		if strings.Join(sel.GetDeny(), ",") != "get-*" || strings.Join(sel.GetHidden(), ",") != wantHidden ||
			sel.GetDescriptions()["echo"] != "Repeat a message." {
			t.Errorf("instance %s got selection %v", inst.Id, sel)
		}
		if inst.ContentHash != hashes[inst.Id] {
			t.Errorf("instance %s changed its content hash for a selection change: it would restart", inst.Id)
		}
	}
}

// TestAnotherTeamsInstallationLooksMissing is what an attacker in team B tries: naming team A's
// installation under their own team, where they are admin. Each answer must be the one a made-up id gets.
func TestAnotherTeamsInstallationLooksMissing(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	f := seedTools(t, b)
	ctx := t.Context()
	attacker := b.toolClient(f.x.adminB.token)
	teamB := f.x.teamB.ID.String()
	for _, id := range []string{f.installA.ID.String(), uuid.NewString()} {
		calls := map[string]error{}
		_, calls["ListTools"] = attacker.ListTools(ctx, connect.NewRequest(&apiv1.ListToolsRequest{TeamId: teamB, InstallationId: id}))
		_, calls["GetToolSelection"] = attacker.GetToolSelection(ctx, connect.NewRequest(&apiv1.GetToolSelectionRequest{TeamId: teamB, InstallationId: id}))
		_, calls["SetToolSelection"] = attacker.SetToolSelection(ctx, connect.NewRequest(&apiv1.SetToolSelectionRequest{
			TeamId: teamB, InstallationId: id, Selection: &apiv1.ToolSelection{Deny: []string{"*"}}}))
		_, calls["SetHiddenTools"] = attacker.SetHiddenTools(ctx, connect.NewRequest(&apiv1.SetHiddenToolsRequest{TeamId: teamB, InstallationId: id, Hidden: []string{"*"}}))
		for name, err := range calls {
			var ce *connect.Error
			if !errors.As(err, &ce) || ce.Code() != connect.CodeNotFound || strings.ReplaceAll(ce.Message(), id, "ID") != "installation ID: not found" {
				t.Errorf("%s of %s from team B: %v, want NotFound like any unknown id", name, id, err)
			}
		}
	}
	// Team A's admin still sees every tool: nothing the attacker sent was stored.
	resp, err := b.toolClient(f.x.adminA.token).ListTools(ctx, connect.NewRequest(&apiv1.ListToolsRequest{
		TeamId: f.x.teamA.ID.String(), InstallationId: f.installA.ID.String()}))
	if err != nil {
		t.Fatal(err)
	}
	for _, tool := range resp.Msg.Tools {
		if !tool.Selected || tool.Hidden {
			t.Errorf("tool %s changed by another team: %v", tool.Name, tool)
		}
	}
	// Each change is a command to satellites other teams share: a member who keeps changing is held back.
	member := b.toolClient(f.x.userB.token)
	var refused int
	for i := range 70 {
		_, err := member.SetHiddenTools(ctx, connect.NewRequest(&apiv1.SetHiddenToolsRequest{
			TeamId: teamB, InstallationId: f.installB.ID.String(), Hidden: []string{fmt.Sprint("tool-", i)}}))
		if connect.CodeOf(err) == connect.CodeResourceExhausted {
			refused = i
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if refused < 55 || refused > 65 { // a slow run refills a token or two
		t.Errorf("hidden-tool changes refused from call %d on, want after a burst of 60", refused)
	}
	// Team B's own installation, which reported nothing, lists no tools rather than team A's.
	own, err := attacker.ListTools(ctx, connect.NewRequest(&apiv1.ListToolsRequest{TeamId: teamB, InstallationId: f.installB.ID.String()}))
	if err != nil || len(own.Msg.Tools) != 0 {
		t.Errorf("team B's installation: %v, %v", own, err)
	}
}
