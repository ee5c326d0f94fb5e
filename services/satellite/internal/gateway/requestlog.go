package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
)

// Limits of the RequestLog message.
const (
	maxLoggedToolName = 256
	maxLoggedError    = 4096
)

// logCall emits the mcp.request.logs event of one tools/call. It is the only place the satellite builds
// request logs. With the installation's request logging off, nothing the tool or its server sent is
// stored: not the arguments, not the result, and not an error's text, which is response content as
// much as a result is; the outcome is "error", with the JSON-RPC error code when there is one.
func (g *Gateway) logCall(us *userServer, rt route, args json.RawMessage, res *mcp.CallToolResult, callErr error, d time.Duration, traceID string) {
	if g.cfg.Events == nil {
		return
	}
	rl := &satellitev1.RequestLog{
		UserId:   us.key.userID,
		ToolName: truncate(rt.name, maxLoggedToolName),
		Duration: durationpb.New(d),
		Success:  callErr == nil && res != nil && !res.IsError,
		TraceId:  traceID,
	}
	withBodies := rt.inst.RequestLoggingEnabled
	var result []byte
	if res != nil {
		result, _ = json.Marshal(res)
	}
	// Sizes feed the usage analytics, so they are sent even when the bodies are not.
	rl.RequestBytes, rl.ResponseBytes = uint64(len(args)), uint64(len(result))
	switch {
	case callErr != nil && withBodies:
		rl.Error = truncate(callErr.Error(), maxLoggedError)
	case callErr != nil:
		rl.Error = "error"
		var jerr *jsonrpc.Error
		if errors.As(callErr, &jerr) {
			rl.Error = fmt.Sprintf("error: JSON-RPC code %d", jerr.Code)
		}
	case res == nil:
		rl.Error = "no result"
	case res.IsError && withBodies:
		rl.Error = truncate(errorText(res), maxLoggedError)
	case res.IsError:
		rl.Error = "error: the tool reported an error"
	}
	if withBodies {
		if len(args) > 0 {
			rl.Request = g.bodyValue(args)
		} else {
			rl.Request = structpb.NewStructValue(&structpb.Struct{})
		}
		if result != nil {
			rl.Response = g.bodyValue(result)
		}
	}
	g.cfg.Events.Emit(&satellitev1.Event{
		TeamId:         rt.inst.TeamID,
		InstallationId: rt.inst.InstallationID,
		InstanceId:     rt.inst.ID,
		Payload:        &satellitev1.Event_RequestLog{RequestLog: rl},
	})
}

// bodyValue converts a JSON body for a request log; a body over the limit is replaced by a note of its
// size, so one huge call cannot crowd the event buffer.
func (g *Gateway) bodyValue(b []byte) *structpb.Value {
	if len(b) > g.cfg.MaxLoggedBodyBytes {
		return structpb.NewStringValue(fmt.Sprintf("[%d bytes, not logged: over %d]", len(b), g.cfg.MaxLoggedBodyBytes))
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return structpb.NewStringValue(string(b))
	}
	pv, err := structpb.NewValue(v)
	if err != nil {
		return structpb.NewStringValue(string(b))
	}
	return pv
}

func errorText(res *mcp.CallToolResult) string {
	var parts []string
	for _, c := range res.Content {
		if t, ok := c.(*mcp.TextContent); ok {
			parts = append(parts, t.Text)
		}
	}
	if len(parts) == 0 {
		return "tool reported an error"
	}
	return strings.Join(parts, "\n")
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	// Do not leave half a UTF-8 sequence behind.
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}
