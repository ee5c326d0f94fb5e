package server_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	_ "github.com/orrery/orrery/gen/orrery/admin/v1"
	_ "github.com/orrery/orrery/gen/orrery/api/v1"
	"github.com/orrery/orrery/services/controlplane/internal/access"
	"github.com/orrery/orrery/services/controlplane/internal/bearer"
	"github.com/orrery/orrery/services/controlplane/internal/password"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

var update = flag.Bool("update", false, "rewrite golden files")

// userAPIPackages are the protobuf packages whose every procedure the access policy must decide.
var userAPIPackages = []protoreflect.FullName{"orrery.api.v1", "orrery.admin.v1"}

// userAPIMethods returns every method of the user-facing API by procedure.
func userAPIMethods() map[string]protoreflect.MethodDescriptor {
	methods := map[string]protoreflect.MethodDescriptor{}
	protoregistry.GlobalFiles.RangeFiles(func(f protoreflect.FileDescriptor) bool {
		if !slices.Contains(userAPIPackages, f.Package()) {
			return true
		}
		for i := range f.Services().Len() {
			svc := f.Services().Get(i)
			for j := range svc.Methods().Len() {
				m := svc.Methods().Get(j)
				methods["/"+string(svc.FullName())+"/"+string(m.Name())] = m
			}
		}
		return true
	})
	return methods
}

// TestPolicyCoversEveryProcedure checks that the access policy decides every procedure of the user-facing
// API and nothing else, and keeps the policy readable as a golden file, so a change of rule shows in review.
func TestPolicyCoversEveryProcedure(t *testing.T) {
	t.Parallel()
	methods := userAPIMethods()
	var lines []string
	for procedure := range methods {
		rule, ok := access.APIPolicy[procedure]
		if !ok {
			t.Errorf("%s has no rule in access.APIPolicy", procedure)
		}
		lines = append(lines, fmt.Sprintf("%-70s %s", procedure, rule))
	}
	for procedure := range access.APIPolicy {
		if _, ok := methods[procedure]; !ok {
			t.Errorf("access.APIPolicy has a rule for %s, which no service offers", procedure)
		}
	}
	slices.Sort(lines)
	got := strings.Join(lines, "\n") + "\n"
	golden := filepath.Join("testdata", "policy.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -run TestPolicyCoversEveryProcedure -update to write it)", err)
	}
	if got != string(want) {
		t.Errorf("access policy differs from %s (go test -update rewrites it after review):\n%s", golden, got)
	}
}

// newCaller creates a user who signs in with the password "correct horse battery staple" and holds a
// personal API token.
func newCaller(t *testing.T, st *store.Store, email, globalRole string) caller {
	t.Helper()
	hash, err := password.Hash(t.Context(), "correct horse battery staple")
	if err != nil {
		t.Fatal(err)
	}
	user, _, err := st.CreateAccount(t.Context(), store.NewAccount{Email: email, Name: email, PasswordHash: hash, GlobalRole: globalRole})
	if err != nil {
		t.Fatal(err)
	}
	token, err := bearer.New(bearer.APIToken)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateAPIToken(t.Context(), bearer.Hash(token), user.ID, "test", nil); err != nil {
		t.Fatal(err)
	}
	return caller{user: user, token: token}
}

// tenants is two teams, each with an admin (its owner) and a user, a global admin and a signed-in user who
// belongs to neither team.
type tenants struct {
	teamA, teamB                 store.Team
	adminA, userA, adminB, userB caller
	globalAdmin, outsider        caller
}

func seedTenants(t *testing.T, b *testBundle) tenants {
	t.Helper()
	st := b.store()
	var x tenants
	x.adminA = newCaller(t, st, "admin@a.test", store.RoleGlobalUser)
	x.userA = newCaller(t, st, "user@a.test", store.RoleGlobalUser)
	x.adminB = newCaller(t, st, "admin@b.test", store.RoleGlobalUser)
	x.userB = newCaller(t, st, "user@b.test", store.RoleGlobalUser)
	x.globalAdmin = newCaller(t, st, "root@orrery.test", store.RoleGlobalAdmin)
	x.outsider = newCaller(t, st, "outsider@orrery.test", store.RoleGlobalUser)
	var err error
	if x.teamA, err = st.CreateOwnedTeam(t.Context(), "team-a", "Team A", x.adminA.user.ID); err != nil {
		t.Fatal(err)
	}
	if x.teamB, err = st.CreateOwnedTeam(t.Context(), "team-b", "Team B", x.adminB.user.ID); err != nil {
		t.Fatal(err)
	}
	if err := st.AddMember(t.Context(), x.teamA.ID, x.userA.user.ID, store.RoleTeamUser); err != nil {
		t.Fatal(err)
	}
	if err := st.AddMember(t.Context(), x.teamB.ID, x.userB.user.ID, store.RoleTeamUser); err != nil {
		t.Fatal(err)
	}
	return x
}

