package mcpruntime

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// nopWriter is a server's stdin that takes everything.
type nopWriter struct{}

func (nopWriter) Write(p []byte) (int, error) { return len(p), nil }
func (nopWriter) Close() error                { return nil }

// readAll reads messages from a connection until it fails, each as the SDK encodes it, then the failure.
func readAll(t *testing.T, conn mcp.Connection) []string {
	t.Helper()
	var out []string
	for {
		msg, err := conn.Read(t.Context())
		if err != nil {
			return append(out, "error")
		}
		data, err := jsonrpc.EncodeMessage(msg)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(data))
	}
}

// TestStdioConnReadsAsTheSDKReads feeds the same server output to the SDK's stdio connection and to
// stdioConn: the same messages come out, in the same order, and both fail where the output stops being
// JSON-RPC.
func TestStdioConnReadsAsTheSDKReads(t *testing.T) {
	t.Parallel()
	for _, output := range []string{
		`{"jsonrpc":"2.0","id":1,"result":{"content":[]}}` + "\n\n" + `{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"x"}}` + "\n",
		"{\n  \"jsonrpc\": \"2.0\",\n  \"id\": 2,\n  \"result\": {}\n}\n" + `{"jsonrpc":"2.0","id":3,"result":{}}` + "\r\n",
		`[{"jsonrpc":"2.0","method":"notifications/tools/list_changed"},{"jsonrpc":"2.0","id":"a","method":"roots/list"}]` + "\n",
		`{"jsonrpc":"2.0","id":4,"result":{}}` + "\nthe server printed a log line\n" + `{"jsonrpc":"2.0","id":5,"result":{}}` + "\n",
		`{"jsonrpc":"2.0","id":6,"Result":{},"METHOD":"x"}` + "\n" + `{"jsonrpc":"1.0","id":7,"result":{}}` + "\n",
		`{"jsonrpc":"2.0","id":8,"result":{}}`,
	} {
		sdk, err := (&mcp.IOTransport{Reader: io.NopCloser(strings.NewReader(output)), Writer: nopWriter{}}).Connect(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		ours, err := NewStdioTransport(mcp.NewClient(&mcp.Implementation{Name: "t"}, nil), io.NopCloser(strings.NewReader(output)), nopWriter{}).Connect(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		want, got := readAll(t, sdk), readAll(t, ours)
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("from %q\nread %q\nthe SDK reads %q", output, got, want)
		}
	}
}

// TestStdioConnAnswersABatchAsOne answers the requests of a batch from the server one by one: the
// answers go back together, as one line, once the last is written.
func TestStdioConnAnswersABatchAsOne(t *testing.T) {
	t.Parallel()
	stdin := &nopCloser{}
	output := `[{"jsonrpc":"2.0","id":1,"method":"roots/list"},{"jsonrpc":"2.0","method":"notifications/x"},{"jsonrpc":"2.0","id":2,"method":"ping"}]` + "\n"
	conn, err := NewStdioTransport(mcp.NewClient(&mcp.Implementation{Name: "t"}, nil), io.NopCloser(strings.NewReader(output)), stdin).Connect(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := conn.Read(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	for i, id := range []int64{2, 1} {
		jid, _ := jsonrpc.MakeID(float64(id))
		if err := conn.Write(context.Background(), &jsonrpc.Response{ID: jid, Result: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
		if i == 0 && stdin.Len() != 0 {
			t.Fatalf("wrote %q before the batch was answered", stdin.String())
		}
	}
	want := `[{"jsonrpc":"2.0","id":1,"result":{}},{"jsonrpc":"2.0","id":2,"result":{}}]` + "\n"
	if stdin.String() != want {
		t.Errorf("wrote %q, want %q", stdin.String(), want)
	}
}
