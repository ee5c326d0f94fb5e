package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/orrery/orrery/services/satellite/internal/sdkjson"
)

// SessionRequester is a Backend that can send a request over an instance's session without the SDK's
// client, and return the result as the server wrote it. The gateway sends most tools/call requests so:
// the SDK's client would decode the result into typed content only for the gateway's server to encode
// it again, and on a small call that decoding is a good part of the gateway's work.
type SessionRequester interface {
	// SessionRequest sends method with params to instance instanceID over the connection of session,
	// the instance's session as Backend.Session returned it, and returns the result undecoded. A
	// JSON-RPC error of the server comes back as a *jsonrpc.Error. When ctx ends first the server is
	// told the request was cancelled. It fails with an error that wraps ErrNoSessionRequest when it
	// cannot send on that connection; the caller then uses the session.
	SessionRequest(ctx context.Context, instanceID string, session *mcp.ClientSession, method string, params json.RawMessage) (json.RawMessage, error)
}

// ErrNoSessionRequest means a SessionRequester cannot carry the request on that session.
var ErrNoSessionRequest = errors.New("the session carries no requests beside the SDK's client")

// rawCallParams are the params of a tools/call sent through a SessionRequester.
type rawCallParams struct {
	Meta      mcp.Meta        `json:"_meta,omitempty"`
	Name      string          `json:"name"`
	Arguments json.RawMessage `json:"arguments"`
}

// rawCallResult is a tools/call result as a server wrote it, split only as far as the gateway needs:
// each content block stays as written.
type rawCallResult struct {
	Meta              mcp.Meta          `json:"_meta"`
	Content           []json.RawMessage `json:"content"`
	StructuredContent json.RawMessage   `json:"structuredContent"`
	IsError           bool              `json:"isError"`
	ResultType        string            `json:"resultType"`
}

// rawContent is a content block passed on as the server wrote it. The embedded *mcp.TextContent is
// never set: it only lends the type the SDK's Content interface, whose methods are partly unexported;
// the SDK's server calls no method but MarshalJSON on the content of a result it sends.
type rawContent struct {
	*mcp.TextContent
	raw json.RawMessage
}

func (c rawContent) MarshalJSON() ([]byte, error) { return c.raw, nil }

// text returns the text of a text content block, and whether it is one.
func (c rawContent) text() (string, bool) {
	var t struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if json.Unmarshal(c.raw, &t) != nil || t.Type != "text" {
		return "", false
	}
	return t.Text, true
}

// contentTypes are the content block types the SDK's client accepts in a tool result.
var contentTypes = map[string]bool{"text": true, "image": true, "audio": true, "resource": true, "resource_link": true}

// decodeRawResult turns a tools/call result as a server wrote it into the SDK's type, read as the SDK's
// client reads it (sdkUnmarshal), with the content blocks left as written: only their type is checked, as
// the SDK's client checks it. A result the split does not fit (one with a resultType, or whose fields do
// not have the types the protocol gives them) is decoded by the SDK, as its client would have decoded it.
func decodeRawResult(raw json.RawMessage) (*mcp.CallToolResult, error) {
	var w rawCallResult
	if err := sdkjson.Unmarshal(raw, &w); err != nil || w.ResultType != "" {
		return sdkResult(raw)
	}
	res := &mcp.CallToolResult{Meta: w.Meta, IsError: w.IsError, Content: make([]mcp.Content, len(w.Content))}
	for i, c := range w.Content {
		var block struct {
			Type string `json:"type"`
		}
		if sdkjson.Unmarshal(c, &block) != nil || !contentTypes[block.Type] {
			return sdkResult(raw)
		}
		res.Content[i] = rawContent{raw: c}
	}
	if len(w.StructuredContent) > 0 && string(w.StructuredContent) != "null" {
		res.StructuredContent = w.StructuredContent
	}
	return res, nil
}

