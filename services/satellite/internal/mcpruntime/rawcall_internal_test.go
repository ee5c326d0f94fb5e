package mcpruntime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// TestRawCallCancelled cancels a request sent beside the SDK's client: the server is told, with the
// request's id, as the SDK's client would tell it, and an answered request comes back as written.
func TestRawCallCancelled(t *testing.T) {
	t.Parallel()
	// Two pipes, as a server's stdin and stdout.
	stdinR, stdinW := io.Pipe()
	stdoutR, stdoutW := io.Pipe()
	raw := &rawConn{lines: &lineWriter{w: stdinW}}
	ct := &mcp.IOTransport{Reader: stdoutR, Writer: raw.lines}
	st := &mcp.IOTransport{Reader: stdinR, Writer: stdoutW}
	conn, err := (&rawTransport{Transport: ct, raw: raw}).Connect(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	server, err := st.Connect(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(); _ = server.Close() })
	// Answers reach a raw request only while the connection is read, as the SDK's client reads it.
	go func() {
		for {
			if _, err := conn.Read(context.Background()); err != nil {
				return
			}
		}
	}()
	readRequest := func() *jsonrpc.Request {
		t.Helper()
		msg, err := server.Read(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		req, ok := msg.(*jsonrpc.Request)
		if !ok {
			t.Fatalf("server read %T, want a request", msg)
		}
		return req
	}

	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		_, err := raw.call(ctx, "tools/call", json.RawMessage(`{"name":"slow","arguments":{}}`), true)
		errc <- err
	}()
	call := readRequest()
	if call.Method != "tools/call" || !call.ID.IsValid() {
		t.Fatalf("server got %s (id %v)", call.Method, call.ID.Raw())
	}
	cancel()
	note := readRequest()
	var p struct {
		RequestID any `json:"requestId"`
	}
	if note.Method != "notifications/cancelled" || note.ID.IsValid() || json.Unmarshal(note.Params, &p) != nil || p.RequestID != call.ID.Raw() {
		t.Fatalf("after the cancellation the server got %s %s, want notifications/cancelled for %v", note.Method, note.Params, call.ID.Raw())
	}
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled call: %v", err)
	}

	type answer struct {
		res json.RawMessage
		err error
	}
	done := make(chan answer, 1)
	go func() {
		res, err := raw.call(t.Context(), "tools/call", json.RawMessage(`{"name":"echo","arguments":{}}`), true)
		done <- answer{res, err}
	}()
	call = readRequest()
	want := `{"content":[{"type":"text","text":"as written","annotations":{"x-unknown":[1,2]}}],"isError":false}`
	if err := server.Write(t.Context(), &jsonrpc.Response{ID: call.ID, Result: json.RawMessage(want)}); err != nil {
		t.Fatal(err)
	}
	if a := <-done; a.err != nil || string(a.res) != want {
		t.Fatalf("answered call = %s, %v; want %s", a.res, a.err, want)
	}
}

// nopCloser is a buffer that is a server's stdin.
type nopCloser struct{ bytes.Buffer }

func (*nopCloser) Close() error { return nil }

// TestRawRequestsAreEncodedAsTheSDKEncodesThem holds rawConn.send to the SDK's own encoding of the same
// request, params with line breaks and characters an HTML-escaping encoder would change included, and
// refuses params that are not JSON, as the SDK's encoder does.
func TestRawRequestsAreEncodedAsTheSDKEncodesThem(t *testing.T) {
	t.Parallel()
	for _, params := range []string{`{"name":"echo","arguments":{}}`, "{\n  \"name\": \"a<&>b\",\n  \"arguments\": {\"x\": [1, 2]}\n}", ``, `[]`} {
		stdin := &nopCloser{}
		raw := &rawConn{lines: &lineWriter{w: stdin}}
		if err := raw.send(t.Context(), rawIDPrefix+"7", "tools/call", json.RawMessage(params)); err != nil {
			t.Fatal(err)
		}
		id, _ := jsonrpc.MakeID(rawIDPrefix + "7")
		want, err := jsonrpc.EncodeMessage(&jsonrpc.Request{ID: id, Method: "tools/call", Params: json.RawMessage(params)})
		if err != nil {
			t.Fatal(err)
		}
		if got := stdin.String(); got != string(want)+"\n" {
			t.Errorf("params %q sent as\n%s\nthe SDK sends\n%s", params, got, want)
		}
	}
	stdin := &nopCloser{}
	if err := (&rawConn{lines: &lineWriter{w: stdin}}).send(t.Context(), rawIDPrefix+"8", "tools/call", json.RawMessage(`{"name":`)); err == nil || stdin.Len() != 0 {
		t.Errorf("params that are not JSON: error %v, %d bytes written", err, stdin.Len())
	}
}
