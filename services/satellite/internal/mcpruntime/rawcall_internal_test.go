package mcpruntime

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// TestRawCallCancelled cancels a request sent beside the SDK's client: the server is told, with the
// request's id, as the SDK's client would tell it, and an answered request comes back as written.
func TestRawCallCancelled(t *testing.T) {
	t.Parallel()
	ct, st := mcp.NewInMemoryTransports()
	raw := &rawConn{}
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
