package server_test

import (
	"testing"
	"time"

	"connectrpc.com/connect"

	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/services/controlplane/internal/bearer"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// TestToolsMode sets the tool mode of a team's endpoint as its admin and a member's own mode as the
// member, and reads the mode in effect where satellites do, by introspecting the member's token: the
// member's choice wins over the team's, and neither reaches another team or can be set by an outsider.
func TestToolsMode(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	p := seedProduct(t, b)
	ctx := t.Context()
	acme, globex := p.team.ID.String(), p.other.ID.String()
	sat := b.activeSatellite(t, "")
	token := func(c *caller, team store.Team) string {
		t.Helper()
		tok, err := bearer.New(bearer.AccessToken)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.store().CreateAccessToken(ctx, store.AccessToken{
			TokenHash: bearer.Hash(tok), TeamID: team.ID, UserID: c.user.ID, ClientID: "vscode",
			Audience: "https://sat.example.test/teams/" + team.Slug + "/mcp", Scopes: []string{"mcp:read"},
			ExpiresAt: time.Now().Add(time.Hour),
		}); err != nil {
			t.Fatal(err)
		}
		return tok
	}
	memberToken, adminToken, outsiderToken := token(p.member, p.team), token(p.admin, p.team), token(p.outsider, p.other)
	introspected := func(tok string) satellitev1.ToolsMode {
		t.Helper()
		return introspect(t, sat, tok).GetToolsMode()
	}
	if got := introspected(memberToken); got != satellitev1.ToolsMode_TOOLS_MODE_ALL {
		t.Fatalf("a new team's mode = %v, want all", got)
	}

	setTeam := func(c *caller, teamID string, mode apiv1.ToolsMode) (*connect.Response[apiv1.SetTeamToolsModeResponse], error) {
		return teamClient(b, *c).SetTeamToolsMode(ctx, connect.NewRequest(&apiv1.SetTeamToolsModeRequest{TeamId: teamID, ToolsMode: mode}))
	}
	setMine := func(c *caller, teamID string, mode apiv1.ToolsMode) (*connect.Response[apiv1.SetMyToolsModeResponse], error) {
		return teamClient(b, *c).SetMyToolsMode(ctx, connect.NewRequest(&apiv1.SetMyToolsModeRequest{TeamId: teamID, ToolsMode: mode}))
	}
	_, err := setTeam(p.member, acme, apiv1.ToolsMode_TOOLS_MODE_SEARCH)
	wantCode(t, "a team user sets the team's mode", err, connect.CodePermissionDenied, "")
	_, err = setTeam(p.outsider, acme, apiv1.ToolsMode_TOOLS_MODE_SEARCH)
	if code := connect.CodeOf(err); code != connect.CodePermissionDenied && code != connect.CodeNotFound {
		t.Fatalf("another team's admin sets acme's mode: %v", err)
	}
	for _, mode := range []apiv1.ToolsMode{apiv1.ToolsMode_TOOLS_MODE_UNSPECIFIED, apiv1.ToolsMode(7)} {
		_, err = setTeam(p.admin, acme, mode)
		wantCode(t, "the team's mode set to "+mode.String(), err, connect.CodeInvalidArgument, "tools_mode")
	}
	team := of(setTeam(p.admin, acme, apiv1.ToolsMode_TOOLS_MODE_SEARCH)).must(t, "set the team's mode").Msg.Team
	if team.ToolsMode != apiv1.ToolsMode_TOOLS_MODE_SEARCH {
		t.Fatalf("team after setting its mode = %v", team)
	}
	got := of(teamClient(b, *p.member).GetTeam(ctx, connect.NewRequest(&apiv1.GetTeamRequest{TeamId: acme}))).must(t, "get team")
	if got.Msg.Team.ToolsMode != apiv1.ToolsMode_TOOLS_MODE_SEARCH {
		t.Errorf("a member reads the team's mode as %v", got.Msg.Team.ToolsMode)
	}
	for name, tok := range map[string]string{"member": memberToken, "admin": adminToken} {
		if got := introspected(tok); got != satellitev1.ToolsMode_TOOLS_MODE_SEARCH {
			t.Errorf("%s's token after the team chose search: %v", name, got)
		}
	}
	if got := introspected(outsiderToken); got != satellitev1.ToolsMode_TOOLS_MODE_ALL {
		t.Errorf("another team's token after acme chose search: %v, want all", got)
	}

	// A member's own choice wins over the team's, for that member only, until they follow the team again.
	mine := of(setMine(p.member, acme, apiv1.ToolsMode_TOOLS_MODE_ALL)).must(t, "set my mode").Msg
	if mine.ToolsMode != apiv1.ToolsMode_TOOLS_MODE_ALL || mine.EffectiveToolsMode != apiv1.ToolsMode_TOOLS_MODE_ALL {
		t.Errorf("after choosing all: %v", mine)
	}
	if got := introspected(memberToken); got != satellitev1.ToolsMode_TOOLS_MODE_ALL {
		t.Errorf("member's token after choosing all: %v", got)
	}
	if got := introspected(adminToken); got != satellitev1.ToolsMode_TOOLS_MODE_SEARCH {
		t.Errorf("admin's token after the member chose all: %v, want the team's search", got)
	}
	// Each member reads back their own choice with the team, and only their own.
	getTeam := func(c *caller, teamID string) *apiv1.GetTeamResponse {
		t.Helper()
		return of(teamClient(b, *c).GetTeam(ctx, connect.NewRequest(&apiv1.GetTeamRequest{TeamId: teamID}))).must(t, "get team").Msg
	}
	for _, tc := range []struct {
		who            string
		c              *caller
		teamID         string
		own, effective apiv1.ToolsMode
	}{
		{"the member", p.member, acme, apiv1.ToolsMode_TOOLS_MODE_ALL, apiv1.ToolsMode_TOOLS_MODE_ALL},
		{"the admin", p.admin, acme, apiv1.ToolsMode_TOOLS_MODE_UNSPECIFIED, apiv1.ToolsMode_TOOLS_MODE_SEARCH},
		{"a global admin outside the team", p.root, globex, apiv1.ToolsMode_TOOLS_MODE_UNSPECIFIED, apiv1.ToolsMode_TOOLS_MODE_UNSPECIFIED},
	} {
		got := getTeam(tc.c, tc.teamID)
		if got.MyToolsMode != tc.own || got.MyEffectiveToolsMode != tc.effective {
			t.Errorf("%s reads their mode as %v, in effect %v; want %v, %v", tc.who, got.MyToolsMode, got.MyEffectiveToolsMode, tc.own, tc.effective)
		}
	}
	mine = of(setMine(p.member, acme, apiv1.ToolsMode_TOOLS_MODE_UNSPECIFIED)).must(t, "follow the team").Msg
	if mine.ToolsMode != apiv1.ToolsMode_TOOLS_MODE_UNSPECIFIED || mine.EffectiveToolsMode != apiv1.ToolsMode_TOOLS_MODE_SEARCH {
		t.Errorf("after following the team: %v", mine)
	}
	if got := introspected(memberToken); got != satellitev1.ToolsMode_TOOLS_MODE_SEARCH {
		t.Errorf("member's token after following the team: %v", got)
	}
	if got := getTeam(p.member, acme); got.MyToolsMode != apiv1.ToolsMode_TOOLS_MODE_UNSPECIFIED ||
		got.MyEffectiveToolsMode != apiv1.ToolsMode_TOOLS_MODE_SEARCH {
		t.Errorf("member reads their mode after following the team as %v, in effect %v", got.MyToolsMode, got.MyEffectiveToolsMode)
	}

	// Nobody sets a mode in a team they are not a member of, and a global admin has no endpoint of their
	// own in a team they do not belong to.
	_, err = setMine(p.outsider, acme, apiv1.ToolsMode_TOOLS_MODE_SEARCH)
	if code := connect.CodeOf(err); code != connect.CodePermissionDenied && code != connect.CodeNotFound {
		t.Fatalf("an outsider sets their mode in acme: %v", err)
	}
	_, err = setMine(p.root, globex, apiv1.ToolsMode_TOOLS_MODE_SEARCH)
	wantCode(t, "a global admin sets their mode in a team they are not in", err, connect.CodeFailedPrecondition, "not a member")
	_, err = setMine(p.member, acme, apiv1.ToolsMode(7))
	wantCode(t, "an undefined mode", err, connect.CodeInvalidArgument, "tools_mode")
}