// marshalResult is json.Marshal(res), byte for byte, without reflection for the results decodeRawResult
// makes: their content blocks as the server wrote them and structured content as raw JSON, compacted and
// HTML-escaped as encoding/json treats what a MarshalJSON method returns, in the order of the SDK's
// fields. Any other result it leaves to json.Marshal.
func marshalResult(res *mcp.CallToolResult) ([]byte, error) {
	sc, rawSC := res.StructuredContent.(json.RawMessage)
	if res.InputRequests != nil || res.RequestState != "" || res.NeedsInput() ||
		(res.StructuredContent != nil && (!rawSC || len(sc) == 0)) {
		return json.Marshal(res)
	}
	size := len(sc) + 32
	for _, c := range res.Content {
		rc, ok := c.(rawContent)
		if !ok {
			return json.Marshal(res)
		}
		size += len(rc.raw) + 1
	}
	out := make([]byte, 0, size)
	out = append(out, '{')
	if len(res.Meta) > 0 {
		meta, err := json.Marshal(res.Meta)
		if err != nil {
			return nil, err
		}
		out = append(append(append(out, `"_meta":`...), meta...), ',')
	}
	out = append(out, `"content":`...)
	var err error
	if res.Content == nil {
		out = append(out, "null"...)
	} else {
		out = append(out, '[')
		for i, c := range res.Content {
			if i > 0 {
				out = append(out, ',')
			}
			if out, err = appendMarshaled(out, c.(rawContent).raw); err != nil {
				return nil, err
			}
		}
		out = append(out, ']')
	}
	if sc != nil {
		if out, err = appendMarshaled(append(out, `,"structuredContent":`...), sc); err != nil {
			return nil, err
		}
	}
	if res.IsError {
		out = append(out, `,"isError":true`...)
	}
	return append(out, '}'), nil
}

// appendMarshaled appends raw as json.Marshal writes what a MarshalJSON method returned: checked,
// compacted, and with <, >, &, U+2028 and U+2029 escaped.
func appendMarshaled(out, raw []byte) ([]byte, error) {
	buf := bytes.NewBuffer(out)
	start := buf.Len()
	if err := json.Compact(buf, raw); err != nil {
		return nil, err
	}
	compacted := buf.Bytes()[start:]
	if !bytes.ContainsAny(compacted, "<>&\u2028\u2029") {
		return buf.Bytes(), nil
	}
	escaped := bytes.NewBuffer(make([]byte, 0, len(compacted)+16))
	json.HTMLEscape(escaped, compacted)
	return append(buf.Bytes()[:start], escaped.Bytes()...), nil
}

// sdkResult decodes a tools/call result as the SDK's client does.
func sdkResult(raw json.RawMessage) (*mcp.CallToolResult, error) {
	var res mcp.CallToolResult
	if err := json.Unmarshal(raw, &res); err != nil {
		return nil, err
	}
	return &res, nil
}

// callRaw sends the call through the backend's SessionRequester, and reports false when it cannot, so
// the caller sends it on the session.
func (g *Gateway) callRaw(ctx context.Context, sess *mcp.ClientSession, rt route, meta mcp.Meta, args json.RawMessage) (*mcp.CallToolResult, bool, error) {
	sr, ok := g.cfg.Backend.(SessionRequester)
	if !ok {
		return nil, false, nil
	}
	if len(args) == 0 {
		args = json.RawMessage("{}") // as the SDK's client sends no arguments
	}
	body, err := json.Marshal(rawCallParams{Meta: meta, Name: rt.name, Arguments: args})
	if err != nil {
		return nil, false, nil
	}
	raw, err := sr.SessionRequest(ctx, rt.inst.ID, sess, "tools/call", body)
	switch {
	case errors.Is(err, ErrNoSessionRequest):
		return nil, false, nil
	case err != nil:
		return nil, true, err
	}
	res, err := decodeRawResult(raw)
	return res, true, err
}

type inRoundsKey struct{}

// servedInRounds reports whether ctx is of a call served by serveStatelessCall, whose caller is no
// session of the SDK's: a client of the 2026-07-28 era, which takes what the instance asks as
// input_required results.
func servedInRounds(ctx context.Context) bool {
	v, _ := ctx.Value(inRoundsKey{}).(bool)
	return v
}

