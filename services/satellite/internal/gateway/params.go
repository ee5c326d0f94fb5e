package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/orrery/orrery/services/satellite/internal/sdkjson"
)

// A request the SDK cannot dispatch gets the SDK's own text: a plain-text 400 for a method it does not know
// on a session-era endpoint, and for params of the wrong shape a -32602 error that quotes the body and
// names Go types ("unmarshaling ... into a *mcp.CallToolParamsRaw"). The endpoint checks a single request
// before the SDK sees it and answers as JSON-RPC 2.0 says: -32601 for an unknown method, -32602 with the
// field at fault for wrong params. Batches (of protocols before 2025-06-18) are left to the SDK.

// requestParams gives, for each request method the endpoint serves, a new value of the type the SDK
// decodes its params into, and whether params may be missing. initialize is left out: the SDK decodes it
// into a type of its own that it does not export.
var requestParams = map[string]struct {
	params   func() any
	optional bool
}{
	"ping":                     {func() any { return new(mcp.PingParams) }, true},
	"server/discover":          {func() any { return new(mcp.DiscoverParams) }, true},
	"tools/list":               {func() any { return new(mcp.ListToolsParams) }, true},
	"tools/call":               {func() any { return new(mcp.CallToolParamsRaw) }, false},
	"resources/list":           {func() any { return new(mcp.ListResourcesParams) }, true},
	"resources/templates/list": {func() any { return new(mcp.ListResourceTemplatesParams) }, true},
	"resources/read":           {func() any { return new(mcp.ReadResourceParams) }, false},
	"resources/subscribe":      {func() any { return new(mcp.SubscribeParams) }, false},
	"resources/unsubscribe":    {func() any { return new(mcp.UnsubscribeParams) }, false},
	"prompts/list":             {func() any { return new(mcp.ListPromptsParams) }, true},
	"prompts/get":              {func() any { return new(mcp.GetPromptParams) }, false},
	"completion/complete":      {func() any { return new(mcp.CompleteParams) }, false},
	"subscriptions/listen":     {func() any { return new(mcp.SubscriptionsListenParams) }, false},
	methodTasksGet:             {func() any { return new(taskParams) }, false},
	methodTasksResult:          {func() any { return new(taskParams) }, false},
	methodTasksCancel:          {func() any { return new(taskParams) }, false},
	methodTasksUpdate:          {func() any { return new(taskUpdateParams) }, false},
	methodTasksList:            {func() any { return new(listTasksParams) }, true},
	//lint:ignore SA1019 logging is deprecated only from the 2026-07-28 protocol on; the session era still has it
	"logging/setLevel": {func() any { return new(mcp.SetLoggingLevelParams) }, false},
}

// maxQuotedMethod bounds the client's method name quoted back in an error.
const maxQuotedMethod = 64

// maxQuotedError bounds a decoder's error quoted back to the client, which may quote the body.
const maxQuotedError = 256

// checkRequest returns the JSON-RPC error for a request the endpoint cannot serve as sent, or nil. Its
// messages name the protocol's fields and JSON types, never the body or a Go type.
func checkRequest(req *jsonrpc.Request) *jsonrpc.Error {
	if !req.IsCall() || req.Method == "initialize" {
		return nil
	}
	spec, known := requestParams[req.Method]
	if !known {
		return &jsonrpc.Error{Code: jsonrpc.CodeMethodNotFound,
			Message: fmt.Sprintf("method not found: %q", truncate(req.Method, maxQuotedMethod))}
	}
	raw := bytes.TrimSpace(req.Params)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		if spec.optional {
			return nil
		}
		return invalidParams(req.Method, "params are required")
	}
	if raw[0] != '{' {
		return invalidParams(req.Method, "params must be an object")
	}
	params := spec.params()
	if err := unmarshalParams(raw, params); err != nil {
		return invalidParams(req.Method, describeDecodeError(err))
	}
	if call, ok := params.(*mcp.CallToolParamsRaw); ok {
		if args := bytes.TrimSpace(call.Arguments); len(args) > 0 && args[0] != '{' && !bytes.Equal(args, []byte("null")) {
			return invalidParams(req.Method, `"arguments" must be an object`)
		}
	}
	return nil
}

// unmarshalParams decodes a request's params, a single JSON value, as the SDK does (sdkUnmarshal).
func unmarshalParams(raw []byte, v any) error {
	return sdkjson.Unmarshal(raw, v)
}

func invalidParams(method, why string) *jsonrpc.Error {
	return &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: fmt.Sprintf("invalid params of %s: %s", method, why)}
}

