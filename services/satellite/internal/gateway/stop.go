package gateway

import (
	"context"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// outOfService is the answer to a call of one of inst's tools while the instance is out of service:
// under an emergency stop, or waiting for its user to connect their account at the server. It is nil
// while the instance serves.
func outOfService(inst Instance) *mcp.CallToolResult {
	switch {
	case inst.EmergencyStop != "":
		return toolError("refused: " + inst.EmergencyStop)
	case inst.ConnectAccountURL != "":
		return connectAccount(inst)
	}
	return nil
}

// refusalOf returns the answer to a call of a tool of the user's first instance that match selects and
// that is out of service (see outOfService), and nil when there is none. It is asked only of calls that
// failed, so calls that succeed never pay for it.
func (us *userServer) refusalOf(match func(Instance) bool) *mcp.CallToolResult {
	for _, inst := range us.g.cfg.Backend.Instances(us.key.teamID, us.key.userID) {
		if inst.TeamID != us.key.teamID || inst.UserID != us.key.userID || !match(inst) {
			continue
		}
		if res := outOfService(inst); res != nil {
			return res
		}
	}
	return nil
}

// stopMiddleware answers a call of a tool that is not listed because its server is out of service (an
// emergency stop, or an account to connect while no tools of the server are known) with why, rather than
// as a call of an unknown tool: a client that kept the name learns why it stopped working. Calls that
// succeed, and failed calls of listed tools, pay for no scan.
func (us *userServer) stopMiddleware(next mcp.MethodHandler) mcp.MethodHandler {
	return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
		res, err := next(ctx, method, req)
		call, ok := req.(*mcp.CallToolRequest)
		if err == nil || !ok || call.Params == nil {
			return res, err
		}
		name := call.Params.Name
		// A listed tool's call that failed was already checked against its own instance (callTool): the
		// user's instances are not scanned a second time.
		us.syncMu.Lock()
		_, listed := us.tools[name]
		us.syncMu.Unlock()
		if listed {
			return res, err
		}
		if stop := us.refusalOf(func(inst Instance) bool {
			return inst.Prefix != "" && strings.HasPrefix(name, inst.Prefix+"__")
		}); stop != nil {
			return stop, nil
		}
		return res, err
	}
}
