package server_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/pb33f/libopenapi"
	"github.com/pb33f/libopenapi/datamodel"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/protobuf/proto"
)

// documentURL names the served OpenAPI document as a JSON Schema resource, so that response bodies can be
// checked against the schemas inside it.
const documentURL = "https://orrery.test/openapi.json"

// apiDocument is the OpenAPI document a replica serves, with its schemas compiled.
type apiDocument struct {
	paths    map[string]map[string]any
	compiler *jsonschema.Compiler
}

// fetchDocument reads /openapi.json from the replica and checks it: against the OpenAPI 3.1 schema, and by
// building libopenapi's model of it, which resolves every reference.
func fetchDocument(t *testing.T, base string) *apiDocument {
	t.Helper()
	a := rest(t, http.MethodGet, base+"/openapi.json", "", "")
	if a.status != http.StatusOK || a.contentType != "application/json" {
		t.Fatalf("GET /openapi.json: %d %s", a.status, a.contentType)
	}
	raw := a.body

	doc, err := libopenapi.NewDocument(raw)
	if err != nil {
		t.Fatalf("libopenapi cannot read the document: %v", err)
	}
	if v := doc.GetVersion(); !strings.HasPrefix(v, "3.1") {
		t.Errorf("OpenAPI version %q, want 3.1", v)
	}
	model, err := doc.BuildV3Model()
	if err != nil {
		t.Fatalf("libopenapi cannot build a model of the document: %v", err)
	}
	if errs := model.Index.GetReferenceIndexErrors(); len(errs) > 0 {
		t.Errorf("unresolved references: %v", errs)
	}
	if model.Model.Info == nil || model.Model.Info.Title == "" {
		t.Error("the document has no title")
	}

	oas, err := jsonschema.UnmarshalJSON(strings.NewReader(datamodel.OpenAPI31SchemaData))
	if err != nil {
		t.Fatal(err)
	}
	instance, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("https://spec.openapis.org/oas/3.1/schema", oas); err != nil {
		t.Fatal(err)
	}
	meta, err := c.Compile("https://spec.openapis.org/oas/3.1/schema")
	if err != nil {
		t.Fatal(err)
	}
	if err := meta.Validate(instance); err != nil {
		t.Errorf("the document is not valid OpenAPI 3.1: %v", err)
	}

	d := &apiDocument{compiler: jsonschema.NewCompiler()}
	if err := d.compiler.AddResource(documentURL, instance); err != nil {
		t.Fatal(err)
	}
	var plain struct {
		Paths map[string]map[string]any
	}
	if err := json.Unmarshal(raw, &plain); err != nil {
		t.Fatal(err)
	}
	d.paths = plain.Paths
	return d
}

// responseSchema compiles the schema the document gives the answer of method on path: its 200 answer, or
// the error (default) answer.
func (d *apiDocument) responseSchema(t *testing.T, method, path string, ok bool) *jsonschema.Schema {
	t.Helper()
	op, _ := d.paths[path][strings.ToLower(method)].(map[string]any)
	if op == nil {
		t.Fatalf("the document has no operation %s %s", method, path)
	}
	code := "default"
	if ok {
		code = "200"
	}
	var ref struct {
		Content map[string]struct {
			Schema struct {
				Ref string `json:"$ref"`
			}
		}
	}
	raw, _ := json.Marshal(op["responses"].(map[string]any)[code])
	if err := json.Unmarshal(raw, &ref); err != nil || ref.Content["application/json"].Schema.Ref == "" {
		t.Fatalf("%s %s has no JSON schema for its %s answer: %s", method, path, code, raw)
	}
	s, err := d.compiler.Compile(documentURL + ref.Content["application/json"].Schema.Ref)
	if err != nil {
		t.Fatalf("compile the schema of %s %s: %v", method, path, err)
	}
	return s
}

// restAnswer is a REST response: its status, content type and body.
type restAnswer struct {
	status      int
	contentType string
	body        []byte
}

// status decodes an error answer, a google.rpc.Status.
func (a restAnswer) rpcStatus() (code int, message string) {
	var s struct {
		Code    int
		Message string
	}
	_ = json.Unmarshal(a.body, &s)
	return s.Code, s.Message
}

// rest sends one plain HTTP request with a JSON body, as curl would.
func rest(t *testing.T, method, url, token, body string) restAnswer {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return restAnswer{status: resp.StatusCode, contentType: resp.Header.Get("Content-Type"), body: raw}
}

// restCase is one call of the sample and what the document and the caller expect of it.
type restCase struct {
	doc    *apiDocument
	base   string
	method string
	// path is the document's path template, and args its parameters in order.
	path string
	args []string
	// query is added to the path, such as "?pageSize=10".
	query string
	// token is the caller's; empty sends none.
	token string
	body  string
}

