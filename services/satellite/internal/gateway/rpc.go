package gateway

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"

	"github.com/orrery/orrery/services/satellite/internal/sdkjson"
)

// The endpoint decides what a request may do once, in guard, from the JSON-RPC messages of its body. Those
// must be the very messages the SDK will dispatch, or a body could be read one way here and another way
// there: encoding/json matches keys regardless of case and refuses trailing bytes, where the SDK matches
// keys exactly and reads the first value only, so {"method":"tools/call","Method":"ping"} was a ping here
// and a tool call there. The body is therefore decoded with the SDK's own decoder, the way each of its
// transports decodes it, and a body the SDK would not decode is refused here rather than let through
// unclassified. FuzzScopeDecision holds this against the SDK's transports.

// decodeBody decodes a POST body as the SDK's transport for it does. The Streamable HTTP transport takes
// a message or a batch of them (the SDK's readBatch); the legacy SSE transport takes a single message
// (jsonrpc.DecodeMessage).
func decodeBody(body []byte, batches bool) ([]jsonrpc.Message, error) {
	if batches {
		msgs, _, err := sdkjson.DecodeBatch(body)
		return msgs, err
	}
	msg, err := sdkjson.DecodeMessage(body)
	if err != nil {
		return nil, err
	}
	return []jsonrpc.Message{msg}, nil
}

// rpcSummary is what guard learned from a POST body.
type rpcSummary struct {
	// id is the id of the body's only request, for error answers; invalid otherwise.
	id jsonrpc.ID
	// methods are the methods of its requests and notifications, in order.
	methods  []string
	requests []*jsonrpc.Request
	// batch says the body was a JSON array of messages, whose answer is one too.
	batch bool
}

type rpcSummaryKey struct{}

// metaProtocolVersion is the _meta key of the 2026-07-28 era that names a request's protocol version.
const metaProtocolVersion = "io.modelcontextprotocol/protocolVersion"

// summarize extracts what authorization and routing need from decoded messages. Responses (a client
// answering a server's request) call no method.
func summarize(msgs []jsonrpc.Message) *rpcSummary {
	s := &rpcSummary{}
	for _, m := range msgs {
		if req, ok := m.(*jsonrpc.Request); ok {
			s.methods = append(s.methods, req.Method)
			s.requests = append(s.requests, req)
		}
	}
	if len(msgs) == 1 && len(s.requests) == 1 {
		s.id = s.requests[0].ID
	}
	return s
}

// forget drops the decoded messages once the request they came in has been served.
func (s *rpcSummary) forget() {
	s.id, s.methods, s.requests = jsonrpc.ID{}, nil, nil
}

// only returns the body's only request, or nil when it holds anything else.
func (s *rpcSummary) only() *jsonrpc.Request {
	if s == nil || !s.id.IsValid() {
		return nil
	}
	return s.requests[0]
}

// metaVersion returns the newest protocol version the requests' _meta names, read as the SDK reads it.
// It only routes a request; it grants nothing.
func (s *rpcSummary) metaVersion() string {
	var newest string
	for _, req := range s.requests {
		var p struct {
			Meta map[string]any `json:"_meta"`
		}
		if len(req.Params) > 0 && sdkjson.Unmarshal(req.Params, &p) == nil {
			if v, ok := p.Meta[metaProtocolVersion].(string); ok && v > newest {
				newest = v
			}
		}
	}
	return newest
}

// anyScope marks methods that either scope allows.
var anyScope = []string{}

// methodScopes says what each method the endpoint serves needs. A method not listed needs both scopes
// (so a token with both may send anything, which guard relies on):
// the SDK refuses methods it does not know, so only a method a newer SDK adds lands there, and it stays
// refused to tokens without both until it is classified here.
var methodScopes = map[string][]string{
	"tools/call":               {ScopeExecute},
	"tools/list":               {ScopeRead},
	"resources/list":           {ScopeRead},
	"resources/templates/list": {ScopeRead},
	"resources/read":           {ScopeRead},
	"resources/subscribe":      {ScopeRead},
	"prompts/list":             {ScopeRead},
	"prompts/get":              {ScopeRead},
	"completion/complete":      {ScopeRead},
	// Tasks come only from tool calls; their status and results are the calls'.
	methodTasksGet:    {ScopeExecute},
	methodTasksResult: {ScopeExecute},
	methodTasksList:   {ScopeExecute},
	methodTasksCancel: {ScopeExecute},
	methodTasksUpdate: {ScopeExecute},

	"initialize":                       anyScope,
	"ping":                             anyScope,
	"server/discover":                  anyScope,
	"logging/setLevel":                 anyScope,
	"resources/unsubscribe":            anyScope,
	"subscriptions/listen":             anyScope,
	"notifications/initialized":        anyScope,
	"notifications/cancelled":          anyScope,
	"notifications/progress":           anyScope,
	"notifications/roots/list_changed": anyScope,
}

// missingScopes returns the scopes methods need that p lacks, in a stable order. Requests without a
// method (GET streams, DELETE, a client's responses) need one of the two scopes.
func missingScopes(p *principal, methods []string) []string {
	var need []string
	add := func(s string) {
		if !p.has(s) && !slices.Contains(need, s) {
			need = append(need, s)
		}
	}
	for _, m := range methods {
		scopes, known := methodScopes[m]
		if !known {
			scopes = []string{ScopeRead, ScopeExecute}
		}
		for _, s := range scopes {
			add(s)
		}
	}
	if len(need) == 0 && !p.has(ScopeRead) && !p.has(ScopeExecute) {
		need = append(need, ScopeRead)
	}
	slices.Sort(need)
	return need
}

// writeRPCOutcome answers the request with id with res, or with err: a JSON-RPC error as it is, any other
// as an internal error.
func writeRPCOutcome(w http.ResponseWriter, id jsonrpc.ID, res any, err error) {
	var jerr *jsonrpc.Error
	switch {
	case errors.As(err, &jerr):
		writeRPCError(w, http.StatusOK, id, jerr.Code, jerr.Message)
	case err != nil:
		writeRPCError(w, http.StatusOK, id, jsonrpc.CodeInternalError, err.Error())
	default:
		writeRPCResult(w, id, res)
	}
}

// writeRPCError answers an HTTP request with a JSON-RPC error response and the given status; id is the
// request's, or invalid for null.
func writeRPCError(w http.ResponseWriter, status int, id jsonrpc.ID, code int64, msg string) {
	data, err := json.Marshal(struct {
		JSONRPC string         `json:"jsonrpc"`
		ID      any            `json:"id"`
		Error   *jsonrpc.Error `json:"error"`
	}{"2.0", id.Raw(), &jsonrpc.Error{Code: code, Message: msg}})
	if err != nil {
		http.Error(w, msg, status)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(data)
}
