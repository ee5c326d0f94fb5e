package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"google.golang.org/protobuf/encoding/protojson"
)

// TestDecodeRawResult holds a result passed on as the server wrote it to what the SDK's client and
// server would have made of it: the caller gets the same JSON, and the gateway sees the same outcome.
func TestDecodeRawResult(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{
		`{"content":[{"type":"text","text":"Echo: hi"}]}`,
		`{"content":[]}`,
		`{}`,
		`{"content":[{"type":"text","text":"a","annotations":{"audience":["user"],"priority":0.5},"_meta":{"k":1}},` +
			`{"type":"image","data":"aGk=","mimeType":"image/png"},` +
			`{"type":"resource","resource":{"uri":"file:///x","mimeType":"text/plain","text":"x"}},` +
			`{"type":"resource_link","uri":"file:///y","name":"y"}],` +
			`"structuredContent":{"a":[1,2,{"b":null}]},"_meta":{"trace":"t"},"isError":true}`,
		`{"content":[{"type":"text","text":"s"}],"structuredContent":[1,"two"]}`,
		`{"content":[{"type":"text","text":"s"}],"structuredContent":null}`,
		`{"content":[{"type":"text","text":"s"}],"resultType":"complete"}`,
	} {
		got, err := decodeRawResult(json.RawMessage(raw))
		if err != nil {
			t.Errorf("%s: %v", raw, err)
			continue
		}
		var sdk mcp.CallToolResult
		if err := json.Unmarshal([]byte(raw), &sdk); err != nil {
			t.Fatalf("the SDK cannot read %s: %v", raw, err)
		}
		if got.IsError != sdk.IsError {
			t.Errorf("%s: IsError %v, the SDK's %v", raw, got.IsError, sdk.IsError)
		}
		if got.IsError && errorText(got) != errorText(&sdk) {
			t.Errorf("%s: error text %q, the SDK's %q", raw, errorText(got), errorText(&sdk))
		}
		if a, b := sentAs(t, got), sentAs(t, &sdk); !reflect.DeepEqual(a, b) {
			t.Errorf("%s:\nsent as     %v\nthe SDK's   %v", raw, a, b)
		}
	}

	// A result that is not complete takes the SDK's decoding, which keeps what the gateway must see.
	in, err := decodeRawResult(json.RawMessage(`{"resultType":"input_required","inputRequests":{"a":{"method":"roots/list","params":{}}},"requestState":"s"}`))
	if err != nil || !in.NeedsInput() || in.RequestState != "s" || len(in.InputRequests) != 1 {
		t.Errorf("input_required result = %+v, %v", in, err)
	}
	// What the SDK's client refuses is refused.
	for _, bad := range []string{`{"content":"text"}`, `{"content":[{"type":"video"}]}`, `{"content":[1]}`, `[]`, `{"isError":"yes"}`} {
		if _, err := decodeRawResult(json.RawMessage(bad)); err == nil {
			if json.Unmarshal([]byte(bad), new(mcp.CallToolResult)) != nil {
				t.Errorf("%s decoded, and the SDK refuses it", bad)
			}
		}
	}
}

// sentAs is a result as the SDK's server sends it, decoded for comparison.
func sentAs(t *testing.T, res *mcp.CallToolResult) any {
	t.Helper()
	if res.Content == nil {
		c := *res
		c.Content = []mcp.Content{} // as the SDK's server sends a result without content
		res = &c
	}
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestCallPaths holds a call carried beside the SDK's client (its result passed on as the server wrote
// it and, in the stateless era, served without the SDK's server) to the same call through the SDK's
// client and server: the same answers and the same request logs, in every era.
func TestCallPaths(t *testing.T) {
	t.Parallel()
	type outcome struct {
		Results []any
		Logs    []any
	}
	run := func(t *testing.T, sdkOnly bool, o clientOptions) (outcome, int64, int64) {
		b := setup(t, setupOptions{sdkOnly: sdkOnly})
		cs := b.connect(t, "ann", "acme", o)
		var out outcome
		for _, c := range []struct {
			name string
			args any
		}{
			{"alpha__echo", json.RawMessage(`{"z":1.50,"a":{"n":[true,null,"é"]},"m":"x"}`)},
			{"alpha__fail", map[string]any{}},
			{"beta__echo", map[string]any{"k": "v"}},
			{"alpha__no_such_tool", map[string]any{}},
		} {
			res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: c.name, Arguments: c.args})
			if err != nil {
				out.Results = append(out.Results, "error: "+err.Error())
				continue
			}
			out.Results = append(out.Results, sentAs(t, res))
		}
		for _, ev := range b.events.requestLogs() {
			rl := ev.GetRequestLog()
			rl.Duration, rl.TraceId = nil, "" // they differ from call to call
			j, err := protojson.Marshal(ev)
			if err != nil {
				t.Fatal(err)
			}
			var v any
			_ = json.Unmarshal(j, &v)
			out.Logs = append(out.Logs, v)
		}
		return out, b.backend.rawCalls.Load(), b.gw.sessionCallsServed.Load()
	}
	for _, era := range eras {
		t.Run(era.name, func(t *testing.T) {
			t.Parallel()
			sdk, n, served := run(t, true, era.opts)
			if n != 0 || served != 0 {
				t.Fatalf("%d calls beside the SDK's client with a backend that cannot carry them, %d before its server", n, served)
			}
			beside, n, served := run(t, false, era.opts)
			if n != 3 {
				t.Errorf("%d calls beside the SDK's client, want the 3 of listed tools", n)
			}
			// The SDK's client declares roots and holds its GET stream, so its session's calls are served
			// before the SDK's server.
			if want := map[bool]int64{true: 3}[era.name == "session era"]; served != want {
				t.Errorf("%d calls served before the SDK's server, want %d", served, want)
			}
			if !reflect.DeepEqual(sdk, beside) {
				a, _ := json.MarshalIndent(sdk, "", " ")
				b, _ := json.MarshalIndent(beside, "", " ")
				t.Errorf("through the SDK:\n%s\nbeside it:\n%s", a, b)
			}
		})
	}
}