// sampleRequests holds, for every procedure, a request in protojson with {team} where the team id goes.
// Requests are valid, so what a call answers is decided by access, not by validation; ids that must exist
// for the call to succeed are random, so allowed calls end in NotFound and change nothing that matters.
var sampleRequests = map[string]string{
	"/orrery.api.v1.AccountService/Login":              `{"email":"nobody@orrery.test","password":"wrong"}`,
	"/orrery.api.v1.AccountService/Logout":             `{}`,
	"/orrery.api.v1.AccountService/GetCurrentUser":     `{}`,
	"/orrery.api.v1.AccountService/ChangePassword":     `{"currentPassword":"not the password","newPassword":"a new password of length"}`,
	"/orrery.api.v1.AccountService/CreateApiToken":     `{"name":"matrix"}`,
	"/orrery.api.v1.AccountService/ListApiTokens":      `{}`,
	"/orrery.api.v1.AccountService/RevokeApiToken":     `{"id":"{random}"}`,
	"/orrery.api.v1.UserService/CreateUser":            `{"email":"{random}@orrery.test","password":"a long enough password"}`,
	"/orrery.api.v1.UserService/ListUsers":             `{}`,
	"/orrery.api.v1.UserService/SetGlobalRole":         `{"userId":"{random}","globalRole":"GLOBAL_ROLE_USER"}`,
	"/orrery.api.v1.TeamService/CreateTeam":            `{"slug":"t-{random}","name":"Matrix"}`,
	"/orrery.api.v1.TeamService/ListTeams":             `{}`,
	"/orrery.api.v1.TeamService/GetTeam":               `{"teamId":"{team}"}`,
	"/orrery.api.v1.TeamService/GetTeamEndpoint":       `{"teamId":"{team}"}`,
	"/orrery.api.v1.TeamService/ListMembers":           `{"teamId":"{team}"}`,
	"/orrery.api.v1.TeamService/InviteMember":          `{"teamId":"{team}","email":"{random}@orrery.test","role":"TEAM_ROLE_USER"}`,
	"/orrery.api.v1.TeamService/ListInvitations":       `{"teamId":"{team}"}`,
	"/orrery.api.v1.TeamService/RevokeInvitation":      `{"teamId":"{team}","invitationId":"{random}"}`,
	"/orrery.api.v1.TeamService/ListMyInvitations":     `{}`,
	"/orrery.api.v1.TeamService/AcceptInvitation":      `{"invitationId":"{random}"}`,
	"/orrery.api.v1.TeamService/DeclineInvitation":     `{"invitationId":"{random}"}`,
	"/orrery.api.v1.TeamService/RemoveMember":          `{"teamId":"{team}","userId":"{random}"}`,
	"/orrery.api.v1.TeamService/SetMemberRole":         `{"teamId":"{team}","userId":"{random}","role":"TEAM_ROLE_USER"}`,
	"/orrery.api.v1.TeamService/TransferOwnership":     `{"teamId":"{team}","userId":"{random}"}`,
	"/orrery.api.v1.TeamService/SetTeamToolsMode":      `{"teamId":"{team}","toolsMode":"TOOLS_MODE_SEARCH"}`,
	"/orrery.api.v1.TeamService/SetTeamGlobalFallback": `{"teamId":"{team}","enabled":true}`,
	"/orrery.api.v1.TeamService/SetMyToolsMode":        `{"teamId":"{team}","toolsMode":"TOOLS_MODE_ALL"}`,
	"/orrery.api.v1.AuditService/ListAuditEvents":      `{"teamId":"{team}"}`,
	"/orrery.api.v1.UsageService/GetUsageSeries":       `{"teamId":"{team}","startTime":"2026-01-01T00:00:00Z","endTime":"2026-01-01T01:00:00Z","step":"300s"}`,
	"/orrery.api.v1.UsageService/ListTopTools":         `{"teamId":"{team}","startTime":"2026-01-01T00:00:00Z","endTime":"2026-01-02T00:00:00Z"}`,
	"/orrery.api.v1.UsageService/ListTopUsers":         `{"teamId":"{team}","startTime":"2026-01-01T00:00:00Z","endTime":"2026-01-02T00:00:00Z"}`,
	"/orrery.api.v1.PolicyService/ListPolicies":        `{"teamId":"{team}"}`,
	"/orrery.api.v1.PolicyService/SetPolicy":           `{"teamId":"{team}","name":"p-{random}","kind":"POLICY_KIND_DENY","expression":"false"}`,
	"/orrery.api.v1.PolicyService/DeletePolicy":        `{"teamId":"{team}","name":"p-{random}"}`,
	"/orrery.api.v1.OAuthService/CreateOAuthClient":    `{"teamId":"{team}","name":"agent"}`,
	"/orrery.api.v1.OAuthService/ListOAuthClients":     `{"teamId":"{team}"}`,
	"/orrery.api.v1.OAuthService/RevokeOAuthClient":    `{"teamId":"{team}","clientId":"{random}"}`,
	"/orrery.api.v1.OAuthService/ListOAuthGrants":      `{"teamId":"{team}"}`,
	"/orrery.api.v1.OAuthService/RevokeOAuthGrant":     `{"teamId":"{team}","grantId":"{random}"}`,
	"/orrery.api.v1.OAuthService/ListMyOAuthConsents":  `{}`,
	"/orrery.api.v1.OAuthService/WithdrawOAuthConsent": `{"clientId":"{random}","consentTeamId":"{team}"}`,
	"/orrery.api.v1.OAuthService/RevokeMyOAuthGrant":   `{"grantId":"{random}"}`,

	"/orrery.api.v1.CatalogService/CreateCatalogEntry":              `{"teamId":"{team}","slug":"m-{random}","spec":{"name":"M","transport":"TRANSPORT_STDIO","command":"npx"}}`,
	"/orrery.api.v1.CatalogService/UpdateCatalogEntry":              `{"teamId":"{team}","id":"{random}","spec":{"name":"M","transport":"TRANSPORT_STDIO","command":"npx"}}`,
	"/orrery.api.v1.CatalogService/DeleteCatalogEntry":              `{"teamId":"{team}","id":"{random}"}`,
	"/orrery.api.v1.ConfigHistoryService/ListConfigVersions":        `{"teamId":"{team}","subject":{"kind":"CONFIG_KIND_INSTALLATION","id":"{random}"}}`,
	"/orrery.api.v1.ConfigHistoryService/CompareConfigVersions":     `{"teamId":"{team}","subject":{"kind":"CONFIG_KIND_INSTALLATION","id":"{random}"},"fromVersion":1,"toVersion":2}`,
	"/orrery.api.v1.ConfigHistoryService/RollbackInstallation":      `{"teamId":"{team}","installationId":"{random}","version":1}`,
	"/orrery.api.v1.EmergencyStopService/StopInstallation":          `{"teamId":"{team}","installationId":"{random}","reason":"leaking data"}`,
	"/orrery.api.v1.EmergencyStopService/ResumeInstallation":        `{"teamId":"{team}","installationId":"{random}"}`,
	"/orrery.api.v1.EmergencyStopService/StopTemplate":              `{"id":"{random}","reason":"leaking data"}`,
	"/orrery.api.v1.EmergencyStopService/ResumeTemplate":            `{"id":"{random}"}`,
	"/orrery.api.v1.CatalogService/GetCatalogEntry":                 `{"teamId":"{team}","id":"{random}"}`,
	"/orrery.api.v1.CatalogService/GetCatalogEntryHealth":           `{"teamId":"{team}","id":"{random}"}`,
	"/orrery.api.v1.CatalogService/ListCatalogEntries":              `{"teamId":"{team}"}`,
	"/orrery.api.v1.CatalogService/ImportServerJson":                `{"teamId":"{team}","serverJson":"{}"}`,
	"/orrery.api.v1.CatalogService/UploadSourceArchive":             `{"teamId":"{team}","content":"aGVsbG8="}`,
	"/orrery.api.v1.InstallationService/CreateInstallation":         `{"teamId":"{team}","catalogEntryId":"{random}","spec":{"name":"m"}}`,
	"/orrery.api.v1.InstallationService/UpdateInstallation":         `{"teamId":"{team}","id":"{random}","spec":{"name":"m"}}`,
	"/orrery.api.v1.InstallationService/DeleteInstallation":         `{"teamId":"{team}","id":"{random}"}`,
	"/orrery.api.v1.InstallationService/UpdateInstallationSettings": `{"teamId":"{team}","installationId":"{random}","requestLoggingEnabled":false}`,
	"/orrery.api.v1.InstallationService/GetInstallation":            `{"teamId":"{team}","id":"{random}"}`,
	"/orrery.api.v1.InstallationService/ListInstallations":          `{"teamId":"{team}"}`,
	"/orrery.api.v1.InstallationService/GetUserConfiguration":       `{"teamId":"{team}","installationId":"{random}"}`,
	"/orrery.api.v1.InstallationService/SetUserConfiguration":       `{"teamId":"{team}","installationId":"{random}"}`,
	"/orrery.api.v1.SecretService/RotateSecrets":                    `{}`,
	"/orrery.api.v1.ToolService/ListTools":                          `{"teamId":"{team}","installationId":"{random}"}`,
	"/orrery.api.v1.ToolService/GetToolSelection":                   `{"teamId":"{team}","installationId":"{random}"}`,
	"/orrery.api.v1.ToolService/SetToolSelection":                   `{"teamId":"{team}","installationId":"{random}","selection":{"deny":["echo"]}}`,
	"/orrery.api.v1.ToolService/SetHiddenTools":                     `{"teamId":"{team}","installationId":"{random}","hidden":["echo"]}`,

	"/orrery.api.v1.RemoteAccountService/ConnectRemoteAccount":    `{"teamId":"{team}","installationId":"{random}"}`,
	"/orrery.api.v1.RemoteAccountService/GetRemoteAccount":        `{"teamId":"{team}","installationId":"{random}"}`,
	"/orrery.api.v1.RemoteAccountService/DisconnectRemoteAccount": `{"teamId":"{team}","installationId":"{random}"}`,
	"/orrery.api.v1.RemoteAccountService/ListRemoteAccounts":      `{"teamId":"{team}","installationId":"{random}"}`,

	"/orrery.api.v1.InstanceService/ListInstances":       `{"teamId":"{team}"}`,
	"/orrery.api.v1.InstanceService/GetInstanceStatus":   `{"teamId":"{team}","instanceId":"files-{random}"}`,
	"/orrery.api.v1.InstanceService/ListServerLogs":      `{"teamId":"{team}","installationId":"{random}"}`,
	"/orrery.api.v1.InstanceService/ListRequestLogs":     `{"teamId":"{team}","installationId":"{random}"}`,
	"/orrery.api.v1.InstanceService/GetRequestLog":       `{"teamId":"{team}","installationId":"{random}","requestId":"1"}`,
	"/orrery.api.v1.InstanceService/WatchInstanceStatus": `{"teamId":"{team}","installationId":"{random}"}`,
	"/orrery.api.v1.InstanceService/StreamServerLogs":    `{"teamId":"{team}","installationId":"{random}"}`,
	"/orrery.api.v1.InstanceService/StreamRequestLogs":   `{"teamId":"{team}","installationId":"{random}"}`,
	"/orrery.api.v1.InstanceService/RestartInstance":     `{"teamId":"{team}","instanceId":"files-{random}"}`,

	"/orrery.api.v1.AlertService/CreateWebhook":             `{"teamId":"{team}","name":"pager","url":"https://hooks.example.test/{random}","eventKinds":["ALERT_KIND_SATELLITE_OFFLINE"]}`,
	"/orrery.api.v1.AlertService/ListWebhooks":              `{"teamId":"{team}"}`,
	"/orrery.api.v1.AlertService/GetWebhook":                `{"teamId":"{team}","id":"{random}"}`,
	"/orrery.api.v1.AlertService/DeleteWebhook":             `{"teamId":"{team}","id":"{random}"}`,
	"/orrery.api.v1.AlertService/SendTestEvent":             `{"teamId":"{team}","id":"{random}"}`,
	"/orrery.api.v1.AlertService/ListWebhookDeliveries":     `{"teamId":"{team}","id":"{random}"}`,
	"/orrery.api.v1.AccessReviewService/GetAccessReview":    `{"teamId":"{team}"}`,
	"/orrery.api.v1.AccessReviewService/ExportAccessReview": `{"teamId":"{team}","format":"ACCESS_REVIEW_FORMAT_CSV"}`,

	"/orrery.admin.v1.AdminService/CreateRegistrationToken": `{"name":"matrix","scope":"TOKEN_SCOPE_TEAM","teamId":"{team}"}`,
	"/orrery.admin.v1.AdminService/ListRegistrationTokens":  `{"teamId":"{team}"}`,
	"/orrery.admin.v1.AdminService/RevokeRegistrationToken": `{"id":"{random}","teamId":"{team}"}`,
	"/orrery.admin.v1.AdminService/ListSatellites":          `{"teamId":"{team}"}`,
	"/orrery.admin.v1.AdminService/RevokeSatellite":         `{"id":"{random}","teamId":"{team}"}`,
	"/orrery.admin.v1.AdminService/ListSatelliteHeartbeats": `{"satelliteId":"{random}","teamId":"{team}"}`,
	"/orrery.admin.v1.AdminService/ListSatelliteProcesses":  `{"satelliteId":"{random}","teamId":"{team}"}`,
	"/orrery.admin.v1.AdminService/ListDroppedEventReports": `{"satelliteId":"{random}","teamId":"{team}"}`,
	"/orrery.admin.v1.AdminService/EnqueueCommand":          `{"teamId":"{team}","configure":{"event":"CONFIGURE_EVENT_INSTALLATION_UPDATED"}}`,
	"/orrery.admin.v1.AdminService/ListCommands":            `{}`,
	"/orrery.admin.v1.AdminService/CreateSatelliteRelease": `{"version":"1.0.0","platform":"linux/amd64","sha256":"` +
		"0000000000000000000000000000000000000000000000000000000000000000" + `","signature":"` +
		"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==" + `","size":"3"}`,
	"/orrery.admin.v1.AdminService/UploadSatelliteReleaseChunk": `{"releaseId":"00000000-0000-4000-8000-000000000001","offset":"0","data":"YWJj"}`,
	"/orrery.admin.v1.AdminService/CompleteSatelliteRelease":    `{"releaseId":"00000000-0000-4000-8000-000000000001"}`,
	"/orrery.admin.v1.AdminService/ListSatelliteReleases":       `{}`,
	"/orrery.admin.v1.AdminService/ListRollouts":                `{}`,
	"/orrery.admin.v1.AdminService/DeleteSatelliteRelease":      `{"releaseId":"00000000-0000-4000-8000-000000000001"}`,
	"/orrery.admin.v1.AdminService/ListPlacements":              `{"teamId":"{team}"}`,
	"/orrery.admin.v1.AdminService/SetTeamReplicas":             `{"teamId":"{team}","replicas":3}`,
	"/orrery.admin.v1.AdminService/DrainSatellite":              `{"id":"{random}"}`,
	"/orrery.admin.v1.AdminService/UndrainSatellite":            `{"id":"{random}"}`,

	"/orrery.admin.v1.SingleSignOnService/CreateIdentityProvider":            `{"slug":"matrix","displayName":"Matrix","issuer":"http://127.0.0.1:1","clientId":"matrix"}`,
	"/orrery.admin.v1.SingleSignOnService/ListIdentityProviders":             `{}`,
	"/orrery.admin.v1.SingleSignOnService/DeleteIdentityProvider":            `{"id":"{random}"}`,
	"/orrery.admin.v1.SingleSignOnService/CreateGroupRule":                   `{"providerId":"{random}","group":"matrix","teamId":"{team}","role":"SSO_TEAM_ROLE_USER"}`,
	"/orrery.admin.v1.SingleSignOnService/ListGroupRules":                    `{}`,
	"/orrery.admin.v1.SingleSignOnService/DeleteGroupRule":                   `{"id":"{random}"}`,
	"/orrery.admin.v1.SingleSignOnService/SetPasswordSignIn":                 `{"domain":"matrix.test","enabled":true}`,
	"/orrery.admin.v1.SingleSignOnService/ListPasswordSignInDisabledDomains": `{}`,
	"/orrery.admin.v1.SingleSignOnService/ListSignInOptions":                 `{}`,
}

