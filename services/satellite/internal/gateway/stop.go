package gateway

import (
	"context"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// stopOf returns the answer to a call of a tool of the user's first instance that match selects and that
// is under an emergency stop, and nil when there is none. It is asked only of calls that failed, so calls
// that succeed never pay for it.
func (us *userServer) stopOf(match func(Instance) bool) *mcp.CallToolResult {
	for _, inst := range us.g.cfg.Backend.Instances(us.key.teamID, us.key.userID) {
		if inst.EmergencyStop == "" || inst.TeamID != us.key.teamID || inst.UserID != us.key.userID || !match(inst) {
			continue
		}
		return &mcp.CallToolResult{IsError: true, Content: []mcp.Content{&mcp.TextContent{
			Text: "refused: " + inst.EmergencyStop,
		}}}
	}
	return nil
}

// stopMiddleware answers a call of a tool that is no longer listed because its server is under an
// emergency stop with the stop's reason, rather than as a call of an unknown tool: a client that kept the
// name learns why it stopped working.
func (us *userServer) stopMiddleware(next mcp.MethodHandler) mcp.MethodHandler {
	return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
		res, err := next(ctx, method, req)
		call, ok := req.(*mcp.CallToolRequest)
		if err == nil || !ok || call.Params == nil {
			return res, err
		}
		name := call.Params.Name
		if stop := us.stopOf(func(inst Instance) bool {
			return inst.Prefix != "" && strings.HasPrefix(name, inst.Prefix+"__")
		}); stop != nil {
			return stop, nil
		}
		return res, err
	}
}
