package gateway

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// rpcAnswer reads a JSON-RPC response from a plain JSON body or the first event of an SSE body.
func rpcAnswer(t *testing.T, resp *http.Response) (result json.RawMessage, code int64, message string) {
	t.Helper()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	text := string(body)
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		for line := range strings.Lines(text) {
			if data, ok := strings.CutPrefix(line, "data: "); ok {
				text = data
				break
			}
		}
	}
	var msg struct {
		Result json.RawMessage `json:"result"`
		Error  *struct {
			Code    int64  `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal([]byte(text), &msg); err != nil {
		t.Fatalf("status %d: not a JSON-RPC answer: %q", resp.StatusCode, body)
	}
	if msg.Error != nil {
		return nil, msg.Error.Code, msg.Error.Message
	}
	return msg.Result, 0, ""
}

// TestJSONRPCErrors sends raw requests a careless or hostile client might: methods the endpoint does not
// have and params of the wrong shape. Each gets the JSON-RPC error the specification names, with a message
// about the protocol's fields, and nothing of the satellite's insides: no Go type, no decoder wording,
// no echo of the body.
func TestJSONRPCErrors(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{})
	sid := b.openSession(t, "ann")
	session := map[string]string{"Mcp-Session-Id": sid, "Mcp-Protocol-Version": sessionVersion}
	stateless := map[string]string{"Mcp-Protocol-Version": statelessVersion, "Mcp-Method": "tools/call"}
	const statelessMeta = `"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}`
	for _, tc := range []struct {
		name, body string
		header     map[string]string
		status     int
		code       int64
		message    string // a part of the message
	}{
		{"unknown method", `{"jsonrpc":"2.0","id":2,"method":"tools/destroy","params":{}}`, session,
			http.StatusOK, -32601, `method not found: "tools/destroy"`},
		{"unknown method without params", `{"jsonrpc":"2.0","id":"x","method":"secrets/list"}`, session,
			http.StatusOK, -32601, `method not found`},
		{"unknown method, stateless", `{"jsonrpc":"2.0","id":2,"method":"tools/destroy","params":{` + statelessMeta + `}}`,
			stateless, http.StatusNotFound, -32601, `method not found: "tools/destroy"`},
		{"params an array", `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":[1,2]}`, session,
			http.StatusOK, -32602, "params must be an object"},
		{"params missing", `{"jsonrpc":"2.0","id":3,"method":"tools/call"}`, session,
			http.StatusOK, -32602, "params are required"},
		{"name a number", `{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":5}}`, session,
			http.StatusOK, -32602, `"name" must be a string`},
		{"name a number, stateless", `{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":5,` + statelessMeta + `}}`,
			stateless, http.StatusOK, -32602, `"name" must be a string`},
		{"arguments a string", `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"alpha__echo","arguments":"rm -rf"}}`,
			session, http.StatusOK, -32602, `"arguments" must be an object`},
		{"arguments an array", `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"alpha__echo","arguments":[1]}}`,
			session, http.StatusOK, -32602, `"arguments" must be an object`},
		{"_meta a string", `{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"alpha__echo","_meta":"x"}}`,
			session, http.StatusOK, -32602, `"_meta" must be an object`},
		{"uri a number", `{"jsonrpc":"2.0","id":7,"method":"resources/read","params":{"uri":7}}`, session,
			http.StatusOK, -32602, `"uri" must be a string`},
		{"prompt arguments an array", `{"jsonrpc":"2.0","id":8,"method":"prompts/get","params":{"name":"alpha__greet","arguments":[1]}}`,
			session, http.StatusOK, -32602, `"arguments" must be an object`},
		{"cursor a number", `{"jsonrpc":"2.0","id":9,"method":"tools/list","params":{"cursor":5}}`, session,
			http.StatusOK, -32602, `"cursor" must be a string`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := b.do(t, http.MethodPost, "/teams/acme/mcp", "ann", tc.body, tc.header)
			if resp.StatusCode != tc.status {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.status)
			}
			_, code, msg := rpcAnswer(t, resp)
			if code != tc.code || !strings.Contains(msg, tc.message) {
				t.Errorf("error %d %q, want %d containing %q", code, msg, tc.code, tc.message)
			}
			for _, leak := range []string{"mcp.", "Go ", "unmarshal", "*", "rm -rf", "[1", "interface"} {
				if strings.Contains(msg, leak) {
					t.Errorf("message %q shows %q", msg, leak)
				}
			}
		})
	}

	// Well-formed requests still reach the tools, arguments absent, null or an object.
	for _, params := range []string{`{"name":"alpha__echo"}`, `{"name":"alpha__echo","arguments":null}`, `{"name":"alpha__echo","arguments":{"a":1}}`} {
		resp := b.do(t, http.MethodPost, "/teams/acme/mcp", "ann", `{"jsonrpc":"2.0","id":10,"method":"tools/call","params":`+params+`}`, session)
		if result, code, msg := rpcAnswer(t, resp); code != 0 || len(result) == 0 {
			t.Errorf("%s: error %d %q, want a result", params, code, msg)
		}
	}
}

