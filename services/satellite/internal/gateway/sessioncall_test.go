package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"google.golang.org/protobuf/types/known/timestamppb"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
)

// rawSession opens a session-era session on b's acme endpoint with a raw initialize of version, with
// the client capabilities caps, and returns its id. The headers of its later requests are in header.
func rawSession(t testing.TB, b *bundle, token, query, version, caps string) (id string, header map[string]string) {
	t.Helper()
	init := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"` + version + `","capabilities":` + caps +
		`,"clientInfo":{"name":"raw","version":"1"}}}`
	resp := b.do(t, http.MethodPost, "/teams/acme/mcp"+query, token, init, nil)
	_, _ = io.Copy(io.Discard, resp.Body)
	id = resp.Header.Get("Mcp-Session-Id")
	if resp.StatusCode != http.StatusOK || id == "" {
		t.Fatalf("initialize: status %d, session %q", resp.StatusCode, id)
	}
	header = map[string]string{"Mcp-Session-Id": id}
	if version >= "2025-06-18" { // the header came with that version
		header["Mcp-Protocol-Version"] = version
	}
	if resp := b.do(t, http.MethodPost, "/teams/acme/mcp"+query, token, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, header); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("initialized: status %d", resp.StatusCode)
	}
	return id, header
}

// answer is an HTTP answer as a client sees it: status, the headers the SDK sets, body.
func answer(t *testing.T, resp *http.Response) string {
	t.Helper()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	h := resp.Header
	return fmt.Sprintf("%d\nContent-Type: %s\nCache-Control: %s\nConnection: %s\nMcp-Session-Id: %s\n%s", resp.StatusCode,
		h.Get("Content-Type"), h.Get("Cache-Control"), h.Get("Connection"), h.Get("Mcp-Session-Id"), body)
}

func with(h map[string]string, kv ...string) map[string]string {
	out := make(map[string]string, len(h)+len(kv)/2)
	for k, v := range h {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// TestSessionCallAnswersAsSDK sends the same session-era tools/call requests, in each session-era
// protocol version, to a gateway that serves them before the SDK and to one that leaves them to the
// SDK's server: the answers are the same to the byte, status and headers included, and the calls of
// listed tools were served before the SDK.
func TestSessionCallAnswersAsSDK(t *testing.T) {
	t.Parallel()
	calls := []struct {
		body   string
		listed bool
	}{
		{`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"alpha__echo","arguments":{"z":1.50,"html":"<a&b>","u":"é\u2028"}}}`, true},
		{`{"jsonrpc":"2.0","id":"s-3","method":"tools/call","params":{"name":"beta__echo"}}`, true},
		{`{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"alpha__fail","arguments":{},"_meta":{"trace":"x"}}}`, true},
		{`{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"alpha__no_such_tool","arguments":{}}}`, false},
		{`{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"alpha__echo","arguments":{},"Name":"beta__echo"}}`, true},
	}
	for _, version := range []string{"2025-03-26", "2025-06-18", "2025-11-25"} {
		t.Run(version, func(t *testing.T) {
			t.Parallel()
			fast, sdk := setup(t, setupOptions{}), setup(t, setupOptions{})
			sdk.gw.sessionCallsToSDK = true
			_, fh := rawSession(t, fast, "ann", "", version, `{}`)
			_, sh := rawSession(t, sdk, "ann", "", version, `{}`)
			var listed int64
			for _, c := range calls {
				got := answer(t, fast.do(t, http.MethodPost, "/teams/acme/mcp", "ann", c.body, fh))
				want := answer(t, sdk.do(t, http.MethodPost, "/teams/acme/mcp", "ann", c.body, sh))
				if got != want {
					t.Errorf("%s\nanswered before the SDK:\n%s\nby the SDK:\n%s", c.body, got, want)
				}
				if c.listed {
					listed++
				}
			}
			if n := fast.gw.sessionCallsServed.Load(); n != listed {
				t.Errorf("%d calls served before the SDK, want the %d of listed tools", n, listed)
			}
			if n := sdk.gw.sessionCallsServed.Load(); n != 0 {
				t.Errorf("%d calls served before the SDK with the fast path off", n)
			}
			if a, b := len(fast.events.requestLogs()), len(sdk.events.requestLogs()); a != b {
				t.Errorf("%d request logs, the SDK's path %d", a, b)
			}
		})
	}
}

// TestSessionCallOfOthers is what an attacker tries with a session id: another user's, another OAuth
// client's, another team's, a made-up one, a closed one. None is served before the SDK, none reaches an
// instance, and each is answered as the SDK answers it (403 or 404, in its words).
func TestSessionCallOfOthers(t *testing.T) {
	t.Parallel()
	const call = `{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"alpha__echo","arguments":{}}}`
	type attempt struct{ name, token, slug, session string }
	run := func(t *testing.T, b *bundle) (map[string]string, int64) {
		b.intro.set("ann-other-client", &satellitev1.IntrospectTokenResponse{
			Active: true, TeamId: teamAcme, TeamSlug: "acme", UserId: userAnn, ClientId: "client-2",
			Audience: b.url + "/teams/acme/mcp", Scopes: []string{ScopeRead, ScopeExecute},
			ExpiresAt: timestamppb.New(b.clock.Now().Add(time.Hour)),
		})
		annSession, _ := rawSession(t, b, "ann", "", sessionVersion, `{}`)
		closed, ch := rawSession(t, b, "ann", "", sessionVersion, `{}`)
		if resp := b.do(t, http.MethodDelete, "/teams/acme/mcp", "ann", "", ch); resp.StatusCode != http.StatusNoContent {
			t.Fatalf("DELETE: status %d", resp.StatusCode)
		}
		before := b.backend.rawCalls.Load()
		out := map[string]string{}
		for _, a := range []attempt{
			{"another user's session", "bob", "acme", annSession},
			{"another client's session", "ann-other-client", "acme", annSession},
			{"another team's session", "cid", "globex", annSession},
			{"a made-up session", "ann", "acme", "0123456789abcdef"},
			{"a closed session", "ann", "acme", closed},
		} {
			h := map[string]string{"Mcp-Session-Id": a.session, "Mcp-Protocol-Version": sessionVersion}
			resp := b.do(t, http.MethodPost, "/teams/"+a.slug+"/mcp", a.token, call, h)
			if resp.StatusCode != http.StatusForbidden && resp.StatusCode != http.StatusNotFound {
				t.Errorf("%s: status %d, want 403 or 404", a.name, resp.StatusCode)
			}
			out[a.name] = answer(t, resp)
		}
		if n := b.backend.rawCalls.Load() - before; n != 0 {
			t.Errorf("%d calls reached an instance", n)
		}
		return out, b.gw.sessionCallsServed.Load()
	}
	fast, sdk := setup(t, setupOptions{}), setup(t, setupOptions{})
	sdk.gw.sessionCallsToSDK = true
	got, served := run(t, fast)
	want, _ := run(t, sdk)
	if served != 0 {
		t.Errorf("%d calls of others' sessions served before the SDK", served)
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("%s: answered\n%s\nthe SDK answers\n%s", name, got[name], w)
		}
	}
}

// TestSessionCallLeftToSDK sends session-era calls that need the POST's stream or that the SDK checks
// in its own words: none is served before the SDK, and each gets the SDK's answer.
func TestSessionCallLeftToSDK(t *testing.T) {
	t.Parallel()
	const echo = `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"alpha__echo","arguments":{"q":1}%s}}`
	for _, c := range []struct {
		name, caps, query, params, setLevel string
		header                              []string
		batch                               bool
	}{
		{name: "a progress token", params: `,"_meta":{"progressToken":"p"}`},
		{name: "a 2026-07-28 version in _meta", params: `,"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}`},
		{name: "a 2026-07-28 version header", header: []string{"Mcp-Protocol-Version", "2026-07-28"}},
		{name: "an unknown version header", header: []string{"Mcp-Protocol-Version", "1999-01-01"}},
		{name: "a Last-Event-ID", header: []string{"Last-Event-ID", "x_1"}},
		{name: "no event stream accepted", header: []string{"Accept", "application/json"}},
		{name: "a malformed tools query", query: "?tools=bogus"},
		{name: "a task", params: `,"task":{"ttl":1000}`},
		{name: "a name of the wrong type", params: `,"name":7`},
		{name: "a batch", batch: true},
		{name: "a client that may be sampled, without a GET stream", caps: `{"sampling":{}}`},
		{name: "a client with roots, without a GET stream", caps: `{"roots":{}}`},
		{name: "a session that set a log level", setLevel: "debug"},
		{name: "a session of search mode", query: "?tools=search"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			caps := c.caps
			if caps == "" {
				caps = `{}`
			}
			body := fmt.Sprintf(echo, c.params)
			if c.batch {
				body = "[" + body + "]"
			}
			run := func(b *bundle) string {
				initQuery := ""
				if c.query == "?tools=search" {
					initQuery = c.query
				}
				version := sessionVersion
				if c.batch {
					version = "2025-03-26" // the last version with batches
				}
				_, h := rawSession(t, b, "ann", initQuery, version, caps)
				if c.setLevel != "" {
					resp := b.do(t, http.MethodPost, "/teams/acme/mcp", "ann", `{"jsonrpc":"2.0","id":3,"method":"logging/setLevel","params":{"level":"`+c.setLevel+`"}}`, h)
					_, _ = io.Copy(io.Discard, resp.Body)
				}
				return answer(t, b.do(t, http.MethodPost, "/teams/acme/mcp"+c.query, "ann", body, with(h, c.header...)))
			}
			fast, sdk := setup(t, setupOptions{}), setup(t, setupOptions{})
			sdk.gw.sessionCallsToSDK = true
			got, want := run(fast), run(sdk)
			if n := fast.gw.sessionCallsServed.Load(); n != 0 {
				t.Errorf("served before the SDK")
			}
			if got != want {
				t.Errorf("answered\n%s\nthe SDK answers\n%s", got, want)
			}
		})
	}
}

