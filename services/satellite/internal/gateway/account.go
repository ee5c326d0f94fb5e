package gateway

import (
	"cmp"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// connectAccount answers a call of a tool of an instance whose user has yet to connect their account at a
// server that authorizes each person: a tool error carrying the control plane's link, which the model can
// show the person. The link names the team and installation, never a member: whoever opens it connects
// their own account.
func connectAccount(inst Instance) *mcp.CallToolResult {
	return toolError("connect your account at " + cmp.Or(inst.ServerName, inst.ServerSlug) + ": " + inst.ConnectAccountURL +
		" (open the link in a browser signed in to Orrery, then call the tool again)")
}
