package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strings"

	"github.com/google/uuid"

	"github.com/orrery/orrery/services/controlplane/internal/bearer"
	"github.com/orrery/orrery/services/controlplane/internal/password"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// registrationError is an RFC 7591 error response, which has the shape of the error responses of RFC 6749,
// section 5.2.
type registrationError struct {
	Code        string `json:"error"`
	Description string `json:"error_description"`
}

func (e *registrationError) Error() string { return e.Code + ": " + e.Description }

func errInvalidRedirectURI(desc string) error {
	return &registrationError{Code: "invalid_redirect_uri", Description: desc}
}

func errInvalidMetadata(desc string) error {
	return &registrationError{Code: "invalid_client_metadata", Description: desc}
}

// registrationResponse is the RFC 7591 answer to a successful registration.
type registrationResponse struct {
	ClientID                string   `json:"client_id"`
	ClientIDIssuedAt        int64    `json:"client_id_issued_at"`
	ClientName              string   `json:"client_name,omitempty"`
	RedirectURIs            []string `json:"redirect_uris"`
	GrantTypes              []string `json:"grant_types"`
	ResponseTypes           []string `json:"response_types"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method"`
	Scope                   string   `json:"scope"`
}

// Registration is open to anyone, so each network address may register only so fast. Real clients register
// once per installation: even many people behind one proxy stay far below the limit.
const (
	registrationsPerMinute = 30
	registrationBurst      = 30
)

// maxRegistrationBytes bounds a registration request. Client metadata is a few hundred bytes; ten redirect
// URIs of a thousand characters still fit.
const maxRegistrationBytes = 16 << 10

// decodeMetadata reads a registration request's client metadata, a JSON object. Its error is an RFC 7591
// error that names the field at fault, with the HTTP status to answer it with.
func decodeMetadata(body io.Reader) (clientMetadata, int, *registrationError) {
	var md clientMetadata
	err := json.NewDecoder(body).Decode(&md)
	var (
		maxBytesErr *http.MaxBytesError
		syntaxErr   *json.SyntaxError
		typeErr     *json.UnmarshalTypeError
	)
	switch {
	case err == nil:
		return md, 0, nil
	case errors.As(err, &maxBytesErr):
		return md, http.StatusRequestEntityTooLarge, &registrationError{Code: "invalid_client_metadata",
			Description: fmt.Sprintf("the client metadata is larger than %d bytes", maxBytesErr.Limit)}
	case errors.Is(err, io.EOF):
		return md, http.StatusBadRequest, &registrationError{Code: "invalid_client_metadata",
			Description: "the body is empty: send the client metadata as a JSON object"}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return md, http.StatusBadRequest, &registrationError{Code: "invalid_client_metadata",
			Description: "the body is not valid JSON: it ends inside the client metadata"}
	case errors.As(err, &syntaxErr):
		return md, http.StatusBadRequest, &registrationError{Code: "invalid_client_metadata",
			Description: fmt.Sprintf("the body is not valid JSON: %v (at byte %d)", syntaxErr, syntaxErr.Offset)}
	case errors.As(err, &typeErr) && typeErr.Field == "":
		return md, http.StatusBadRequest, &registrationError{Code: "invalid_client_metadata",
			Description: "the client metadata must be a JSON object, not " + jsonKind(typeErr.Value)}
	case errors.As(err, &typeErr):
		desc := fmt.Sprintf("%s must be a string, not %s", typeErr.Field, jsonKind(typeErr.Value))
		if isListField(typeErr.Field) {
			desc = fmt.Sprintf("%s must be an array of strings", typeErr.Field)
			if typeErr.Type.Kind() == reflect.String {
				desc += ", and holds " + jsonKind(typeErr.Value)
			} else {
				desc += ", not " + jsonKind(typeErr.Value)
			}
		}
		return md, http.StatusBadRequest, &registrationError{Code: "invalid_client_metadata", Description: desc}
	default:
		return md, http.StatusBadRequest, &registrationError{Code: "invalid_client_metadata",
			Description: "the body is not a JSON client metadata document: " + err.Error()}
	}
}

// isListField reports whether the client metadata field named name in JSON is an array.
func isListField(name string) bool {
	t := reflect.TypeFor[clientMetadata]()
	for i := range t.NumField() {
		if tag, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ","); tag == name {
			return t.Field(i).Type.Kind() == reflect.Slice
		}
	}
	return false
}

