package oauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/ory/fosite"

	"github.com/orrery/orrery/services/controlplane/internal/password"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// TestTemporaryFailures answers what fosite reports as invalid_client or server_error, when its cause is a
// passing failure, as 503 temporarily_unavailable with Retry-After; real refusals keep their own answer.
func TestTemporaryFailures(t *testing.T) {
	t.Parallel()
	provider := &fosite.Fosite{Config: &fosite.Config{}}
	s := &Server{logger: slog.New(slog.DiscardHandler), provider: provider, fosite: provider}
	// Shaped as fosite returns them: client authentication wraps what GetClient or the secret hasher returned.
	busySecretCheck := fosite.ErrInvalidClient.WithWrap(fmt.Errorf("verify: %w", password.ErrBusy)).WithDebug("busy")
	unreadableClient := fosite.ErrInvalidClient.WithWrap(fmt.Errorf("get oauth client: %w: %w", store.ErrUnavailable,
		errors.New("connection refused")))
	unreadableGrant := fosite.ErrServerError.WithWrap(fmt.Errorf("get token: %w", store.ErrUnavailable))
	for _, tc := range []struct {
		name       string
		err        error
		status     int
		code       string
		retryAfter string
	}{
		{"argon2 busy", busySecretCheck, http.StatusServiceUnavailable, "temporarily_unavailable", "2"},
		{"database down at GetClient", unreadableClient, http.StatusServiceUnavailable, "temporarily_unavailable", "5"},
		{"database down at a grant", unreadableGrant, http.StatusServiceUnavailable, "temporarily_unavailable", "5"},
		{"wrong secret", fosite.ErrInvalidClient.WithWrap(errors.New("wrong client secret")), http.StatusUnauthorized,
			"invalid_client", ""},
		{"unknown client", fosite.ErrInvalidClient.WithWrap(fosite.ErrNotFound), http.StatusUnauthorized, "invalid_client", ""},
	} {
		w := httptest.NewRecorder()
		s.writeAccessError(t.Context(), w, nil, "token", tc.err)
		var out struct {
			Error string `json:"error"`
		}
		_ = json.NewDecoder(w.Body).Decode(&out)
		if w.Code != tc.status || out.Error != tc.code || w.Header().Get("Retry-After") != tc.retryAfter {
			t.Errorf("%s: %d %q, Retry-After %q; want %d %q, %q", tc.name, w.Code, out.Error, w.Header().Get("Retry-After"),
				tc.status, tc.code, tc.retryAfter)
		}
	}
}