// TestStatelessCallServedBeforeSDK: a plain tools/call of the 2026-07-28 era is answered by the gateway
// in JSON, while one with a progress token, whose notifications need a stream, is left to the SDK.
func TestStatelessCallServedBeforeSDK(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{})
	h := map[string]string{"Mcp-Protocol-Version": statelessVersion, "Mcp-Method": "tools/call", "Mcp-Name": "alpha__echo"}
	call := func(meta string) *http.Response {
		return b.do(t, http.MethodPost, "/teams/acme/mcp", "ann", `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"alpha__echo","arguments":{"q":1},`+
			`"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}`+meta+`}}}`, h)
	}
	resp := call("")
	var body struct {
		ID     int `json:"id"`
		Result struct {
			ResultType string `json:"resultType"`
			Content    []struct{ Type, Text string }
		} `json:"result"`
	}
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || ct != "application/json" {
		t.Fatalf("plain call: status %d, Content-Type %q; want 200 and JSON from the gateway", resp.StatusCode, ct)
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.ID != 7 || body.Result.ResultType != "complete" ||
		len(body.Result.Content) != 1 || body.Result.Content[0].Text != `{"q":1}` {
		t.Errorf("plain call answered %+v (%v)", body, err)
	}
	if n := len(b.events.requestLogs()); n != 1 {
		t.Errorf("%d request logs, want 1", n)
	}
	if ct := call(`,"progressToken":"p"`).Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("call with a progress token answered as %q, want the SDK's event stream", ct)
	}
}

// TestCompleteJSON holds completeJSON to completeResult.
func TestCompleteJSON(t *testing.T) {
	t.Parallel()
	for _, res := range []*mcp.CallToolResult{
		{},
		{Content: []mcp.Content{}},
		{Content: []mcp.Content{&mcp.TextContent{Text: "a"}}, IsError: true, Meta: mcp.Meta{"k": 1.5}},
		{Content: []mcp.Content{rawContent{raw: json.RawMessage(`{"type":"text","text":"b"}`)}}, StructuredContent: json.RawMessage(`[1]`)},
	} {
		var got, want any
		if err := json.Unmarshal(mustJSON(completeJSON(res)), &got); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(mustJSON(completeResult(res)), &want); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("completeJSON = %v, want %v", got, want)
		}
	}
}

// TestStatelessCallLeftToSDK sends stateless tools/call requests the SDK refuses or needs its stream for:
// the endpoint answers each as it answers without the fast path, the SDK in its own words.
func TestStatelessCallLeftToSDK(t *testing.T) {
	t.Parallel()
	fast, sdk := setup(t, setupOptions{}), setup(t, setupOptions{sdkOnly: true})
	const caps = `"io.modelcontextprotocol/clientCapabilities":{}`
	for _, c := range []struct {
		name, meta string
		header     map[string]string
	}{
		{"no client capabilities", ``, nil},
		{"capabilities of the wrong type", `,"io.modelcontextprotocol/clientCapabilities":[]`, nil},
		{"client info of the wrong type", `,` + caps + `,"io.modelcontextprotocol/clientInfo":{"name":7}`, nil},
		{"a parameter header", `,` + caps, map[string]string{"Mcp-Param-Q": "1"}},
		{"no method header", `,` + caps, map[string]string{"Mcp-Method": ""}},
		{"a name header of another tool", `,` + caps, map[string]string{"Mcp-Name": "beta__echo"}},
		{"a version header of another era", `,` + caps, map[string]string{"Mcp-Protocol-Version": sessionVersion}},
		{"an unknown tool", `,` + caps, map[string]string{"Mcp-Name": "alpha__nope"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			name := "alpha__echo"
			if c.header["Mcp-Name"] == "alpha__nope" {
				name = "alpha__nope"
			}
			h := map[string]string{"Mcp-Protocol-Version": statelessVersion, "Mcp-Method": "tools/call", "Mcp-Name": name}
			for k, v := range c.header {
				h[k] = v
			}
			body := `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"` + name + `","arguments":{"q":1},` +
				`"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"` + c.meta + `}}}`
			answer := func(b *bundle) string {
				resp := b.do(t, http.MethodPost, "/teams/acme/mcp", "ann", body, h)
				got, _ := io.ReadAll(resp.Body)
				return fmt.Sprintf("%d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), got)
			}
			if got, want := answer(fast), answer(sdk); got != want {
				t.Errorf("answered\n%s\nwithout the fast path\n%s", got, want)
			}
		})
	}
}

// TestCancellationBesideSDK cancels calls without a progress token, which go beside the SDK's client and,
// in the stateless era, are served before the SDK's server: the downstream call is cancelled.
func TestCancellationBesideSDK(t *testing.T) {
	t.Parallel()
	for _, era := range eras[:2] {
		t.Run(era.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, setupOptions{})
			cs := b.connect(t, "ann", "acme", era.opts)
			ctx, cancel := context.WithCancel(t.Context())
			errc := make(chan error, 1)
			go func() {
				_, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "alpha__slow", Arguments: map[string]any{}})
				errc <- err
			}()
			// Cancelled only once the tool runs: cancelled earlier, the call would never reach it.
			select {
			case <-b.alpha.started:
			case <-time.After(5 * time.Second):
				t.Fatal("the call never reached the tool")
			}
			if b.backend.rawCalls.Load() != 1 {
				t.Fatal("the call did not go beside the SDK's client")
			}
			cancel()
			select {
			case <-b.alpha.cancelled:
			case <-time.After(5 * time.Second):
				t.Fatal("downstream call not cancelled")
			}
			if err := <-errc; !errors.Is(err, context.Canceled) {
				t.Errorf("call error = %v", err)
			}
			if n := b.gw.sessionCallsServed.Load(); era.name == "session era" && n != 1 {
				t.Errorf("%d calls served before the SDK's server, want the cancelled one", n)
			}
		})
	}
}

