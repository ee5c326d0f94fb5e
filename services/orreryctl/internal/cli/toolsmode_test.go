package cli

import (
	"cmp"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"

	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	"github.com/orrery/orrery/gen/orrery/api/v1/apiv1connect"
)

const (
	acmeID    = "6f1c2a5e-0b7d-4c53-9d0e-3a3f4b5c6d7e"
	testToken = "orr_test_token"
)

// teamModes is a TeamService on loopback holding one team's tool mode and the caller's own, with the
// control plane's rules for who may set which: only an admin the team's, and only a defined mode.
type teamModes struct {
	apiv1connect.UnimplementedTeamServiceHandler

	mu         sync.Mutex
	admin      bool
	team, mine apiv1.ToolsMode
	sets       int
}

func (f *teamModes) ListTeams(_ context.Context, req *connect.Request[apiv1.ListTeamsRequest]) (*connect.Response[apiv1.ListTeamsResponse], error) {
	if req.Header().Get("Authorization") != "Bearer "+testToken {
		return nil, connect.NewError(connect.CodeUnauthenticated, errors.New("unknown token"))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return connect.NewResponse(&apiv1.ListTeamsResponse{Teams: []*apiv1.Team{f.teamLocked()}}), nil
}

func (f *teamModes) teamLocked() *apiv1.Team {
	return &apiv1.Team{Id: acmeID, Slug: "acme", Name: "Acme", ToolsMode: f.team}
}

func (f *teamModes) GetTeam(_ context.Context, req *connect.Request[apiv1.GetTeamRequest]) (*connect.Response[apiv1.GetTeamResponse], error) {
	if req.Msg.TeamId != acmeID {
		return nil, connect.NewError(connect.CodeNotFound, errors.New("team not found"))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return connect.NewResponse(&apiv1.GetTeamResponse{Team: f.teamLocked(), MyToolsMode: f.mine, MyEffectiveToolsMode: cmp.Or(f.mine, f.team)}), nil
}

func (f *teamModes) SetTeamToolsMode(_ context.Context, req *connect.Request[apiv1.SetTeamToolsModeRequest]) (*connect.Response[apiv1.SetTeamToolsModeResponse], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.admin {
		return nil, connect.NewError(connect.CodePermissionDenied, errors.New("team admins only"))
	}
	if req.Msg.ToolsMode == apiv1.ToolsMode_TOOLS_MODE_UNSPECIFIED || req.Msg.TeamId != acmeID {
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("tools_mode: must be all or search"))
	}
	f.team = req.Msg.ToolsMode
	f.sets++
	return connect.NewResponse(&apiv1.SetTeamToolsModeResponse{Team: f.teamLocked()}), nil
}

func (f *teamModes) SetMyToolsMode(_ context.Context, req *connect.Request[apiv1.SetMyToolsModeRequest]) (*connect.Response[apiv1.SetMyToolsModeResponse], error) {
	if req.Msg.TeamId != acmeID {
		return nil, connect.NewError(connect.CodeNotFound, errors.New("team not found"))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mine = req.Msg.ToolsMode
	f.sets++
	return connect.NewResponse(&apiv1.SetMyToolsModeResponse{ToolsMode: f.mine, EffectiveToolsMode: cmp.Or(f.mine, f.team)}), nil
}

// runAgainst runs one command line against the control plane at url, signed in with testToken.
func runAgainst(t *testing.T, url string, argv ...string) (code int, out, errOut string) {
	t.Helper()
	a, o, e := testApp("")
	a.ConfigPath = filepath.Join(t.TempDir(), "config.json")
	a.Getenv = func(k string) string {
		return map[string]string{"ORRERY_URL": url, "ORRERY_TOKEN": testToken}[k]
	}
	code = a.Main(t.Context(), argv)
	return code, o.String(), e.String()
}

func TestToolsModeCommand(t *testing.T) {
	t.Parallel()
	f := &teamModes{admin: true, team: apiv1.ToolsMode_TOOLS_MODE_ALL}
	mux := http.NewServeMux()
	mux.Handle(apiv1connect.NewTeamServiceHandler(f))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	fields := func(out string) string {
		lines := strings.Split(strings.TrimSpace(out), "\n")
		return strings.Join(strings.Fields(lines[len(lines)-1]), " ")
	}
	for _, step := range []struct {
		argv []string
		want string // TEAM, TEAM MODE, YOUR MODE, IN EFFECT
	}{
		{[]string{"teams", "tools-mode", "acme"}, "acme all team all"},
		{[]string{"teams", "tools-mode", "acme", "search"}, "acme search team search"},
		{[]string{"teams", "tools-mode", acmeID, "all", "--me"}, "acme search all all"},
		{[]string{"teams", "tools-mode", "acme", "team", "--me"}, "acme search team search"},
	} {
		code, out, errOut := runAgainst(t, srv.URL, step.argv...)
		if code != ExitOK || fields(out) != step.want {
			t.Errorf("%v: exit %d, %q (%s); want %q", step.argv, code, out, errOut, step.want)
		}
	}

	// Wrong modes are refused before anything is sent; the team's mode cannot be "follow the team".
	for _, argv := range [][]string{
		{"teams", "tools-mode", "acme", "team"},
		{"teams", "tools-mode", "acme", "everything"},
		{"teams", "tools-mode", "acme", "--me"},
		{"teams", "tools-mode", "acme", "all", "extra"},
	} {
		f.mu.Lock()
		before := f.sets
		f.mu.Unlock()
		if code, _, errOut := runAgainst(t, srv.URL, argv...); code != ExitUsage || !strings.HasPrefix(errOut, "error: ") {
			t.Errorf("%v: exit %d, %q; want a usage error", argv, code, errOut)
		}
		f.mu.Lock()
		if f.sets != before {
			t.Errorf("%v reached the control plane", argv)
		}
		f.mu.Unlock()
	}

	// A member who is not an admin is told so, and another team's slug is not found.
	f.mu.Lock()
	f.admin = false
	f.mu.Unlock()
	if code, _, errOut := runAgainst(t, srv.URL, "teams", "tools-mode", "acme", "all"); code != ExitDenied {
		t.Errorf("a member sets the team's mode: exit %d, %q; want %d", code, errOut, ExitDenied)
	}
	if code, _, errOut := runAgainst(t, srv.URL, "teams", "tools-mode", "globex", "search", "--me"); code != ExitNotFound {
		t.Errorf("a team not among the caller's: exit %d, %q; want %d", code, errOut, ExitNotFound)
	}
	code, out, _ := runAgainst(t, srv.URL, "teams", "tools-mode", "acme", "-o", "json")
	var got apiv1.GetTeamResponse
	if err := protojson.Unmarshal([]byte(out), &got); code != ExitOK || err != nil ||
		got.GetMyEffectiveToolsMode() != apiv1.ToolsMode_TOOLS_MODE_SEARCH || got.GetTeam().GetToolsMode() != apiv1.ToolsMode_TOOLS_MODE_SEARCH {
		t.Errorf("json output: exit %d, %v, %s", code, err, out)
	}
}
