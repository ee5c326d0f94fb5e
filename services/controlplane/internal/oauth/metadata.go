package oauth

import "net/http"

// metadata is the RFC 8414 authorization server metadata document.
type metadata struct {
	Issuer                                     string   `json:"issuer"`
	AuthorizationEndpoint                      string   `json:"authorization_endpoint"`
	TokenEndpoint                              string   `json:"token_endpoint"`
	RegistrationEndpoint                       string   `json:"registration_endpoint"`
	RevocationEndpoint                         string   `json:"revocation_endpoint"`
	IntrospectionEndpoint                      string   `json:"introspection_endpoint"`
	DeviceAuthorizationEndpoint                string   `json:"device_authorization_endpoint"`
	ScopesSupported                            []string `json:"scopes_supported"`
	ResponseTypesSupported                     []string `json:"response_types_supported"`
	ResponseModesSupported                     []string `json:"response_modes_supported"`
	GrantTypesSupported                        []string `json:"grant_types_supported"`
	TokenEndpointAuthMethodsSupported          []string `json:"token_endpoint_auth_methods_supported"`
	RevocationEndpointAuthMethodsSupported     []string `json:"revocation_endpoint_auth_methods_supported"`
	IntrospectionEndpointAuthMethodsSupported  []string `json:"introspection_endpoint_auth_methods_supported"`
	CodeChallengeMethodsSupported              []string `json:"code_challenge_methods_supported"`
	AuthorizationResponseIssParameterSupported bool     `json:"authorization_response_iss_parameter_supported"`
	ClientIDMetadataDocumentSupported          bool     `json:"client_id_metadata_document_supported"`
}

// serveMetadata serves the metadata document, at the RFC 8414 path and at the OpenID Connect discovery
// path that some MCP clients try instead.
func (s *Server) serveMetadata(w http.ResponseWriter, _ *http.Request) {
	iss := s.cfg.Issuer
	w.Header().Set("Cache-Control", "public, max-age=300")
	writeJSON(w, http.StatusOK, metadata{
		Issuer:                                     iss,
		AuthorizationEndpoint:                      iss + "/oauth/authorize",
		TokenEndpoint:                              iss + "/oauth/token",
		RegistrationEndpoint:                       iss + "/oauth/register",
		RevocationEndpoint:                         iss + "/oauth/revoke",
		IntrospectionEndpoint:                      iss + "/oauth/introspect",
		DeviceAuthorizationEndpoint:                iss + "/oauth/device_authorization",
		ScopesSupported:                            append(supportedScopes[:len(supportedScopes):len(supportedScopes)], ScopeAPI),
		ResponseTypesSupported:                     []string{"code"},
		ResponseModesSupported:                     []string{"query"},
		GrantTypesSupported:                        []string{grantAuthorizationCode, grantRefreshToken, grantClientCredentials, grantDeviceCode},
		TokenEndpointAuthMethodsSupported:          []string{authNone, authSecretBasic, authSecretPost},
		RevocationEndpointAuthMethodsSupported:     []string{authNone, authSecretBasic, authSecretPost},
		IntrospectionEndpointAuthMethodsSupported:  []string{authSecretBasic, authSecretPost},
		CodeChallengeMethodsSupported:              []string{"S256"},
		AuthorizationResponseIssParameterSupported: true,
		ClientIDMetadataDocumentSupported:          true,
	})
}
