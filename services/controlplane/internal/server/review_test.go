package server_test

import (
	"encoding/csv"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	"github.com/orrery/orrery/gen/orrery/api/v1/apiv1connect"
	"github.com/orrery/orrery/services/controlplane/internal/reviewapi"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// reviewFixture is a team (alice and bob, users; an admin) with one installation, a consent of alice's,
// calls of alice's a few minutes ago and of bob's 40 days ago, and another team with its own admin.
type reviewFixture struct {
	f            teamFixture
	admin, other caller
	aliceMinute  time.Time
	bobHour      time.Time
}

func seedReview(t *testing.T, b *testBundle) reviewFixture {
	t.Helper()
	st := b.store()
	r := reviewFixture{f: seedTeam(t, b, "acme")}
	r.admin = newCaller(t, st, "admin@acme.test", store.RoleGlobalUser)
	if err := st.AddMember(t.Context(), r.f.team.ID, r.admin.user.ID, store.RoleTeamAdmin); err != nil {
		t.Fatal(err)
	}
	r.other = newCaller(t, st, "admin@rival.test", store.RoleGlobalUser)
	if _, err := st.CreateOwnedTeam(t.Context(), "rival", "Rival", r.other.user.ID); err != nil {
		t.Fatal(err)
	}
	pool := b.pool(t)
	r.aliceMinute = time.Now().UTC().Truncate(time.Minute).Add(-5 * time.Minute)
	r.bobHour = time.Now().UTC().Truncate(time.Hour).Add(-40 * 24 * time.Hour)
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`insert into oauth_consents (user_id, client_id, team_id, scopes) values ($1, 'vscode', $2, '{mcp:tools:execute,mcp:read}'),
			($1, 'cursor', $2, '{mcp:read,offline_access}')`, []any{r.f.alice.ID, r.f.team.ID}},
		{`insert into usage_minutes (team_id, minute, installation_id, tool_name, user_id, latency_bucket, calls, errors, bytes_in, bytes_out)
			values ($1, $2, $3, 'read_file', $4, 4, 3, 0, 0, 0)`, []any{r.f.team.ID, r.aliceMinute, r.f.installation.ID, r.f.alice.ID}},
		{`insert into usage_hours (team_id, hour, installation_id, tool_name, user_id, latency_bucket, calls, errors, bytes_in, bytes_out)
			values ($1, date_trunc('hour', now()) - interval '2 hours', $2, 'read_file', $3, 4, 7, 0, 0, 0),
			       ($1, $4, $2, 'read_file', $5, 4, 11, 0, 0, 0)`, []any{r.f.team.ID, r.f.installation.ID, r.f.alice.ID, r.bobHour, r.f.bob.ID}},
		// A name chosen to be read as a formula by a spreadsheet.
		{`update users set name = '=HYPERLINK("https://evil.test")' where id = $1`, []any{r.f.bob.ID}},
	} {
		if _, err := pool.Exec(t.Context(), q.sql, q.args...); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// TestAccessReview checks the review's rows: every member of the team against its installation, with
// their role, the scopes they granted, when they last called it and how often lately.
func TestAccessReview(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	r := seedReview(t, b)
	c := apiv1connect.NewAccessReviewServiceClient(testClient, b.replicas[0].url, connect.WithInterceptors(withBearer(r.admin.token)))
	resp, err := c.GetAccessReview(t.Context(), connect.NewRequest(&apiv1.GetAccessReviewRequest{TeamId: r.f.team.ID.String()}))
	if err != nil {
		t.Fatal(err)
	}
	rows := resp.Msg.Rows
	var emails []string
	for _, row := range rows {
		emails = append(emails, row.Email)
		if row.InstallationId != r.f.installation.ID.String() || row.InstallationName != "files" {
			t.Errorf("row %v names another installation", row)
		}
	}
	if !slices.Equal(emails, []string{"admin@acme.test", "alice@acme.test", "bob@acme.test"}) {
		t.Fatalf("rows for %v", emails)
	}
	admin, alice, bob := rows[0], rows[1], rows[2]
	if admin.Role != apiv1.TeamRole_TEAM_ROLE_ADMIN || len(admin.Scopes) != 0 || admin.LastUsedAt != nil || admin.Calls != 0 {
		t.Errorf("admin's row = %v", admin)
	}
	if alice.Role != apiv1.TeamRole_TEAM_ROLE_USER || !slices.Equal(alice.Scopes, []string{"mcp:read", "mcp:tools:execute", "offline_access"}) ||
		!alice.LastUsedAt.AsTime().Equal(r.aliceMinute) || alice.Calls != 7 || alice.UserId != r.f.alice.ID.String() {
		t.Errorf("alice's row = %v, want last used %s", alice, r.aliceMinute)
	}
	// Bob last called 40 days ago: beyond the minutes' retention, to the hour, and outside the 30 days counted.
	if !bob.LastUsedAt.AsTime().Equal(r.bobHour) || bob.Calls != 0 || len(bob.Scopes) != 0 {
		t.Errorf("bob's row = %v, want last used %s", bob, r.bobHour)
	}
	longer, err := c.GetAccessReview(t.Context(), connect.NewRequest(&apiv1.GetAccessReviewRequest{TeamId: r.f.team.ID.String(), Days: 60}))
	if err != nil || longer.Msg.Rows[2].Calls != 11 {
		t.Errorf("bob's calls over 60 days: %v, %v", longer, err)
	}
}

// restGet makes a REST GET with a bearer token.
func restGet(t *testing.T, url, token string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// TestAccessReviewExport reads the review over REST as a CSV file and as a JSON file, as a compliance
// script would, and checks that only the team's admins and global admins get it.
func TestAccessReviewExport(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	r := seedReview(t, b)
	url := b.replicas[0].url + "/api/teams/" + r.f.team.ID.String() + "/access-review/export"

	resp := restGet(t, url, r.admin.token)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/csv; charset=utf-8" {
		t.Fatalf("CSV export: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	records, err := csv.NewReader(resp.Body).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(records) != 4 || !slices.Equal(records[0], reviewapi.CSVHeader) {
		t.Fatalf("CSV has %d lines, header %v", len(records), records[0])
	}
	want := []string{"alice@acme.test", "Alice", r.f.alice.ID.String(), "team_user", "files", r.f.installation.ID.String(),
		"mcp:read mcp:tools:execute offline_access", r.aliceMinute.Format(time.RFC3339), "7"}
	if !slices.Equal(records[2], want) {
		t.Errorf("alice's line = %q\nwant %q", records[2], want)
	}
	if records[1][0] != "admin@acme.test" || records[1][3] != "team_admin" || records[1][7] != "" || records[1][8] != "0" {
		t.Errorf("admin's line = %q", records[1])
	}
	if got := records[3][1]; !strings.HasPrefix(got, "'=") {
		t.Errorf("a name that starts with = is exported as %q, which a spreadsheet runs as a formula", got)
	}

	resp = restGet(t, url+"?format=ACCESS_REVIEW_FORMAT_JSON&days=60", r.admin.token)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("JSON export: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var rows []struct {
		Email      string   `json:"email"`
		Role       string   `json:"role"`
		Scopes     []string `json:"scopes"`
		LastUsedAt string   `json:"lastUsedAt"`
		Calls      string   `json:"calls"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&rows); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 || rows[2].Email != "bob@acme.test" || rows[2].Calls != "11" || rows[1].Role != "TEAM_ROLE_USER" ||
		rows[2].LastUsedAt != r.bobHour.Format(time.RFC3339) {
		t.Errorf("JSON rows = %+v", rows)
	}

	// The JSON rows of the plain REST read are the same review.
	resp = restGet(t, b.replicas[0].url+"/api/teams/"+r.f.team.ID.String()+"/access-review", r.admin.token)
	if resp.StatusCode != http.StatusOK {
		t.Errorf("REST review: %d", resp.StatusCode)
	}

	alice := newCaller(t, b.store(), "alice-login@acme.test", store.RoleGlobalUser)
	if err := b.store().AddMember(t.Context(), r.f.team.ID, alice.user.ID, store.RoleTeamUser); err != nil {
		t.Fatal(err)
	}
	for name, token := range map[string]string{"a team user": alice.token, "another team's admin": r.other.token} {
		if resp := restGet(t, url, token); resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s exporting the review: %d, want 403", name, resp.StatusCode)
		}
	}
	if resp := restGet(t, url, adminToken); resp.StatusCode != http.StatusOK {
		t.Errorf("a global admin exporting the review: %d", resp.StatusCode)
	}
	// A team's admin asking for another team gets nothing of it: the same refusal whether or not it exists.
	for _, team := range []string{r.f.team.ID.String(), uuid.NewString()} {
		if resp := restGet(t, b.replicas[0].url+"/api/teams/"+team+"/access-review", r.other.token); resp.StatusCode != http.StatusForbidden {
			t.Errorf("rival's admin reading team %s: %d, want 403", team, resp.StatusCode)
		}
	}
}
