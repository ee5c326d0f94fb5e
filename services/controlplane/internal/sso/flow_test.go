package sso

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

func TestSafeReturnKeepsSignInsOnThisSite(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in   string
		want string
		ok   bool
	}{
		{"", "/", true},
		{"/", "/", true},
		{"/oauth/authorize?client_id=a&resource=x", "/oauth/authorize?client_id=a&resource=x", true},
		{"https://evil.test/", "", false},
		{"//evil.test/x", "", false},
		{"/\\evil.test", "", false},
		{"javascript:alert(1)", "", false},
		{"evil.test", "", false},
		{"/a\r\nSet-Cookie: x=y", "", false},
		{"/" + strings.Repeat("a", maxReturnLength), "", false},
	} {
		got, ok := safeReturn(c.in)
		if got != c.want || ok != c.ok {
			t.Errorf("safeReturn(%q) = %q, %v; want %q, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}

func TestClaimsReadHowProvidersSendThem(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name     string
		raw      string
		verified bool
		groups   []string
		has      bool
	}{
		{"a boolean flag and a list", `{"email":"a@x.test","email_verified":true,"groups":["g1","g2"]}`, true, []string{"g1", "g2"}, true},
		{"the flag as a string", `{"email":"a@x.test","email_verified":"true"}`, true, nil, false},
		{"no flag is not verified", `{"email":"a@x.test"}`, false, nil, false},
		{"a false flag", `{"email":"a@x.test","email_verified":false,"groups":[]}`, false, []string{}, true},
		{"one group as a string", `{"email":"a@x.test","email_verified":true,"groups":"solo"}`, true, []string{"solo"}, true},
		{"a groups claim of another shape", `{"email":"a@x.test","email_verified":true,"groups":{"a":1}}`, true, nil, false},
	} {
		var raw map[string]json.RawMessage
		if err := json.Unmarshal([]byte(c.raw), &raw); err != nil {
			t.Fatal(err)
		}
		var got claims
		readClaims(&got, raw, "groups")
		if got.Email != "a@x.test" || got.EmailVerified != c.verified || got.HasGroups != c.has || !slices.Equal(got.Groups, c.groups) {
			t.Errorf("%s: %+v", c.name, got)
		}
	}
}
