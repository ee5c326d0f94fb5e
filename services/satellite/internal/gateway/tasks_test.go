package gateway

import (
	"encoding/base64"
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