// TestPermissionMatrix calls every procedure as every role, for the caller's own team and for another
// team, and checks the answer against the procedure's rule: allowed calls may fail for other reasons, but
// never with PermissionDenied or Unauthenticated, and refused calls fail with exactly those.
func TestPermissionMatrix(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	x := seedTenants(t, b)
	type role struct {
		name        string
		caller      *caller
		teamRole    string // role in team A
		globalAdmin bool
	}
	roles := []role{
		{name: "anonymous"},
		{name: "outsider", caller: &x.outsider},
		{name: "team_user", caller: &x.userA, teamRole: store.RoleTeamUser},
		{name: "team_admin", caller: &x.adminA, teamRole: store.RoleTeamAdmin},
		{name: "global_admin", caller: &x.globalAdmin, globalAdmin: true},
	}
	methods := userAPIMethods()
	for procedure, rule := range access.APIPolicy {
		sample, ok := sampleRequests[procedure]
		if !ok {
			t.Errorf("%s has no sample request in sampleRequests", procedure)
			continue
		}
		for _, r := range roles {
			for _, team := range []store.Team{x.teamA, x.teamB} {
				own := team.ID == x.teamA.ID
				want := allowed(rule, r.caller != nil, r.globalAdmin, own, r.teamRole)
				token := ""
				if r.caller != nil {
					token = r.caller.token
				}
				body := strings.NewReplacer("{team}", team.ID.String(), "{random}", uuid.NewString()).Replace(sample)
				code := call(t, b.replicas[0].url, procedure, methods[procedure].IsStreamingServer(), body, token)
				refused := code == connect.CodePermissionDenied || code == connect.CodeUnauthenticated
				if rule == access.Public {
					refused = code == connect.CodePermissionDenied
				}
				if want == refused {
					t.Errorf("%s as %s on %s team: got %v, want allowed=%v (rule %s)", procedure, r.name,
						map[bool]string{true: "own", false: "other"}[own], codeName(code), want, rule)
				}
			}
		}
	}
}

