package gateway

import (
	"encoding/base64"
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
