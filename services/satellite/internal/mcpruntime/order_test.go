package mcpruntime

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

func TestOrderedReaderHoldsResponsesBack(t *testing.T) {
	t.Parallel()
	const (
		progress = `{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"t","progress":1}}` + "\n"
		response = `{"jsonrpc":"2.0","id":1,"result":{}}` + "\n"
		request  = `{"jsonrpc":"2.0","id":7,"method":"roots/list"}` + "\n"
	)
	synctest.Test(t, func(t *testing.T) {
		o := newOrderedReader(io.NopCloser(strings.NewReader(progress + request + response + progress + response)))
		handled := o.middleware(func(context.Context, string, mcp.Request) (mcp.Result, error) { return nil, nil })
		lines := make(chan string)
		go func() {
			for {
				msgs, _, err := o.next()
				if err != nil {
					close(lines)
					return
				}
				data, _ := jsonrpc.EncodeMessage(msgs[0])
				lines <- string(data) + "\n"
			}
		}()
		next := func() string {
			synctest.Wait()
			select {
			case l := <-lines:
				return l
			default:
				return ""
			}
		}
		if got := next(); got != progress {
			t.Fatalf("first line %q", got)
		}
		// A request of the server is not held back, the response is, until the progress is handled.
		if got := next(); got != request {
			t.Fatalf("second line %q", got)
		}
		if got := next(); got != "" {
			t.Fatalf("%q passed before the notification was handled", got)
		}
		handled(t.Context(), "notifications/progress", nil)
		if got := next(); got != response {
			t.Fatalf("after handling, %q", got)
		}
		// A notification that is never handled holds the next response back for orderWait at most.
		if got := next(); got != progress {
			t.Fatalf("fourth line %q", got)
		}
		start := time.Now()
		if got := <-lines; got != response || time.Since(start) != orderWait {
			t.Errorf("%q after %v", got, time.Since(start))
		}
	})
}

// endless is a server's stdout that does not end a line before it has written size bytes, and then
// ends; read counts the bytes taken from it.
type endless struct{ size, read int }

func (e *endless) Read(p []byte) (int, error) {
	if e.read >= e.size {
		return 0, io.EOF
	}
	p = p[:min(len(p), e.size-e.read)]
	for i := range p {
		p[i] = 'x'
	}
	e.read += len(p)
	return len(p), nil
}

// TestOrderedReaderBoundsALine is what a hostile server tries: output that never ends a line, to make
// the satellite hold all of it. The reader fails once the line passes the bound, having read little
// more than the bound, and lines up to it still pass.
func TestOrderedReaderBoundsALine(t *testing.T) {
	t.Parallel()
	const limit = 64 << 10
	src := &endless{size: 64 * limit}
	o := newOrderedReader(io.NopCloser(src))
	o.maxLine = limit
	_, _, err := o.next()
	if !errors.Is(err, errLineTooLong) {
		t.Fatalf("endless line: %v, want errLineTooLong", err)
	}
	if src.read > limit+8192 {
		t.Errorf("read %d bytes of an endless line, bound %d", src.read, limit)
	}

	line := `{"jsonrpc":"2.0","method":"x","params":{"p":"` + strings.Repeat("y", limit-64) + `"}}` + "\n"
	o = newOrderedReader(io.NopCloser(strings.NewReader(line)))
	o.maxLine = limit
	if msgs, _, err := o.next(); err != nil || msgs[0].(*jsonrpc.Request).Method != "x" {
		t.Fatalf("a line within the bound: %v", err)
	}
}