// TestMarshalResult holds marshalResult to json.Marshal, byte for byte, for results as decodeRawResult
// makes them from what servers write (spacing, characters an HTML-escaping encoder changes, metadata,
// structured content of any JSON type, errors) and for results it leaves to json.Marshal.
func TestMarshalResult(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{
		`{"content":[{"type":"text","text":"Echo: hi"}]}`,
		"{ \"content\" : [ {\"type\": \"text\",\n \"text\": \"a <b> & \u2028c\u2029\"} , {\"type\":\"image\",\"data\":\"AA==\",\"mimeType\":\"image/png\"} ] }",
		`{"content":[],"structuredContent":{"b":[1, 2],"a":"<x>"},"isError":true,"_meta":{"z":1,"a":"&"}}`,
		`{"content":[{"type":"text","text":"x"}],"structuredContent":[1,"two"]}`,
		`{"content":[{"type":"text","text":"x"}],"structuredContent":7}`,
		`{"structuredContent":"only"}`,
		`{"content":[{"type":"text","text":"x"}],"isError":false,"_meta":{}}`,
	} {
		res, err := decodeRawResult(json.RawMessage(raw))
		if err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		got, err := marshalResult(res)
		if err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		if want, _ := json.Marshal(res); string(got) != string(want) {
			t.Errorf("from %s\nmarshalResult %s\njson.Marshal  %s", raw, got, want)
		}
	}
	for _, res := range []*mcp.CallToolResult{
		{Content: []mcp.Content{&mcp.TextContent{Text: "<typed>"}}},
		{Content: []mcp.Content{rawContent{raw: json.RawMessage(`{"type":"text","text":"x"}`)}}, StructuredContent: map[string]any{"k": "<v>"}},
		{RequestState: "s"},
	} {
		got, err := marshalResult(res)
		if want, _ := json.Marshal(res); err != nil || string(got) != string(want) {
			t.Errorf("marshalResult %s (%v), json.Marshal %s", got, err, want)
		}
	}
	if _, err := marshalResult(&mcp.CallToolResult{Content: []mcp.Content{rawContent{raw: json.RawMessage(`{"type":`)}}}); err == nil {
		t.Error("content that is not JSON was encoded")
	}
}

// TestWriteRPCResultOfEncodedJSON holds the answer writeRPCResult builds around an encoded result to
// the one it encodes whole.
func TestWriteRPCResultOfEncodedJSON(t *testing.T) {
	t.Parallel()
	res := &mcp.CallToolResult{Content: []mcp.Content{rawContent{raw: json.RawMessage(`{"type":"text","text":"<&>"}`)}}}
	for _, raw := range []any{float64(7), "id-<&>"} {
		id, err := jsonrpc.MakeID(raw)
		if err != nil {
			t.Fatal(err)
		}
		enc, ok := completeJSON(res).(encodedJSON)
		if !ok {
			t.Fatal("completeJSON did not encode the result")
		}
		fast, whole := httptest.NewRecorder(), httptest.NewRecorder()
		writeRPCResult(fast, id, enc)
		writeRPCResult(whole, id, json.RawMessage(enc))
		if fast.Body.String() != whole.Body.String() || fast.Header().Get("Content-Type") != whole.Header().Get("Content-Type") {
			t.Errorf("id %v: answered\n%s\nencoded whole\n%s", raw, fast.Body, whole.Body)
		}
	}
}