// jsonKind names a kind of JSON value as json.UnmarshalTypeError reports it ("string", "number ...").
func jsonKind(value string) string {
	kind, _, _ := strings.Cut(value, " ")
	switch kind {
	case "array", "object":
		return "an " + kind
	default:
		return "a " + kind
	}
}

// register serves RFC 7591 dynamic client registration. It is open, as MCP clients need it to be, and so
// registers public clients only: they hold no secret, and every token they obtain needs a user's consent.
// A client that asks for a secret gets token_endpoint_auth_method "none" instead, as RFC 7591 lets the
// server decide.
func (s *Server) register(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ok, _, err := s.registrations.Allow(ctx, r.RemoteAddr)
	if err != nil {
		s.registrationFailed(ctx, w, err)
		return
	}
	if !ok {
		w.Header().Set("Retry-After", "60")
		writeJSON(w, http.StatusTooManyRequests, &registrationError{Code: "temporarily_unavailable",
			Description: "too many registrations from this address; try again in a minute"})
		return
	}
	if mediaType, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mediaType != "application/json" {
		writeJSON(w, http.StatusUnsupportedMediaType,
			errInvalidMetadata("send the client metadata as a JSON object, with Content-Type: application/json"))
		return
	}
	md, status, badMetadata := decodeMetadata(http.MaxBytesReader(w, r.Body, maxRegistrationBytes))
	if badMetadata != nil {
		writeJSON(w, status, badMetadata)
		return
	}
	c, err := validateMetadata(md)
	var regErr *registrationError
	if errors.As(err, &regErr) {
		writeJSON(w, http.StatusBadRequest, regErr)
		return
	}
	if err != nil {
		s.logger.ErrorContext(ctx, "register client", "error", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	stored, err := s.store.CreateOAuthClient(ctx, store.OAuthClient{
		ID: uuid.NewString(), Name: c.name, RedirectURIs: c.redirectURIs, GrantTypes: c.grantTypes, Scopes: c.scopes,
		TokenEndpointAuthMethod: authNone,
	})
	if err != nil {
		s.registrationFailed(ctx, w, err)
		return
	}
	s.logger.InfoContext(ctx, "registered oauth client", "client_id", stored.ID, "client_name", stored.Name)
	writeJSON(w, http.StatusCreated, registrationResponse{
		ClientID: stored.ID, ClientIDIssuedAt: stored.CreatedAt.Unix(), ClientName: stored.Name,
		RedirectURIs: stored.RedirectURIs, GrantTypes: stored.GrantTypes, ResponseTypes: []string{"code"},
		TokenEndpointAuthMethod: authNone, Scope: strings.Join(stored.Scopes, " "),
	})
}

// CreateTeamClient creates a confidential client of a team for the client-credentials grant and returns it
// with its secret, which is not stored and cannot be shown again.
func (s *Server) CreateTeamClient(ctx context.Context, teamID, createdBy uuid.UUID, name string, scopes []string) (store.OAuthClient, string, error) {
	secret, err := bearer.New(clientSecretPrefix)
	if err != nil {
		return store.OAuthClient{}, "", err
	}
	hash, err := password.Hash(ctx, secret)
	if err != nil {
		return store.OAuthClient{}, "", err
	}
	if len(scopes) == 0 {
		scopes = []string{ScopeRead, ScopeExecute}
	}
	c, err := s.store.CreateOAuthClient(ctx, store.OAuthClient{
		ID: "orcc_" + uuid.NewString(), TeamID: &teamID, Name: name, GrantTypes: []string{grantClientCredentials},
		Scopes: scopes, TokenEndpointAuthMethod: authSecretBasic, SecretHash: hash, CreatedBy: &createdBy,
	})
	if err != nil {
		return store.OAuthClient{}, "", err
	}
	return c, secret, nil
}

// clientSecretPrefix makes a leaked client secret recognisable.
const clientSecretPrefix = "orcs_"

// registrationFailed answers a registration the server could not carry out: temporarily_unavailable (503,
// with Retry-After) while the database is unreachable, so a client retries rather than gives up; an
// internal error otherwise, its detail only logged.
func (s *Server) registrationFailed(ctx context.Context, w http.ResponseWriter, err error) {
	if _, ok := s.temporary(ctx, w, "register client", err); ok {
		writeJSON(w, http.StatusServiceUnavailable, &registrationError{Code: "temporarily_unavailable",
			Description: "client registration is unavailable for a moment; try again shortly"})
		return
	}
	s.logger.ErrorContext(ctx, "register client", "error", err)
	http.Error(w, "internal error", http.StatusInternalServerError)
}