// TestSessionCallWithGETStream: a client that may be asked something mid-call is served before the SDK
// while it holds its GET stream, where what the instance asks reaches it, and not once the stream ends.
func TestSessionCallWithGETStream(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{})
	id, h := rawSession(t, b, "ann", "", sessionVersion, `{"sampling":{},"roots":{}}`)
	const call = `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"alpha__echo","arguments":{}}}`
	ctx, cancel := context.WithCancel(t.Context())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, b.url+"/teams/acme/mcp", nil)
	req.Header.Set("Accept", "text/event-stream")
	for k, v := range h {
		req.Header.Set(k, v)
	}
	resp, err := httpClient("ann").Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET stream: %v, %v", resp, err)
	}
	open := b.gw.sessions.get(id)
	if open == nil {
		t.Fatal("the session is not indexed")
	}
	if open.mayBeAsked(open.ss.InitializeParams().Capabilities) {
		t.Fatal("a session with its GET stream open is taken as one without")
	}
	if got := answer(t, b.do(t, http.MethodPost, "/teams/acme/mcp", "ann", call, h)); !strings.HasPrefix(got, "200") {
		t.Errorf("call: %s", got)
	}
	if n := b.gw.sessionCallsServed.Load(); n != 1 {
		t.Errorf("%d calls served before the SDK with the GET stream open, want 1", n)
	}
	cancel()
	resp.Body.Close()
	deadline := time.Now().Add(5 * time.Second)
	for !open.mayBeAsked(open.ss.InitializeParams().Capabilities) {
		if time.Now().After(deadline) {
			t.Fatal("the GET stream is still counted after it ended")
		}
		time.Sleep(time.Millisecond)
	}
	_ = answer(t, b.do(t, http.MethodPost, "/teams/acme/mcp", "ann", call, h))
	if n := b.gw.sessionCallsServed.Load(); n != 1 {
		t.Errorf("%d calls served before the SDK after the GET stream ended, want still 1", n)
	}
}

