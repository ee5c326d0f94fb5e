package mcpruntime

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	segjson "github.com/segmentio/encoding/json"

	"github.com/orrery/orrery/services/satellite/internal/sdkjson"
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

// orderedReader reads a stdio server's output one message at a time, and holds a response back
// until the notifications the server sent before it have been handled. The SDK handles notifications in
// order, but completes a call as soon as its response is read; without this, a call could return before
// the progress and log messages the server sent while serving it reached the caller.
type orderedReader struct {
	r       *bufio.Reader
	closer  io.Closer
	maxLine int // the longest message it reads: maxLineBytes

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
	lines, ok := stdin.(*lineWriter)
	if !ok {
		lines = &lineWriter{w: stdin}
	}
	return &stdioTransport{out: ordered, in: lines}
}

// maxLineBytes bounds a message of a server's output, the SDK's own bound on a JSON-RPC frame: a server
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

// next reads the next message the server wrote, or batch of them (isBatch), decoded as the SDK's
// connection decodes them, and holds a response back until the notifications read before it have been
// handled. Blank lines are skipped, and a message written over several lines is read whole, as the
// SDK's connection reads them; a line that is not JSON fails, as it fails there.
func (o *orderedReader) next() (msgs []jsonrpc.Message, isBatch bool, err error) {
	var text []byte
	for {
		line, err := readLine(o.r, o.maxLine-len(text))
		if errors.Is(err, errLineTooLong) {
			return nil, false, err
		}
		text = append(text, line...)
		if len(bytes.TrimSpace(text)) == 0 {
			if err != nil {
				return nil, false, err
			}
			text = text[:0]
			continue
		}
		if segjson.Valid(text) {
			break
		}
		if err != nil || !incomplete(text) {
			if err == nil || err == io.EOF {
				err = fmt.Errorf("invalid JSON from the MCP server: %.64q", text)
			}
			return nil, false, err
		}
	}
	msgs, isBatch, err = sdkjson.DecodeBatch(text)
	if err != nil || isBatch {
		return msgs, isBatch, err
	}
	switch m := msgs[0].(type) {
	case *jsonrpc.Request:
		if !m.ID.IsValid() && handledNotifications[m.Method] {
			o.mu.Lock()
			o.read++
			o.mu.Unlock()
		}
	case *jsonrpc.Response:
		o.awaitHandled()
	}
	return msgs, false, nil
}

// incomplete reports whether text is the start of a JSON value that more input may complete.
func incomplete(text []byte) bool {
	var v json.RawMessage
	return errors.Is(json.NewDecoder(bytes.NewReader(text)).Decode(&v), io.ErrUnexpectedEOF)
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
