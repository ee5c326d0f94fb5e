package gateway

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// TestTaskIDsOpenOnlyForTheirOwner holds what an attacker with a sealed id, or the knowledge of how ids
// are made, could try: every other team, user, instance, downstream id or key opens nothing.
func TestTaskIDsOpenOnlyForTheirOwner(t *testing.T) {
	t.Parallel()
	ids := taskIDs{key: []byte("0123456789abcdef0123456789abcdef")}
	sealed := ids.seal("team-a", "user-a", "inst-a", "down-1")
	if inst, down, ok := ids.open("team-a", "user-a", sealed); !ok || inst != "inst-a" || down != "down-1" {
		t.Fatalf("owner opens %q: %q %q %t", sealed, inst, down, ok)
	}
	parts := strings.Split(sealed, ".")
	with := func(i int, v string) string {
		p := append([]string(nil), parts...)
		p[i] = v
		return strings.Join(p, ".")
	}
	// The same tuple split differently must not hash alike.
	shifted := ids.seal("team-a", "user-", "ainst-a", "down-1")
	for _, tc := range []struct{ name, team, user, id string }{
		{"other user", "team-a", "user-b", sealed},
		{"other team", "team-b", "user-a", sealed},
		{"other instance", "team-a", "user-a", with(1, base64URL("inst-b"))},
		{"other downstream id", "team-a", "user-a", with(2, base64URL("down-2"))},
		{"mac of another tuple", "team-a", "user-a", with(3, strings.Split(shifted, ".")[3])},
		{"no mac", "team-a", "user-a", with(3, "")},
		{"other version", "team-a", "user-a", with(0, "t2")},
		{"bad base64", "team-a", "user-a", with(1, "!!")},
		{"too few parts", "team-a", "user-a", strings.Join(parts[:3], ".")},
		{"too long", "team-a", "user-a", sealed + strings.Repeat("A", 2*maxTaskIDBytes)},
		{"empty", "team-a", "user-a", ""},
		{"other key", "team-a", "user-a", taskIDs{key: []byte("another key of thirty-two bytes!")}.seal("team-a", "user-a", "inst-a", "down-1")},
	} {
		if inst, down, ok := ids.open(tc.team, tc.user, tc.id); ok {
			t.Errorf("%s: opened %q as %q %q", tc.name, tc.id, inst, down)
		}
	}
}

func base64URL(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// TestWithTaskCapability adds the capability to an initialize answer in either of the SDK's response
// forms, and leaves anything else alone.
func TestWithTaskCapability(t *testing.T) {
	t.Parallel()
	caps := []byte(`{"list":{}}`)
	for _, tc := range []struct{ name, body, want string }{
		{"json", `{"jsonrpc":"2.0","id":1,"result":{"capabilities":{"tools":{}},"protocolVersion":"2025-11-25"}}`,
			`{"id":1,"jsonrpc":"2.0","result":{"capabilities":{"tasks":{"list":{}},"tools":{}},"protocolVersion":"2025-11-25"}}`},
		{"event stream", "event: message\nid: 1\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"capabilities\":{}}}\n\n",
			"event: message\nid: 1\ndata: {\"id\":1,\"jsonrpc\":\"2.0\",\"result\":{\"capabilities\":{\"tasks\":{\"list\":{}}}}}\n\n"},
		{"error", `{"jsonrpc":"2.0","id":1,"error":{"code":-32600,"message":"no"}}`, `{"jsonrpc":"2.0","id":1,"error":{"code":-32600,"message":"no"}}`},
		{"not json", "event: message\ndata: {\n\n", "event: message\ndata: {\n\n"},
	} {
		if got := string(withTaskCapability([]byte(tc.body), caps)); got != tc.want {
			t.Errorf("%s: got %s, want %s", tc.name, got, tc.want)
		}
	}
}

// TestTaskMethodsUnknownWithoutTaskServers keeps the tasks methods as unknown as they were for a user
// none of whose servers has tasks: -32601, in each era's way.
func TestTaskMethodsUnknownWithoutTaskServers(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{})
	session := map[string]string{"Mcp-Session-Id": b.openSession(t, "ann"), "Mcp-Protocol-Version": sessionVersion}
	stateless := map[string]string{"Mcp-Protocol-Version": statelessVersion}
	const statelessMeta = `"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}`
	for _, method := range []string{methodTasksGet, methodTasksResult, methodTasksCancel, methodTasksList} {
		for _, era := range []struct {
			header map[string]string
			meta   string
			status int
		}{{session, "", http.StatusOK}, {stateless, "," + statelessMeta, http.StatusNotFound}} {
			resp := b.do(t, http.MethodPost, "/teams/acme/mcp", "ann",
				`{"jsonrpc":"2.0","id":7,"method":"`+method+`","params":{"taskId":"t1.a.b.c"`+era.meta+`}}`, era.header)
			if _, code, msg := rpcAnswer(t, resp); resp.StatusCode != era.status || code != -32601 || !strings.Contains(msg, method) {
				t.Errorf("%s: %d %d %q, want %d and -32601 naming the method", method, resp.StatusCode, code, msg, era.status)
			}
		}
	}
	// A task-augmented call of a tool whose server has no tasks runs as a plain call.
	resp := b.do(t, http.MethodPost, "/teams/acme/mcp", "ann",
		`{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"alpha__echo","arguments":{"message":"hi"},"task":{"ttl":1000}}}`, session)
	if result, code, msg := rpcAnswer(t, resp); code != 0 || !strings.Contains(string(result), "content") {
		t.Errorf("task-augmented call without task servers: %s %d %q, want the plain result", result, code, msg)
	}
}

