// Package scope names the OAuth scopes of team endpoints, the contract between the control plane's
// authorization server, which grants them, and satellites, which enforce them.
package scope

const (
	// Read allows listing tools, resources and prompts, and reading resources and prompts.
	Read = "mcp:read"
	// Execute allows calling tools.
	Execute = "mcp:tools:execute"
	// OfflineAccess asks the authorization server for a refresh token.
	OfflineAccess = "offline_access"
)