// TestSessionCallEndsWithSession: a session closed while a call served before the SDK runs cancels the
// call downstream, and its POST ends without an answer, as the SDK's stream of a closed session does.
func TestSessionCallEndsWithSession(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOptions{})
	_, h := rawSession(t, b, "ann", "", sessionVersion, `{}`)
	done := make(chan string, 1)
	go func() {
		done <- answer(t, b.do(t, http.MethodPost, "/teams/acme/mcp", "ann", `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"alpha__slow","arguments":{}}}`, h))
	}()
	select {
	case <-b.alpha.started:
	case <-time.After(5 * time.Second):
		t.Fatal("the call never reached the instance")
	}
	if resp := b.do(t, http.MethodDelete, "/teams/acme/mcp", "ann", "", h); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE: status %d", resp.StatusCode)
	}
	select {
	case <-b.alpha.cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("downstream call not cancelled when its session closed")
	}
	if got := <-done; !strings.HasPrefix(got, "200\nContent-Type: text/event-stream") || !strings.HasSuffix(got, "\n") || strings.Contains(got, "event:") {
		t.Errorf("the call's POST answered\n%s\nwant the stream's headers and no event", got)
	}
	if n := b.gw.sessionCallsServed.Load(); n != 1 {
		t.Errorf("%d calls served before the SDK, want 1", n)
	}
	if resp := b.do(t, http.MethodPost, "/teams/acme/mcp", "ann", `{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"alpha__echo","arguments":{}}}`, h); resp.StatusCode != http.StatusNotFound {
		t.Errorf("a call on the closed session: status %d, want 404", resp.StatusCode)
	}
}

