package oauth

import (
	"errors"
	"testing"
)

func TestCheckRedirectURI(t *testing.T) {
	t.Parallel()
	for uri, ok := range map[string]bool{
		"https://app.example/callback":     true,
		"http://127.0.0.1:3000/callback":   true,
		"http://127.0.0.1/callback":        true,
		"http://[::1]:8080/cb":             true,
		"http://localhost:33418/":          true,
		"http://app.example/callback":      false, // plain http off loopback
		"http://localhost.evil.example/cb": false,
		"https://app.example/cb#frag":      false,
		"https://user@app.example/cb":      false,
		"/relative/callback":               false,
		"vscode://callback":                false,
		"javascript:alert(1)":              false,
	} {
		err := checkRedirectURI(uri)
		var regErr *registrationError
		if ok != (err == nil) || (err != nil && (!errors.As(err, &regErr) || regErr.Code != "invalid_redirect_uri")) {
			t.Errorf("checkRedirectURI(%q) = %v, want ok %v", uri, err, ok)
		}
	}
}

func TestIsMetadataDocumentURL(t *testing.T) {
	t.Parallel()
	for id, want := range map[string]bool{
		"https://client.example/oauth/metadata.json": true,
		"https://client.example":                     false, // no path
		"https://client.example/":                    false,
		"http://client.example/metadata.json":        false,
		"https://client.example/m.json#x":            false,
		"9b2d5c1e-7f0a-4b9e-8d51-3f2a6c0e1d77":       false,
	} {
		if got := isMetadataDocumentURL(id); got != want {
			t.Errorf("isMetadataDocumentURL(%q) = %v, want %v", id, got, want)
		}
	}
}

func TestValidateMetadata(t *testing.T) {
	t.Parallel()
	ok := clientMetadata{RedirectURIs: []string{"http://127.0.0.1:9/cb"}}
	c, err := validateMetadata(ok)
	if err != nil || !c.IsPublic() || len(c.grantTypes) != 2 || len(c.scopes) != 3 {
		t.Fatalf("minimal metadata: %+v, %v; want a public client with code and refresh grants and every scope", c, err)
	}
	for name, md := range map[string]clientMetadata{
		"client credentials": {RedirectURIs: ok.RedirectURIs, GrantTypes: []string{grantClientCredentials}},
		"implicit":           {RedirectURIs: ok.RedirectURIs, ResponseTypes: []string{"token"}},
		"too many URIs":      {RedirectURIs: make([]string, 11)},
	} {
		if _, err := validateMetadata(md); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
