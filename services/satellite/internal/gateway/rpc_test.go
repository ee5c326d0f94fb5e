package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// callEcho is a tools/call of ann's alpha__echo; params goes in as is, so a case can add _meta.
func callEcho(extra string) string {
	return `"params":{"name":"alpha__echo","arguments":{"message":"pwned"}` + extra + `}`
}

// statelessMeta is the _meta a request of the 2026-07-28 era carries.
const statelessMeta = `,"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}`

// scopeBypasses are bodies that read as something harmless to a decoder other than the SDK's while the
// SDK dispatches a tools/call: mixed-case duplicate keys, bytes after the message, batches, escapes.
var scopeBypasses = []struct{ name, body string }{
	{"mixed-case key after", `{"jsonrpc":"2.0","id":1,"method":"tools/call","Method":"ping",` + callEcho("") + `}`},
	{"mixed-case key before", `{"jsonrpc":"2.0","id":1,"Method":"ping","method":"tools/call",` + callEcho("") + `}`},
	{"upper-case key", `{"jsonrpc":"2.0","id":1,"METHOD":"tools/list","method":"tools/call",` + callEcho("") + `}`},
	{"stray byte", `{"jsonrpc":"2.0","id":1,"method":"tools/call",` + callEcho("") + `}x`},
	{"stray brace", `{"jsonrpc":"2.0","id":1,"method":"tools/call",` + callEcho("") + `}}`},
	{"second message", `{"jsonrpc":"2.0","id":1,"method":"tools/call",` + callEcho("") + `} {"jsonrpc":"2.0","id":2,"method":"ping"}`},
	{"batch", `[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":2,"method":"tools/call",` + callEcho("") + `}]`},
	{"batch with mixed case", `[{"jsonrpc":"2.0","id":1,"Method":"ping","method":"tools/call",` + callEcho("") + `}]`},
	{"batch and a stray byte", `[{"jsonrpc":"2.0","id":1,"method":"tools/call",` + callEcho("") + `}]x`},
	{"escaped key", `{"jsonrpc":"2.0","id":1,"\u006dethod":"tools/call",` + callEcho("") + `}`},
	{"escaped value", `{"jsonrpc":"2.0","id":1,"method":"tools\/call",` + callEcho("") + `}`},
	{"plain call", `{"jsonrpc":"2.0","id":1,"method":"tools/call",` + callEcho("") + `}`},
}

// seeds are bodies for FuzzScopeDecision beyond the bypasses: ordinary traffic and malformed input.
var seeds = []string{
	initializeBody,
	`{"jsonrpc":"2.0","method":"notifications/initialized"}`,
	`{"jsonrpc":"2.0","id":"a","method":"tools/list"}`,
	statelessToolsList,
	`{"jsonrpc":"2.0","id":1,"method":"tools/call",` + callEcho(statelessMeta) + `}`,
	`{"jsonrpc":"2.0","id":1,"result":{}}`,
	`{"jsonrpc":"2.0","id":1,"method":"tools/call","method":"ping"}`,
	`{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/call"}`,
	`{"jsonrpc":"2.0","id":1,"method":""}`,
	`{"jsonrpc":"2.0","id":null,"method":"tools/call"}`,
	`{"jsonrpc":"1.0","id":1,"method":"tools/call"}`,
	`[]`, `[null]`, `null`, ` null `, `nul`, ``, ` `, `{}`, `"tools/call"`,
	// Whitespace and what only looks like it, before a batch.
	" \r\n\t[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\"," + callEcho("") + "}]",
	"\ufeff[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\"," + callEcho("") + "}]",
	"\v[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\"," + callEcho("") + "}]",
	strings.Repeat("[", 1001) + strings.Repeat("]", 1001),
	`[` + strings.Repeat("[", 999) + `{"jsonrpc":"2.0","id":1,"method":"tools/call"}` + strings.Repeat("]", 1000),
}

// methodsOf lists the method of each message, "" for a response.
func methodsOf(msgs []jsonrpc.Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		if req, ok := m.(*jsonrpc.Request); ok {
			out[i] = req.Method
		}
	}
	return out
}

