package mcpruntime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// stdioTransport connects a client to a stdio server as mcp.IOTransport does, but reads what the server
// writes with orderedReader.next, which decodes each message once: the SDK's connection decodes it three
// times (as a batch, as a message, its method), allocating a 32 KiB buffer each time, on every message
// of every call. What it reads and writes, and what it fails on, is the SDK connection's.
type stdioTransport struct {
	out *orderedReader
	in  *lineWriter
}

func (t *stdioTransport) Connect(context.Context) (mcp.Connection, error) {
	c := &stdioConn{out: t.out, in: t.in, incoming: make(chan incoming), closed: make(chan struct{})}
	go c.readLoop()
	return c, nil
}

// stdioConn is the connection a stdioTransport makes.
type stdioConn struct {
	out      *orderedReader
	in       *lineWriter
	incoming chan incoming
	queue    []jsonrpc.Message // the rest of a batch; only Read, which is not called concurrently, uses it

	batchMu sync.Mutex
	batches map[jsonrpc.ID]*batch // by the id of each request of a batch not yet answered

	closeOnce sync.Once
	closed    chan struct{}
	closeErr  error
}

// incoming is what the server wrote next.
type incoming struct {
	msgs    []jsonrpc.Message
	isBatch bool
	err     error
}

// batch is a batch of requests from the server, whose answers go back together, as JSON-RPC asks.
type batch struct {
	unanswered map[jsonrpc.ID]int // index in answers
	answers    []*jsonrpc.Response
}

// readLoop reads in a goroutine of its own, so that Read can return when its context ends or the
// connection closes, as the SDK's does.
func (c *stdioConn) readLoop() {
	for {
		msgs, isBatch, err := c.out.next()
		select {
		case c.incoming <- incoming{msgs, isBatch, err}:
		case <-c.closed:
			return
		}
		if err != nil {
			return
		}
	}
}

func (c *stdioConn) Read(ctx context.Context) (jsonrpc.Message, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(c.queue) > 0 {
		next := c.queue[0]
		c.queue = c.queue[1:]
		return next, nil
	}
	var in incoming
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case in = <-c.incoming:
		if in.err != nil {
			return nil, in.err
		}
	case <-c.closed:
		return nil, io.EOF
	}
	if in.isBatch {
		if err := c.addBatch(in.msgs); err != nil {
			return nil, err
		}
	}
	c.queue = in.msgs[1:]
	return in.msgs[0], nil
}

// addBatch records the requests of a batch, so that their answers go back as one.
func (c *stdioConn) addBatch(msgs []jsonrpc.Message) error {
	b := &batch{unanswered: map[jsonrpc.ID]int{}}
	for _, msg := range msgs {
		if req, ok := msg.(*jsonrpc.Request); ok && req.ID.IsValid() {
			if _, dup := b.unanswered[req.ID]; dup {
				return fmt.Errorf("duplicate message ID %q", req.ID)
			}
			b.unanswered[req.ID] = len(b.answers)
			b.answers = append(b.answers, nil)
		}
	}
	if len(b.unanswered) == 0 {
		return nil
	}
	c.batchMu.Lock()
	defer c.batchMu.Unlock()
	for id := range b.unanswered {
		if _, ok := c.batches[id]; ok {
			return &jsonrpc.Error{Code: jsonrpc.CodeInvalidRequest, Message: fmt.Sprintf("batch contains previously seen request %v", id.Raw())}
		}
	}
	if c.batches == nil {
		c.batches = make(map[jsonrpc.ID]*batch)
	}
	for id := range b.unanswered {
		c.batches[id] = b
	}
	return nil
}

// answered records resp if it answers a request of a batch. It reports whether it did, with the
// batch's answers once resp was the last.
func (c *stdioConn) answered(resp *jsonrpc.Response) (complete []*jsonrpc.Response, inBatch bool) {
	c.batchMu.Lock()
	defer c.batchMu.Unlock()
	b, ok := c.batches[resp.ID]
	if !ok {
		return nil, false
	}
	b.answers[b.unanswered[resp.ID]] = resp
	delete(b.unanswered, resp.ID)
	delete(c.batches, resp.ID)
	if len(b.unanswered) > 0 {
		return nil, true
	}
	return b.answers, true
}

func (c *stdioConn) Write(ctx context.Context, msg jsonrpc.Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if resp, ok := msg.(*jsonrpc.Response); ok {
		if answers, inBatch := c.answered(resp); inBatch {
			if answers == nil {
				return nil
			}
			encoded := make([]json.RawMessage, len(answers))
			for i, a := range answers {
				raw, err := jsonrpc.EncodeMessage(a)
				if err != nil {
					return fmt.Errorf("encoding batch message: %w", err)
				}
				encoded[i] = raw
			}
			data, err := json.Marshal(encoded)
			if err != nil {
				return err
			}
			_, err = c.in.Write(append(data, '\n'))
			return err
		}
	}
	data, err := jsonrpc.EncodeMessage(msg)
	if err != nil {
		return fmt.Errorf("marshaling message: %v", err)
	}
	_, err = c.in.Write(append(data, '\n'))
	return err
}

func (c *stdioConn) Close() error {
	c.closeOnce.Do(func() {
		c.closeErr = errors.Join(c.out.Close(), c.in.Close())
		close(c.closed)
	})
	return c.closeErr
}

func (c *stdioConn) SessionID() string { return "" }