// call sends the request, checks the answer against the document's schema for it and returns it.
func (c restCase) call(t *testing.T) restAnswer {
	t.Helper()
	url := c.path
	for _, arg := range c.args {
		start, end := strings.IndexByte(url, '{'), strings.IndexByte(url, '}')
		if start < 0 || end < start {
			t.Fatalf("%s has fewer parameters than %v", c.path, c.args)
		}
		url = url[:start] + arg + url[end+1:]
	}
	a := rest(t, c.method, c.base+url+c.query, c.token, c.body)
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(a.body))
	if err != nil {
		t.Fatalf("%s %s answered %d with a body that is not JSON: %q", c.method, url, a.status, a.body)
	}
	if err := c.doc.responseSchema(t, c.method, c.path, a.status == http.StatusOK).Validate(inst); err != nil {
		t.Errorf("%s %s answered %d with a body the document does not describe: %v\n%s", c.method, url, a.status, err, a.body)
	}
	return a
}

// expect calls and fails the test unless the answer has the status.
func (c restCase) expect(t *testing.T, status int, into any) restAnswer {
	t.Helper()
	a := c.call(t)
	if a.status != status {
		t.Fatalf("%s %s %v: %d %s, want %d", c.method, c.path, c.args, a.status, a.body, status)
	}
	if into != nil {
		if err := json.Unmarshal(a.body, into); err != nil {
			t.Fatal(err)
		}
	}
	return a
}

// TestOpenAPIDocumentDescribesTheRoutes checks the served document and that it and the server agree: every
// procedure with a google.api.http rule is documented at each of its paths, and every documented REST
// operation reaches a handler of the replica, whose answer has the documented shape.
func TestOpenAPIDocumentDescribesTheRoutes(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	base := b.replicas[0].url
	doc := fetchDocument(t, base)

	for procedure, m := range userAPIMethods() {
		rule, _ := proto.GetExtension(m.Options(), annotations.E_Http).(*annotations.HttpRule)
		if rule == nil {
			continue
		}
		for _, r := range append([]*annotations.HttpRule{rule}, rule.GetAdditionalBindings()...) {
			method, path := httpRule(r)
			if _, ok := doc.paths[path][method]; !ok {
				t.Errorf("%s is served at %s %s, which the document does not list", procedure, strings.ToUpper(method), path)
			}
		}
	}

	// A signed-in user without any role: every route answers from its handler, mostly refusals.
	user := signUp(t, base, "nobody@example.test")
	unknown := rest(t, http.MethodGet, base+"/api/no-such-route", user, "")
	if code, _ := unknown.rpcStatus(); unknown.status != http.StatusNotFound || code != 0 {
		t.Fatalf("an unknown REST route: %d %s, want a plain 404", unknown.status, unknown.body)
	}
	operations := 0
	for path, item := range doc.paths {
		if !strings.HasPrefix(path, "/api/") {
			continue
		}
		for method := range item {
			method = strings.ToUpper(method)
			if method != http.MethodGet && method != http.MethodPost && method != http.MethodPut &&
				method != http.MethodPatch && method != http.MethodDelete {
				continue
			}
			operations++
			var args []string
			for range strings.Count(path, "{") {
				args = append(args, uuid.NewString())
			}
			body := ""
			if method != http.MethodGet && method != http.MethodDelete {
				body = "{}"
			}
			a := restCase{doc: doc, base: base, method: method, path: path, args: args, token: user, body: body}.call(t)
			if code, _ := a.rpcStatus(); a.status != http.StatusOK && code == 0 {
				t.Errorf("%s %s: %d %s, not an answer of its procedure", method, path, a.status, a.body)
			}
		}
	}
	if operations < 50 {
		t.Errorf("the document lists %d REST operations; the protos give more than 50", operations)
	}
}

// httpRule returns the lower-case HTTP method and the path template of r.
func httpRule(r *annotations.HttpRule) (string, string) {
	switch p := r.GetPattern().(type) {
	case *annotations.HttpRule_Get:
		return "get", p.Get
	case *annotations.HttpRule_Post:
		return "post", p.Post
	case *annotations.HttpRule_Put:
		return "put", p.Put
	case *annotations.HttpRule_Patch:
		return "patch", p.Patch
	case *annotations.HttpRule_Delete:
		return "delete", p.Delete
	}
	return "", ""
}

