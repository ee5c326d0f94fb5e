package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/internal/policy"
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
//
// A call a policy refused is logged with the refusal as its error, whether or not bodies are logged: the
// text is the gateway's, not the tool's. The redact policies in extra hide fields and patterns of the
// bodies.
//
// It returns the result as json.Marshal encodes it (marshalResult), as it measured it, for a caller that sends it too.
func (g *Gateway) logCall(us *userServer, rt route, args json.RawMessage, res *mcp.CallToolResult, callErr error, d time.Duration, traceID string, extra callLog) (encoded []byte) {
	if g.cfg.Events == nil {
		return nil
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
		result, _ = marshalResult(res)
	}
	encoded = result
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
	case extra.denial != nil:
		rl.Error = extra.denial.Message()
	case res.IsError && withBodies:
		rl.Error = truncate(errorText(res), maxLoggedError)
	case res.IsError:
		rl.Error = "error: the tool reported an error"
	}
	if withBodies {
		args, result = policy.Redact(extra.redact, policy.RootArgs, args), policy.Redact(extra.redact, policy.RootResult, result)
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
	g.awaitSaved(rt)
	return encoded
}

// callLog is what a request log needs to know beyond the call and its answer.
type callLog struct {
	// denial is the refusal of a call a policy refused.
	denial *policy.Denial
	// redact are the redact policies that apply to the call.
	redact []*policy.Policy
}

// maxSaveWait bounds how long an answer waits for its request log to reach the disk: a commit takes a few
// milliseconds, tens under a burst.
const maxSaveWait = 2 * time.Second

// eventSaver is an EventSink that says when what it was given is stored safely, as the satellite's
// event batcher does once its on-disk queue has committed it.
type eventSaver interface {
	Saved(ctx context.Context) error
}

// awaitSaved holds a call's answer until its request log is on disk, so that every call a client got an
// answer to is logged even if the satellite crashes right after. It waits at most maxSaveWait, and not at
// all while the sink cannot store to disk: an answer is worth more than its log.
func (g *Gateway) awaitSaved(rt route) {
	saver, ok := g.cfg.Events.(eventSaver)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), maxSaveWait)
	defer cancel()
	if err := saver.Saved(ctx); err != nil {
		g.logger.Debug("answering a tool call before its request log is on disk", slog.String("instance_id", rt.inst.ID),
			slog.Any("error", err))
	}
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
		switch c := c.(type) {
		case *mcp.TextContent:
			parts = append(parts, c.Text)
		case rawContent:
			if t, ok := c.text(); ok {
				parts = append(parts, t)
			}
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