// TestSessionCallDuplicateID: a call whose id is already in progress on the session is refused as the SDK
// refuses it, and the client's notifications/cancelled cancels the first, on either path.
func TestSessionCallDuplicateID(t *testing.T) {
	t.Parallel()
	const slow = `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"alpha__slow","arguments":{}}}`
	run := func(t *testing.T, b *bundle) string {
		_, h := rawSession(t, b, "ann", "", sessionVersion, `{}`)
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		go func() {
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, b.url+"/teams/acme/mcp", strings.NewReader(slow))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			for k, v := range h {
				req.Header.Set(k, v)
			}
			if resp, err := httpClient("ann").Do(req); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
		select {
		case <-b.alpha.started:
		case <-time.After(5 * time.Second):
			t.Fatal("the call never reached the instance")
		}
		got := answer(t, b.do(t, http.MethodPost, "/teams/acme/mcp", "ann", strings.Replace(slow, "alpha__slow", "alpha__echo", 1), h))
		if resp := b.do(t, http.MethodPost, "/teams/acme/mcp", "ann", `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":7}}`, h); resp.StatusCode != http.StatusAccepted {
			t.Errorf("notifications/cancelled: status %d", resp.StatusCode)
		}
		select {
		case <-b.alpha.cancelled:
		case <-time.After(5 * time.Second):
			t.Fatal("notifications/cancelled did not cancel the call")
		}
		return got
	}
	fast, sdk := setup(t, setupOptions{}), setup(t, setupOptions{})
	sdk.gw.sessionCallsToSDK = true
	got, want := run(t, fast), run(t, sdk)
	if got != want {
		t.Errorf("a second call with id 7 answered\n%s\nthe SDK answers\n%s", got, want)
	}
	if n := fast.gw.sessionCallsServed.Load(); n != 1 {
		t.Errorf("%d calls served before the SDK, want the first", n)
	}
}

// TestEncodedResultReusable: the request log's encoding of a result is sent in its place only when it
// is the same result, with its content, and then it is the SDK's encoding to the byte, HTML characters
// included.
func TestEncodedResultReusable(t *testing.T) {
	t.Parallel()
	res := &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "plain"}}}
	html := &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "<a&b>"}}}
	empty := &mcp.CallToolResult{}
	encoded := func(r *mcp.CallToolResult) encodedResult {
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		return encodedResult{res: r, json: b}
	}
	for _, c := range []struct {
		name   string
		logged encodedResult
		res    *mcp.CallToolResult
		want   bool
	}{
		{"the logged result", encoded(res), res, true},
		{"another result", encoded(res), html, false},
		{"a result with characters json.Marshal escapes for HTML", encoded(html), html, true},
		{"a result without content", encoded(empty), empty, false},
		{"nothing logged", encodedResult{}, res, false},
	} {
		raw, ok := c.logged.reusable(c.res)
		if ok != c.want {
			t.Errorf("%s: reusable = %v, want %v", c.name, ok, c.want)
		}
		if ok {
			want, _ := encodeNoEscape(c.res)
			if string(raw) != string(want) {
				t.Errorf("%s: reused %s, the SDK's encoding is %s", c.name, raw, want)
			}
		}
	}
}

// BenchmarkCallBeforeSDK measures the gateway's own work on the tools/call requests it serves before the
// SDK's server, in either era, over loopback HTTP from a raw client, against an in-memory instance (whose
// SDK client and server are part of the figure). BenchmarkEndpointEcho in the satellite package measures
// the whole path against a real server in a process of its own.
func BenchmarkCallBeforeSDK(b *testing.B) {
	for _, era := range []string{"session era", "stateless era"} {
		b.Run(era, func(b *testing.B) {
			bb := setup(b, setupOptions{})
			body := `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"alpha__echo","arguments":{"q":"hi"}}}`
			var header map[string]string
			if era == "session era" {
				_, header = rawSession(b, bb, "ann", "", sessionVersion, `{}`)
			} else {
				header = map[string]string{"Mcp-Protocol-Version": statelessVersion, "Mcp-Method": "tools/call", "Mcp-Name": "alpha__echo"}
				body = `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"alpha__echo","arguments":{"q":"hi"},` +
					`"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`
			}
			client := &http.Client{}
			b.ReportAllocs()
			for b.Loop() {
				req, err := http.NewRequestWithContext(b.Context(), http.MethodPost, bb.url+"/teams/acme/mcp", strings.NewReader(body))
				if err != nil {
					b.Fatal(err)
				}
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Accept", "application/json, text/event-stream")
				req.Header.Set("Authorization", "Bearer ann")
				for k, v := range header {
					req.Header.Set(k, v)
				}
				resp, err := client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
			if era == "session era" && bb.gw.sessionCallsServed.Load() == 0 {
				b.Fatal("no call was served before the SDK")
			}
		})
	}
}