// serveStatelessCall answers a plain tools/call of the stateless 2026-07-28 era itself, and reports
// whether it did. The SDK would set up a server session for the one request, decode the params into
// its types and encode the result again, which costs more than the rest of the call; here the call is
// served as the SDK's server would serve it (serveCall, the same policies, logs, metrics and span), its
// result sent as JSON. Whatever needs more than that, or that the SDK would answer in its own words, it
// leaves to the SDK: a progress token or a log level (whose notifications need the response's stream), a
// client that takes URL elicitations (whose completion notices do too), a round that
// continues (requestState), a task, search mode, an unknown tool or one whose server is stopped or
// needs an account, an instance with a 2026-07-28 lane of its own, malformed headers or params.
func (g *Gateway) serveStatelessCall(w http.ResponseWriter, r *http.Request, p *principal, req *jsonrpc.Request) bool {
	if _, ok := g.cfg.Backend.(SessionRequester); !ok || !acceptsStreamable(r) {
		return false
	}
	var params struct {
		Meta           map[string]any  `json:"_meta"`
		Name           string          `json:"name"`
		Arguments      json.RawMessage `json:"arguments"`
		RequestState   string          `json:"requestState"`
		InputResponses json.RawMessage `json:"inputResponses"`
		Task           json.RawMessage `json:"task"`
	}
	if sdkjson.Unmarshal(req.Params, &params) != nil || params.RequestState != "" || params.InputResponses != nil ||
		params.Task != nil || params.Meta["progressToken"] != nil {
		return false
	}
	//lint:ignore SA1019 a client of the 2026-07-28 era may still ask for log messages, during the deprecation window
	if params.Meta[mcp.MetaKeyLogLevel] != nil {
		return false
	}
	caps, ok := strictMetaCapabilities(params.Meta)
	if !ok {
		return false // the SDK refuses the request in its words
	}
	if caps.Elicitation != nil && caps.Elicitation.URL != nil {
		return false // the notice that a URL elicitation is complete would need the response's stream
	}
	if v, _ := params.Meta[metaProtocolVersion].(string); v < "2026-07-28" || r.Header.Get("Mcp-Protocol-Version") != v {
		return false
	}
	if checkRoutingHeaders(r.Header, "tools/call", params.Name) != nil {
		return false
	}
	for k := range r.Header {
		if strings.HasPrefix(k, "Mcp-Param-") {
			return false // the SDK checks them against the tool's x-mcp-header annotations
		}
	}
	if mode, err := toolsModeOf(r, p); err != nil || mode != ToolsAll {
		return false
	}
	us, release := g.acquire(p.teamID, p.userID)
	defer release()
	us.syncMu.Lock()
	reg, ok := us.tools[params.Name]
	us.syncMu.Unlock()
	// A tool whose definition mentions x-mcp-header may annotate its parameters, whose headers the SDK
	// requires and checks; the fingerprint holds the definition as registered.
	if !ok || reg.rt.inst.ConnectAccountURL != "" || reg.rt.inst.EmergencyStop != "" || strings.Contains(reg.fp, "x-mcp-header") {
		return false
	}
	if lanes, ok := g.cfg.Backend.(ModernBackend); ok {
		if cs, err := lanes.ModernSession(r.Context(), reg.rt.inst.ID); err != nil || cs != nil {
			return false
		}
	}
	ctx := context.WithValue(withCallerCaps(r.Context(), caps), inRoundsKey{}, true)
	call := &mcp.CallToolRequest{
		Session: new(mcp.ServerSession), // the caller of this one request, as the SDK's would be
		Params:  &mcp.CallToolParamsRaw{Meta: params.Meta, Name: params.Name, Arguments: params.Arguments},
		Extra:   &mcp.RequestExtra{Header: r.Header},
	}
	res, err := g.serveCall(ctx, us, reg.rt, call)
	if res != nil {
		// As the SDK's server names itself in every result of the 2026-07-28 era, unless the result does.
		if _, ok := res.Meta[mcp.MetaKeyServerInfo]; !ok {
			if res.Meta == nil {
				res.Meta = mcp.Meta{}
			}
			res.Meta[mcp.MetaKeyServerInfo] = g.serverInfo()
		}
	}
	switch {
	case err != nil:
		writeRPCOutcome(w, req.ID, nil, err)
	case res.InputRequests != nil:
		writeRPCResult(w, req.ID, map[string]any{"_meta": res.Meta, "resultType": "input_required", "inputRequests": res.InputRequests, "requestState": res.RequestState})
	default:
		if res.Content == nil {
			res.Content = []mcp.Content{} // as the SDK's server sends it
		}
		writeRPCResult(w, req.ID, completeJSON(res))
	}
	return true
}

