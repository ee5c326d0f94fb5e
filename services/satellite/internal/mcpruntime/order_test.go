package mcpruntime

import (
	"context"
	"io"
	"strings"
	"testing"
	"testing/synctest"
	"time"

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
			buf := make([]byte, 16) // smaller than a line: a line may take several reads
			var line strings.Builder
			for {
				n, err := o.Read(buf)
				line.Write(buf[:n])
				if strings.HasSuffix(line.String(), "\n") {
					lines <- line.String()
					line.Reset()
				}
				if err != nil {
					close(lines)
					return
				}
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