// allowed is the meaning of each rule, written out independently of the interceptor.
func allowed(rule access.Rule, signedIn, globalAdmin, ownTeam bool, teamRole string) bool {
	member := ownTeam && teamRole != ""
	admin := ownTeam && teamRole == store.RoleTeamAdmin
	switch rule {
	case access.Public:
		return true
	case access.SignedIn:
		return signedIn
	case access.TeamMember, access.SignedInOrTeamMember:
		return globalAdmin || member
	case access.TeamAdmin, access.TeamAdminOrGlobalAdmin:
		return globalAdmin || admin
	case access.GlobalAdmin:
		return globalAdmin
	}
	return false
}

func codeName(c connect.Code) string {
	if c == 0 {
		return "OK"
	}
	return c.String()
}

// call makes one call in the Connect protocol with a JSON body and returns its code, 0 for success. For a
// server stream it reads only the first message: an allowed stream may stay open.
func call(t *testing.T, baseURL, procedure string, streaming bool, body, token string) connect.Code {
	t.Helper()
	var reqBody io.Reader = strings.NewReader(body)
	contentType := "application/json"
	if streaming {
		frame := make([]byte, 5, 5+len(body))
		binary.BigEndian.PutUint32(frame[1:], uint32(len(body)))
		reqBody, contentType = bytes.NewReader(append(frame, body...)), "application/connect+json"
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, baseURL+procedure, reqBody)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var endStream struct {
		Error *struct {
			Code string `json:"code"`
		} `json:"error"`
		Code string `json:"code"`
	}
	if !streaming {
		if resp.StatusCode == http.StatusOK {
			return 0
		}
		if err := json.NewDecoder(resp.Body).Decode(&endStream); err != nil {
			t.Fatalf("%s: status %d without a Connect error: %v", procedure, resp.StatusCode, err)
		}
		return parseCode(t, endStream.Code)
	}
	// An allowed stream may have nothing to send yet; give it a moment, then count silence as allowed.
	timer := time.AfterFunc(2*time.Second, cancel)
	defer timer.Stop()
	header := make([]byte, 5)
	if _, err := io.ReadFull(resp.Body, header); err != nil {
		if ctx.Err() != nil {
			return 0
		}
		t.Fatalf("%s: read stream: %v", procedure, err)
	}
	if header[0]&0x02 == 0 {
		return 0 // a message: the stream was allowed
	}
	payload := make([]byte, binary.BigEndian.Uint32(header[1:]))
	if _, err := io.ReadFull(resp.Body, payload); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(payload, &endStream); err != nil {
		t.Fatal(err)
	}
	if endStream.Error == nil {
		return 0
	}
	return parseCode(t, endStream.Error.Code)
}

func parseCode(t *testing.T, s string) connect.Code {
	t.Helper()
	var c connect.Code
	if err := c.UnmarshalText([]byte(s)); err != nil {
		t.Fatalf("unknown code %q", s)
	}
	return c
}