func post(body []byte) *http.Request {
	req := httptest.NewRequest(http.MethodPost, "http://gateway.test/", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	return req
}

// sdkDispatch returns the methods ("" for a response) of the messages the SDK's own transport takes from
// a POST of body and hands its server to dispatch, in order: the Streamable HTTP transport when batches
// is set, the legacy SSE transport otherwise. A body the transport refuses dispatches nothing.
func sdkDispatch(t testing.TB, body []byte, batches bool) []string {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if !batches {
		tr := &mcp.SSEServerTransport{Endpoint: "/sse?sessionid=fuzz", Response: httptest.NewRecorder()}
		conn, err := tr.Connect(ctx)
		if err != nil {
			t.Fatal(err)
		}
		rec := httptest.NewRecorder()
		tr.ServeHTTP(rec, post(body))
		if rec.Code != http.StatusAccepted {
			return nil
		}
		// The transport queues what it accepted before it answers.
		msg, err := conn.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return methodsOf([]jsonrpc.Message{msg})
	}

	tr := &mcp.StreamableServerTransport{Stateless: true}
	conn, err := tr.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// After the body, a notification only this call knows: once it is read, everything the body
	// brought was read before it.
	sentinel := "sentinel-" + rand.Text()
	var got []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			msg, err := conn.Read(ctx)
			if err != nil {
				return
			}
			if req, ok := msg.(*jsonrpc.Request); ok {
				if req.Method == "notifications/progress" && bytes.Contains(req.Params, []byte(sentinel)) {
					return
				}
				if req.IsCall() {
					// Answered, so that the POST that carries it ends.
					_ = conn.Write(ctx, &jsonrpc.Response{ID: req.ID, Result: json.RawMessage(`{}`)})
				}
			}
			got = append(got, methodsOf([]jsonrpc.Message{msg})...)
		}
	}()
	tr.ServeHTTP(httptest.NewRecorder(), post(body))
	rec := httptest.NewRecorder()
	tr.ServeHTTP(rec, post([]byte(`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"`+sentinel+`","progress":1}}`)))
	if rec.Code != http.StatusAccepted {
		t.Fatalf("sentinel: status %d %s", rec.Code, rec.Body)
	}
	<-done
	return got
}

// FuzzScopeDecision feeds bodies to the gateway's decoder and to the SDK's transports: whatever the SDK
// dispatches, the gateway saw the same methods in the same order, so its scope decision is about what
// will run; and a body the gateway cannot decode is one the SDK dispatches nothing of.
func FuzzScopeDecision(f *testing.F) {
	for _, c := range scopeBypasses {
		f.Add([]byte(c.body))
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	readOnly := &principal{scopes: []string{ScopeRead}}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, batches := range []bool{true, false} {
			msgs, err := decodeBody(body, batches)
			sdk := sdkDispatch(t, body, batches)
			if err != nil {
				if len(sdk) > 0 {
					t.Fatalf("batches=%t: the gateway refuses %q (%v), the SDK dispatches %q", batches, body, err, sdk)
				}
				continue
			}
			ours := methodsOf(msgs)
			if len(sdk) > 0 && !slices.Equal(ours, sdk) {
				t.Fatalf("batches=%t: the gateway sees %q in %q, the SDK dispatches %q", batches, ours, body, sdk)
			}
			if slices.Contains(sdk, "tools/call") && !slices.Contains(missingScopes(readOnly, summarize(msgs).methods), ScopeExecute) {
				t.Fatalf("batches=%t: a read-only token may send %q, which calls a tool", batches, body)
			}
		}
	})
}

// TestScopeBypassesRefused sends a token with only mcp:read, on every transport, the bodies that got tool
// calls past the gateway's scope check: each is refused and no tool runs. The same calls with a token
// that may call tools go through, so the refusals are the check's doing.
func TestScopeBypassesRefused(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{})
	transports := []struct {
		name string
		// open returns where to POST and the headers to send, for token.
		open func(t *testing.T, token string) (path string, header map[string]string)
		// meta goes into the calls' params.
		meta string
	}{
		{"session era", func(t *testing.T, token string) (string, map[string]string) {
			return "/teams/acme/mcp", map[string]string{"Mcp-Session-Id": b.openSessionVersion(t, token, sessionVersion), "Mcp-Protocol-Version": sessionVersion}
		}, ""},
		// 2025-03-26 is the last version whose sessions take batches.
		{"session era with batches", func(t *testing.T, token string) (string, map[string]string) {
			return "/teams/acme/mcp", map[string]string{"Mcp-Session-Id": b.openSessionVersion(t, token, "2025-03-26"), "Mcp-Protocol-Version": "2025-03-26"}
		}, ""},
		{"stateless era", func(*testing.T, string) (string, map[string]string) {
			return "/teams/acme/mcp", map[string]string{"Mcp-Protocol-Version": statelessVersion, "Mcp-Method": "tools/call", "Mcp-Name": "alpha__echo"}
		}, statelessMeta},
		{"legacy SSE", func(t *testing.T, token string) (string, map[string]string) {
			return b.openSSE(t, token), nil
		}, ""},
	}
	calls := func() int {
		n := 0
		for _, ev := range b.events.requestLogs() {
			if ev.GetInstanceId() == "alpha-1" {
				n++
			}
		}
		return n
	}
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			path, header := tr.open(t, "ann-read")
			for _, c := range scopeBypasses {
				body := strings.ReplaceAll(c.body, callEcho(""), callEcho(tr.meta))
				resp := b.do(t, http.MethodPost, path, "ann-read", body, header)
				data, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != http.StatusForbidden && resp.StatusCode != http.StatusBadRequest {
					t.Errorf("%s: status %d %s, want 403 or 400", c.name, resp.StatusCode, data)
				}
				if bytes.Contains(data, []byte("pwned")) {
					t.Errorf("%s: the tool ran: %s", c.name, data)
				}
			}
			// What mcp:read allows still works on the same transport.
			list := `{"jsonrpc":"2.0","id":7,"method":"tools/list","params":{` + strings.TrimPrefix(tr.meta, ",") + `}}`
			if resp := b.do(t, http.MethodPost, path, "ann-read", list, listHeader(header)); resp.StatusCode >= 300 {
				t.Errorf("tools/list with mcp:read: status %d", resp.StatusCode)
			}
		})
	}
	if n := calls(); n != 0 {
		t.Fatalf("%d tool calls ran for a read-only token", n)
	}
	// The control: a token that may call tools gets the plain call through on each transport.
	for _, tr := range transports {
		path, header := tr.open(t, "ann")
		before := calls()
		resp := b.do(t, http.MethodPost, path, "ann", `{"jsonrpc":"2.0","id":9,"method":"tools/call",`+callEcho(tr.meta)+`}`, header)
		io.Copy(io.Discard, resp.Body)
		if resp.StatusCode >= 300 {
			t.Errorf("%s: a call with mcp:tools:execute: status %d", tr.name, resp.StatusCode)
		}
		settle(t, tr.name+" call", func() bool { return calls() > before })
		// Its bodies are not decoded for a scope decision, but what the SDK cannot decode is refused all
		// the same.
		if resp := b.do(t, http.MethodPost, path, "ann", `{"jsonrpc":"2.0","id":1,"method":`, header); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: a malformed body: status %d, want 400", tr.name, resp.StatusCode)
		}
	}
}