// completeJSON is a tool result as a 2026-07-28 answer, as completeResult makes it, without decoding
// the encoded result again: the SDK's encoding of a result without a resultType is an object without one.
func completeJSON(res *mcp.CallToolResult) any {
	b, err := marshalResult(res)
	if err != nil || len(b) < 2 || b[0] != '{' || res.NeedsInput() {
		return completeResult(res)
	}
	out := make([]byte, 0, len(b)+len(`"resultType":"complete",`))
	out = append(out, `{"resultType":"complete"`...)
	if string(b) != "{}" {
		out = append(out, ',')
	}
	return encodedJSON(append(out, b[1:]...))
}

// encodedJSON is a value encoded as json.Marshal encodes it (checked, compact, HTML-escaped), which
// writeRPCResult sends without encoding it again.
type encodedJSON []byte

func (e encodedJSON) MarshalJSON() ([]byte, error) { return e, nil }

// serverInfo is how the gateway's server names itself to clients.
func (g *Gateway) serverInfo() *mcp.Implementation {
	return &mcp.Implementation{Name: "orrery-satellite", Version: g.cfg.Version}
}

// strictMetaCapabilities returns the client capabilities of a 2026-07-28 request's _meta, and false
// when the SDK would refuse the request for them: capabilities missing or not of their type, or client
// info present and not of its type.
func strictMetaCapabilities(meta map[string]any) (*mcp.ClientCapabilities, bool) {
	raw, ok := meta[metaClientCapabilities].(map[string]any)
	if !ok {
		return nil, false
	}
	if info, present := meta[mcp.MetaKeyClientInfo]; present {
		b, err := json.Marshal(info)
		if err != nil || json.Unmarshal(b, new(*mcp.Implementation)) != nil {
			return nil, false
		}
	}
	b, err := json.Marshal(raw)
	if err != nil {
		return nil, false
	}
	caps := &mcp.ClientCapabilities{}
	if json.Unmarshal(b, caps) != nil {
		return nil, false
	}
	if _, ok := raw["roots"]; ok {
		//lint:ignore SA1019 roots are deprecated only from the 2026-07-28 protocol on; a session-era server still asks for them
		caps.RootsV2 = &mcp.RootCapabilities{ListChanged: caps.Roots.ListChanged}
	}
	return caps, true
}

// acceptsStreamable reports whether a POST is one the SDK's Streamable HTTP handler takes: a JSON body,
// and a client that accepts both JSON and an event stream.
func acceptsStreamable(r *http.Request) bool {
	if ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || ct != "application/json" {
		return false
	}
	var jsonOK, streamOK bool
	for _, h := range r.Header.Values("Accept") {
		for part := range strings.SplitSeq(h, ",") {
			mt, _, _ := strings.Cut(strings.TrimSpace(part), ";")
			switch strings.ToLower(strings.TrimSpace(mt)) {
			case "application/json", "application/*":
				jsonOK = true
			case "text/event-stream", "text/*":
				streamOK = true
			case "*/*":
				jsonOK, streamOK = true, true
			}
		}
	}
	return jsonOK && streamOK
}
