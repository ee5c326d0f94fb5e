package mcpruntime

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// orderWait bounds how long a response is held back for the notifications before it; it only matters
// when a notification never reaches the handlers, such as one with malformed parameters.
const orderWait = time.Second

// handledNotifications are the notifications a client session hands to its receiving middleware, in
// the order they arrive. (notifications/cancelled is acted on as it is read.)
var handledNotifications = map[string]bool{
	"notifications/message":                true,
	"notifications/progress":               true,
	"notifications/resources/updated":      true,
	"notifications/resources/list_changed": true,
	"notifications/tools/list_changed":     true,
	"notifications/prompts/list_changed":   true,
	"notifications/elicitation/complete":   true,
}

// orderedReader passes a stdio server's output to the SDK one line at a time, and holds a response back
// until the notifications the server sent before it have been handled. The SDK handles notifications in
// order, but completes a call as soon as its response is read; without this, a call could return before
// the progress and log messages the server sent while serving it reached the caller.
type orderedReader struct {
	r       *bufio.Reader
	closer  io.Closer
	maxLine int    // the longest line it reads: maxLineBytes
	line    []byte // what is left of the current line
	err     error  // of reading the current line, returned once it is consumed

	mu      sync.Mutex
	read    uint64        // notifications passed on
	handled uint64        // notifications the handlers are done with
	changed chan struct{} // closed and replaced when handled grows
}

// NewStdioTransport returns the transport for client to a stdio server, over the server's stdout and
// stdin. It hands a response to client only after the notifications the server sent before it were
// handled, so that a call returns after its progress and log messages reached their destination. It
// adds a receiving middleware to client: add client's own receiving middleware after calling it.
func NewStdioTransport(client *mcp.Client, stdout io.ReadCloser, stdin io.WriteCloser) mcp.Transport {
	ordered := newOrderedReader(stdout)
	client.AddReceivingMiddleware(ordered.middleware)
	return &mcp.IOTransport{Reader: ordered, Writer: stdin}
}

// maxLineBytes bounds a line of a server's output, the SDK's own bound on a JSON-RPC frame: a server
// that writes without ever ending a line must not make the satellite hold all it writes.
const maxLineBytes = mcp.DefaultMaxLineLength

// errLineTooLong ends a connection whose server wrote a line longer than maxLineBytes.
var errLineTooLong = fmt.Errorf("the MCP server wrote a line of more than %d MiB", maxLineBytes>>20)

func newOrderedReader(r io.ReadCloser) *orderedReader {
	return &orderedReader{r: bufio.NewReader(r), closer: r, maxLine: maxLineBytes, changed: make(chan struct{})}
}

// readLine reads up to and including the next newline, and fails with errLineTooLong, having read at
// most limit bytes of the line and a buffer more, when the line is longer than limit.
func readLine(r *bufio.Reader, limit int) ([]byte, error) {
	var line []byte
	for {
		frag, err := r.ReadSlice('\n')
		if len(line)+len(frag) > limit {
			return nil, errLineTooLong
		}
		line = append(line, frag...)
		if err != bufio.ErrBufferFull {
			return line, err
		}
	}
}

func (o *orderedReader) Read(p []byte) (int, error) {
	if len(o.line) == 0 {
		if o.err != nil {
			return 0, o.err
		}
		o.line, o.err = readLine(o.r, o.maxLine)
		if len(o.line) == 0 {
			return 0, o.err
		}
		var msg struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
		}
		if json.Unmarshal(o.line, &msg) == nil {
			switch {
			case msg.ID == nil && handledNotifications[msg.Method]:
				o.mu.Lock()
				o.read++
				o.mu.Unlock()
			case msg.ID != nil && msg.Method == "":
				o.awaitHandled()
			}
		}
	}
	n := copy(p, o.line)
	o.line = o.line[n:]
	return n, nil
}

func (o *orderedReader) Close() error { return o.closer.Close() }

// awaitHandled waits until every notification passed on has been handled, or orderWait has passed.
func (o *orderedReader) awaitHandled() {
	timer := time.NewTimer(orderWait)
	defer timer.Stop()
	for {
		o.mu.Lock()
		if o.handled >= o.read {
			o.mu.Unlock()
			return
		}
		changed := o.changed
		o.mu.Unlock()
		select {
		case <-changed:
		case <-timer.C:
			o.mu.Lock()
			o.handled = o.read // lost ones must not hold back later responses
			o.mu.Unlock()
			return
		}
	}
}

// middleware counts the notifications the handlers are done with. Added before any other receiving
// middleware, it is innermost, and counts a notification once every handler is done with it.
func (o *orderedReader) middleware(next mcp.MethodHandler) mcp.MethodHandler {
	return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
		res, err := next(ctx, method, req)
		if handledNotifications[method] {
			o.mu.Lock()
			o.handled++
			close(o.changed)
			o.changed = make(chan struct{})
			o.mu.Unlock()
		}
		return res, err
	}
}