// listHeader is header for a tools/list in place of a call of alpha__echo: nil stays nil.
func listHeader(header map[string]string) map[string]string {
	if header == nil {
		return nil
	}
	out := map[string]string{}
	for k, v := range header {
		out[k] = v
	}
	if _, ok := out["Mcp-Method"]; ok {
		out["Mcp-Method"] = "tools/list"
	}
	delete(out, "Mcp-Name")
	return out
}

// openSessionVersion initializes a session of the given protocol version with raw HTTP and returns its
// id.
func (b *bundle) openSessionVersion(t *testing.T, token, version string) string {
	t.Helper()
	body := strings.Replace(initializeBody, sessionVersion, version, 1)
	resp := b.do(t, http.MethodPost, "/teams/acme/mcp", token, body, nil)
	io.Copy(io.Discard, resp.Body)
	id := resp.Header.Get("Mcp-Session-Id")
	if resp.StatusCode != http.StatusOK || id == "" {
		t.Fatalf("initialize: status %d, session %q", resp.StatusCode, id)
	}
	resp = b.do(t, http.MethodPost, "/teams/acme/mcp", token, `{"jsonrpc":"2.0","method":"notifications/initialized"}`,
		map[string]string{"Mcp-Session-Id": id, "Mcp-Protocol-Version": version})
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("initialized: status %d", resp.StatusCode)
	}
	return id
}

// openSSE opens a legacy SSE stream with token, initializes its session and returns its message
// endpoint. The stream stays open until the test ends.
func (b *bundle) openSSE(t *testing.T, token string) string {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, b.url+"/teams/acme/sse", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("SSE stream: status %d", resp.StatusCode)
	}
	endpoint := readEndpoint(t, resp.Body)
	for _, body := range []string{strings.Replace(initializeBody, sessionVersion, "2024-11-05", 1), `{"jsonrpc":"2.0","method":"notifications/initialized"}`} {
		if r := b.do(t, http.MethodPost, endpoint, token, body, nil); r.StatusCode != http.StatusAccepted {
			t.Fatalf("SSE %s: status %d", body, r.StatusCode)
		}
	}
	// The stream's answers are not needed; drain them so the server is never blocked on writing.
	go io.Copy(io.Discard, resp.Body)
	return endpoint
}

// readEndpoint reads an SSE stream up to its endpoint event and returns the event's data.
func readEndpoint(t *testing.T, r io.Reader) string {
	t.Helper()
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			return strings.TrimSpace(data)
		}
	}
	t.Fatalf("no endpoint event: %v", sc.Err())
	return ""
}

// BenchmarkScopeDecision is what guard adds to a tools/call: decoding the body as the SDK does,
// summarizing it, checking scopes and checking the request's params.
func BenchmarkScopeDecision(b *testing.B) {
	body := []byte(`{"jsonrpc":"2.0","id":12,"method":"tools/call","params":{"name":"everything__echo","arguments":{"message":"hello"},"_meta":{"progressToken":"p-12"}}}`)
	p := &principal{scopes: []string{ScopeRead, ScopeExecute}}
	b.ReportAllocs()
	for b.Loop() {
		msgs, err := decodeBody(body, true)
		if err != nil {
			b.Fatal(err)
		}
		summary := summarize(msgs)
		if missing := missingScopes(p, summary.methods); len(missing) > 0 {
			b.Fatal(missing)
		}
		if jerr := checkRequest(summary.requests[0]); jerr != nil {
			b.Fatal(jerr)
		}
	}
}