// describeDecodeError says which field of the params has the wrong JSON type, without the decoder's
// wording, which quotes the input and names Go types.
func describeDecodeError(err error) string {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) && typeErr.Field != "" {
		return fmt.Sprintf("%q must be %s", jsonPath(typeErr.Field), jsonKind(typeErr.Type))
	}
	if errors.As(err, &typeErr) {
		return "a field has the wrong type: want " + jsonKind(typeErr.Type)
	}
	return "params do not have the shape the method takes"
}

// jsonPath is a decoder's field path as the client wrote it: JSON names joined by dots, without the Go
// struct names some decoders put first.
func jsonPath(field string) string {
	parts := strings.Split(field, ".")
	for len(parts) > 1 && parts[0] != "" && parts[0][0] >= 'A' && parts[0][0] <= 'Z' {
		parts = parts[1:]
	}
	return truncate(strings.Join(parts, "."), 128)
}

// jsonKind names the JSON type that decodes into t, with an article.
func jsonKind(t reflect.Type) string {
	if t == nil {
		return "of another type"
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint8,
		reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return "of another type"
}

// On legacy SSE the answer to a POST goes over the session's stream, where the endpoint cannot answer in
// place of the SDK; the SDK's own -32602 text is rewritten there instead, in the same words checkRequest
// uses.
var (
	// sdkInvalidParams is how the SDK words params it could not decode.
	sdkInvalidParams = regexp.MustCompile(`^handling '([a-z/A-Z_]{1,64})': invalid params: `)
	// sdkFieldType names the field the decoder stopped at and the Go type it wanted.
	sdkFieldType = regexp.MustCompile(`Go struct field [A-Za-z0-9_.]*\.([A-Za-z0-9_]+) of type (.+)$`)
)

// sseEventPrefix starts every event of the SDK's that carries a JSON-RPC message.
var sseEventPrefix = []byte("event: message\ndata: ")

// cleanStreamWriter is a legacy SSE stream whose events of the SDK's -32602 errors are rewritten. The SDK
// writes each event with one Write.
type cleanStreamWriter struct{ http.ResponseWriter }

func (w cleanStreamWriter) Write(p []byte) (int, error) {
	if clean, ok := cleanInvalidParams(p); ok {
		if _, err := w.ResponseWriter.Write(clean); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return w.ResponseWriter.Write(p)
}

// Flush passes flushes on, which the SDK needs for every event.
func (w cleanStreamWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection.
func (w cleanStreamWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// cleanInvalidParams returns event rewritten when it is an SSE event of a -32602 error in the SDK's words.
func cleanInvalidParams(event []byte) ([]byte, bool) {
	data, ok := bytes.CutPrefix(event, sseEventPrefix)
	if !ok || !bytes.HasSuffix(data, []byte("\n\n")) || !bytes.Contains(data, []byte(`"error"`)) {
		return nil, false
	}
	var msg struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      json.RawMessage `json:"id"`
		Error   *jsonrpc.Error  `json:"error"`
	}
	if json.Unmarshal(data, &msg) != nil || msg.Error == nil || msg.Error.Code != jsonrpc.CodeInvalidParams {
		return nil, false
	}
	m := sdkInvalidParams.FindStringSubmatch(msg.Error.Message)
	if m == nil {
		return nil, false
	}
	why := "params do not have the shape the method takes"
	if f := sdkFieldType.FindStringSubmatch(msg.Error.Message); f != nil {
		why = fmt.Sprintf("%q must be %s", f[1], goTypeKind(f[2]))
	} else if strings.Contains(msg.Error.Message, "into Go value of type") {
		why = "params must be an object"
	}
	msg.Error = invalidParams(m[1], why)
	out, err := json.Marshal(msg)
	if err != nil {
		return nil, false
	}
	return slices.Concat(sseEventPrefix, out, []byte("\n\n")), true
}

// goTypeKind names the JSON type that decodes into a Go type as the decoder spells it, with an article.
func goTypeKind(goType string) string {
	switch {
	case goType == "string":
		return "a string"
	case goType == "bool":
		return "a boolean"
	case strings.HasPrefix(goType, "map["), strings.HasPrefix(goType, "mcp."), strings.HasPrefix(goType, "struct"):
		return "an object"
	case strings.HasPrefix(goType, "[]"):
		return "an array"
	case strings.HasPrefix(goType, "int"), strings.HasPrefix(goType, "uint"), strings.HasPrefix(goType, "float"):
		return "a number"
	}
	return "of another type"
}