// signUp creates a user through REST as the admin and signs them in through the Connect protocol in plain
// JSON, as the README's tour does, returning their new API token.
func signUp(t *testing.T, base, email string) string {
	t.Helper()
	a := rest(t, http.MethodPost, base+"/api/users", adminToken,
		`{"email":"`+email+`","password":"a long enough password"}`)
	if a.status != http.StatusOK {
		t.Fatalf("create %s: %d %s", email, a.status, a.body)
	}
	a = rest(t, http.MethodPost, base+"/orrery.api.v1.AccountService/Login", "",
		`{"email":"`+email+`","password":"a long enough password","apiTokenName":"script"}`)
	var login struct{ APIToken string }
	if err := json.Unmarshal(a.body, &login); err != nil || a.status != http.StatusOK || login.APIToken == "" {
		t.Fatalf("sign in as %s: %d %s", email, a.status, a.body)
	}
	return login.APIToken
}

// TestRESTTour walks the README's tour in plain HTTP and JSON against a replica, checking every answer
// against the OpenAPI document, and tries what a hostile tenant would: no or a wrong token, another team's
// resources, and malformed input.
func TestRESTTour(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	base := b.replicas[0].url
	doc := fetchDocument(t, base)
	call := func(token, method, path, body string, args ...string) restCase {
		return restCase{doc: doc, base: base, method: method, path: path, args: args, token: token, body: body}
	}

	dana := signUp(t, base, "dana@example.test")
	erin := signUp(t, base, "erin@example.test")
	var entry struct{ Entry struct{ ID string } }
	call(adminToken, http.MethodPost, "/api/catalog/entries", `{"slug":"everything","spec":{"name":"Everything",
		"transport":"TRANSPORT_STDIO","command":"npx","args":["-y","@modelcontextprotocol/server-everything"]}}`).
		expect(t, http.StatusOK, &entry)
	var team struct{ Team struct{ ID, Slug string } }
	call(dana, http.MethodPost, "/api/teams", `{"slug":"acme-secret-project","name":"Acme Secret Project"}`).
		expect(t, http.StatusOK, &team)
	var teams struct{ Teams []struct{ ID string } }
	list := call(dana, http.MethodGet, "/api/teams", "")
	list.query = "?colour=red" // unknown query parameters are ignored, as unknown body fields are
	list.expect(t, http.StatusOK, &teams)
	if !containsID(teams.Teams, team.Team.ID) {
		t.Errorf("GET /api/teams does not list the new team: %+v", teams)
	}
	var entries struct{ Entries []struct{ ID string } }
	call(dana, http.MethodGet, "/api/teams/{team_id}/catalog/entries", "", team.Team.ID).expect(t, http.StatusOK, &entries)
	if !containsID(entries.Entries, entry.Entry.ID) {
		t.Errorf("the team's catalog does not list the global entry: %+v", entries)
	}
	var installation struct{ Installation struct{ ID string } }
	call(dana, http.MethodPost, "/api/teams/{team_id}/mcp/installations",
		`{"catalogEntryId":"`+entry.Entry.ID+`","spec":{"name":"everything"}}`, team.Team.ID).
		expect(t, http.StatusOK, &installation)
	call(dana, http.MethodGet, "/api/teams/{team_id}/mcp/installations/{id}", "", team.Team.ID, installation.Installation.ID).
		expect(t, http.StatusOK, nil)
	call(dana, http.MethodPost, "/api/teams/{team_id}/invitations", `{"email":"erin@example.test","role":"TEAM_ROLE_USER"}`,
		team.Team.ID).expect(t, http.StatusOK, nil)

	// Without a token, or with a wrong one, nothing is read: 401 with a google.rpc.Status.
	for _, token := range []string{"", "not-a-token-of-anyone-0123456789"} {
		a := call(token, http.MethodGet, "/api/teams/{team_id}", "", team.Team.ID).expect(t, http.StatusUnauthorized, nil)
		if code, msg := a.rpcStatus(); code != 16 || msg == "" {
			t.Errorf("401 body %s, want code 16 (unauthenticated) with a message", a.body)
		}
	}

	// Erin is invited but not a member: Dana's team and its installation are answered exactly as ids that
	// do not exist, so she learns nothing of them.
	for _, tc := range []struct{ path, id string }{
		{"/api/teams/{team_id}", ""},
		{"/api/teams/{team_id}/members", ""},
		{"/api/teams/{team_id}/mcp/installations/{id}", installation.Installation.ID},
		{"/api/teams/{team_id}/mcp/instances", ""},
	} {
		args := func(teamID string) []string {
			if tc.id == "" {
				return []string{teamID}
			}
			return []string{teamID, tc.id}
		}
		other := uuid.NewString()
		foreign := call(erin, http.MethodGet, tc.path, "", args(team.Team.ID)...).call(t)
		missing := call(erin, http.MethodGet, tc.path, "", args(other)...).call(t)
		if foreign.status != http.StatusNotFound && foreign.status != http.StatusForbidden {
			t.Errorf("GET %s of another team: %d %s, want 404 or 403", tc.path, foreign.status, foreign.body)
		}
		if foreign.status != missing.status ||
			string(foreign.body) != strings.ReplaceAll(string(missing.body), other, team.Team.ID) {
			t.Errorf("GET %s tells another team from none: %d %s, and for no team %d %s",
				tc.path, foreign.status, foreign.body, missing.status, missing.body)
		}
		for _, leak := range []string{"acme", "Acme", "dana", "everything"} {
			if bytes.Contains(foreign.body, []byte(leak)) {
				t.Errorf("GET %s of another team mentions %q: %s", tc.path, leak, foreign.body)
			}
		}
	}

	// Bad input is 400 with a message naming the field.
	for _, tc := range []struct {
		method, path, query, body string
		args                      []string
		field                     string
	}{
		{http.MethodPost, "/api/teams", "", `{"slug":"Not A Slug","name":"x"}`, nil, "slug"},
		{http.MethodPost, "/api/teams", "", `{"slug":`, nil, "unexpected EOF"},
		{http.MethodGet, "/api/teams/{team_id}", "", "", []string{"not-a-uuid"}, "team_id"},
		{http.MethodGet, "/api/teams/{team_id}/mcp/installations", "?pageSize=100000", "", []string{team.Team.ID}, "page_size"},
		{http.MethodGet, "/api/teams/{team_id}/mcp/installations", "?pageSize=many", "", []string{team.Team.ID}, "page_size"},
		{http.MethodPost, "/api/teams/{team_id}/mcp/installations", "", `{"catalogEntryId":"` + entry.Entry.ID + `"}`,
			[]string{team.Team.ID}, "spec"},
		{http.MethodPatch, "/api/teams/{team_id}/mcp/installations/{installation_id}/settings", "",
			`{"requestLoggingEnabled":`, []string{team.Team.ID, installation.Installation.ID}, "unexpected EOF"},
		{http.MethodPatch, "/api/teams/{team_id}/mcp/installations/{installation_id}/settings", "",
			`{"requestLoggingEnabled":"no"}`, []string{team.Team.ID, installation.Installation.ID}, "requestLoggingEnabled"},
	} {
		c := call(dana, tc.method, tc.path, tc.body, tc.args...)
		c.query = tc.query
		a := c.call(t)
		code, msg := a.rpcStatus()
		if a.status != http.StatusBadRequest || code != 3 || !strings.Contains(msg, tc.field) {
			t.Errorf("%s %s%s %s: %d %s, want 400 naming %q", tc.method, tc.path, tc.query, tc.body, a.status, a.body, tc.field)
		}
	}

	// Erin accepts the invitation and now reads the team; Dana deletes the installation.
	var invitations struct{ Invitations []struct{ ID string } }
	call(erin, http.MethodGet, "/api/me/invitations", "").expect(t, http.StatusOK, &invitations)
	if len(invitations.Invitations) != 1 {
		t.Fatalf("Erin's invitations: %+v", invitations)
	}
	call(erin, http.MethodPost, "/api/me/invitations/{invitation_id}:accept", "{}", invitations.Invitations[0].ID).
		expect(t, http.StatusOK, nil)
	call(erin, http.MethodGet, "/api/teams/{team_id}", "", team.Team.ID).expect(t, http.StatusOK, nil)
	var members struct{ Members []struct{ Role string } }
	call(dana, http.MethodGet, "/api/teams/{team_id}/members", "", team.Team.ID).expect(t, http.StatusOK, &members)
	if len(members.Members) != 2 {
		t.Errorf("members after Erin joined: %+v", members)
	}
	call(erin, http.MethodDelete, "/api/teams/{team_id}/mcp/installations/{id}", "", team.Team.ID, installation.Installation.ID).
		expect(t, http.StatusForbidden, nil)
	call(dana, http.MethodDelete, "/api/teams/{team_id}/mcp/installations/{id}", "", team.Team.ID, installation.Installation.ID).
		expect(t, http.StatusOK, nil)
	call(dana, http.MethodGet, "/api/teams/{team_id}/mcp/installations/{id}", "", team.Team.ID, installation.Installation.ID).
		expect(t, http.StatusNotFound, nil)
}

func containsID(items []struct{ ID string }, id string) bool {
	for _, item := range items {
		if item.ID == id {
			return true
		}
	}
	return false
}