// TestRequestParamsCoverMethods keeps the two tables of methods in step: every request method with a
// scope has its params' type, and only those.
func TestRequestParamsCoverMethods(t *testing.T) {
	t.Parallel()
	for method := range methodScopes {
		_, checked := requestParams[method]
		request := !strings.HasPrefix(method, "notifications/") && method != "initialize"
		if checked != request {
			t.Errorf("%s: params checked %t, want %t", method, checked, request)
		}
	}
	for method := range requestParams {
		if _, ok := methodScopes[method]; !ok {
			t.Errorf("%s has params but no scope", method)
		}
	}
}

// TestJSONRPCErrorsOnLegacySSE sends params of the wrong shape over legacy SSE, where answers come over
// the stream: the -32602 errors there name the field, not Go types, and an unknown method is -32601.
func TestJSONRPCErrorsOnLegacySSE(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{})
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, b.url+"/teams/acme/sse", nil)
	req.Header.Set("Authorization", "Bearer ann")
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	answers := make(chan string, 16)
	endpoint := make(chan string, 1)
	go func() {
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				if strings.HasPrefix(data, "{") {
					answers <- data
				} else {
					endpoint <- strings.TrimSpace(data)
				}
			}
		}
		close(answers)
	}()
	messages := <-endpoint
	post := func(body string) {
		t.Helper()
		if r := b.do(t, http.MethodPost, messages, "ann", body, nil); r.StatusCode != http.StatusAccepted {
			t.Fatalf("POST %s: status %d", body, r.StatusCode)
		}
	}
	post(strings.Replace(initializeBody, sessionVersion, "2024-11-05", 1))
	<-answers
	post(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	// A method the SDK does not know is refused at once, as the SDK refuses it, but in JSON-RPC.
	refused := b.do(t, http.MethodPost, messages, "ann", `{"jsonrpc":"2.0","id":5,"method":"tools/destroy","params":{}}`, nil)
	if _, code, msg := rpcAnswer(t, refused); refused.StatusCode != http.StatusBadRequest || code != -32601 || !strings.Contains(msg, "method not found") {
		t.Errorf("unknown method over legacy SSE: status %d, error %d %q; want 400 with -32601", refused.StatusCode, code, msg)
	}
	for _, tc := range []struct {
		body    string
		code    int64
		message string
	}{
		{`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":5}}`, -32602, `invalid params of tools/call: "name" must be a string`},
		{`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":[1,2]}`, -32602, `invalid params of tools/call: params must be an object`},
		{`{"jsonrpc":"2.0","id":4,"method":"prompts/get","params":{"name":"alpha__greet","arguments":[1]}}`, -32602, `invalid params of prompts/get: "arguments" must be an object`},
		{`{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"alpha__echo","_meta":"x"}}`, -32602, `invalid params of tools/call: "_meta" must be an object`},
	} {
		post(tc.body)
		var answer struct {
			Error struct {
				Code    int64  `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		data := <-answers
		if err := json.Unmarshal([]byte(data), &answer); err != nil {
			t.Fatalf("%s: answer %q: %v", tc.body, data, err)
		}
		if answer.Error.Code != tc.code || !strings.Contains(answer.Error.Message, tc.message) {
			t.Errorf("%s: answered %q, want %d with %q", tc.body, data, tc.code, tc.message)
		}
		for _, leak := range []string{"mcp.", "Go ", "unmarshal", "[1", "interface"} {
			if strings.Contains(answer.Error.Message, leak) {
				t.Errorf("%s: message %q shows %q", tc.body, answer.Error.Message, leak)
			}
		}
	}
}
