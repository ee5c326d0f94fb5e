package oauth

import (
	"net/http"
	"strings"
	"testing"
)

func TestDecodeMetadataNamesTheField(t *testing.T) {
	t.Parallel()
	for body, want := range map[string]string{
		``:                                   "the body is empty",
		`{"redirect_uris": [`:                "not valid JSON",
		`[]`:                                 "must be a JSON object, not an array",
		`{"redirect_uris": "https://a.b/c"}`: "redirect_uris must be an array of strings, not a string",
		`{"redirect_uris": [1]}`:             "redirect_uris must be an array of strings, and holds a number",
		`{"client_name": {}}`:                "client_name must be a string, not an object",
		`{"scope": 5}`:                       "scope must be a string, not a number",
	} {
		_, status, err := decodeMetadata(strings.NewReader(body))
		if err == nil || status != http.StatusBadRequest || err.Code != "invalid_client_metadata" ||
			!strings.Contains(err.Description, want) {
			t.Errorf("%s: %d %v, want 400 invalid_client_metadata saying %q", body, status, err, want)
		}
	}
	md, _, err := decodeMetadata(strings.NewReader(`{"redirect_uris": ["https://a.b/c"], "software_id": 7}`))
	if err != nil || len(md.RedirectURIs) != 1 {
		t.Errorf("valid metadata with an unknown field: %+v, %v", md, err)
	}
}