// TestWithTasksExtension adds the tasks extension to a server/discover answer beside the extensions it
// has, and takes the experimental form's capabilities.tasks out, which the extension replaces.
func TestWithTasksExtension(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, body, want string }{
		{"none yet", `{"jsonrpc":"2.0","id":1,"result":{"capabilities":{"tools":{}}}}`,
			`{"id":1,"jsonrpc":"2.0","result":{"capabilities":{"extensions":{"io.modelcontextprotocol/tasks":{}},"tools":{}}}}`},
		{"beside others", `{"jsonrpc":"2.0","id":1,"result":{"capabilities":{"tasks":{"list":{}},"extensions":{"io.example/x":{"a":1}}}}}`,
			`{"id":1,"jsonrpc":"2.0","result":{"capabilities":{"extensions":{"io.example/x":{"a":1},"io.modelcontextprotocol/tasks":{}}}}}`},
		{"error", `{"jsonrpc":"2.0","id":1,"error":{"code":-32600,"message":"no"}}`, `{"jsonrpc":"2.0","id":1,"error":{"code":-32600,"message":"no"}}`},
	} {
		if got := string(withTasksExtension([]byte(tc.body))); got != tc.want {
			t.Errorf("%s: got %s, want %s", tc.name, got, tc.want)
		}
	}
}

// TestDeclaresTasks reads the extension from a request's client capabilities, and from nowhere else.
func TestDeclaresTasks(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		meta string
		want bool
	}{
		{`{"io.modelcontextprotocol/clientCapabilities":{"extensions":{"io.modelcontextprotocol/tasks":{}}}}`, true},
		{`{"io.modelcontextprotocol/clientCapabilities":{"extensions":{"io.modelcontextprotocol/other":{}}}}`, false},
		{`{"io.modelcontextprotocol/clientCapabilities":{"tasks":{}}}`, false},
		{`{"io.modelcontextprotocol/clientCapabilities":{"extensions":["io.modelcontextprotocol/tasks"]}}`, false},
		{`{"extensions":{"io.modelcontextprotocol/tasks":{}}}`, false},
		{`null`, false},
	} {
		var meta map[string]any
		if err := json.Unmarshal([]byte(tc.meta), &meta); err != nil {
			t.Fatal(err)
		}
		if got := declaresTasks(meta); got != tc.want {
			t.Errorf("declaresTasks(%s) = %t, want %t", tc.meta, got, tc.want)
		}
	}
}

// TestRoutingHeaders holds the Mcp-Method and Mcp-Name headers of the 2026-07-28 era to the body.
func TestRoutingHeaders(t *testing.T) {
	t.Parallel()
	h := func(kv ...string) http.Header {
		out := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			out.Set(kv[i], kv[i+1])
		}
		return out
	}
	for _, tc := range []struct {
		name string
		h    http.Header
		ok   bool
	}{
		{"matching", h("Mcp-Protocol-Version", "2026-07-28", "Mcp-Method", "tasks/get", "Mcp-Name", "t1.x"), true},
		{"whitespace around the name", h("Mcp-Protocol-Version", "2026-07-28", "Mcp-Method", "tasks/get", "Mcp-Name", " t1.x "), true},
		{"session era", h("Mcp-Protocol-Version", "2025-11-25"), true},
		{"other method", h("Mcp-Protocol-Version", "2026-07-28", "Mcp-Method", "tools/call", "Mcp-Name", "t1.x"), false},
		{"other name", h("Mcp-Protocol-Version", "2026-07-28", "Mcp-Method", "tasks/get", "Mcp-Name", "t1.y"), false},
		{"no method", h("Mcp-Protocol-Version", "2026-07-28", "Mcp-Name", "t1.x"), false},
		{"no name", h("Mcp-Protocol-Version", "2026-07-28", "Mcp-Method", "tasks/get"), false},
	} {
		if err := checkRoutingHeaders(tc.h, "tasks/get", "t1.x"); (err == nil) != tc.ok {
			t.Errorf("%s: %v, want ok %t", tc.name, err, tc.ok)
		}
	}
}
