package mcpruntime

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// ErrNoRawChannel means the instance's connection cannot carry requests the SDK's client has no method
// for: only stdio connections can.
var ErrNoRawChannel = errors.New("the MCP server's connection does not carry task requests")

// rawIDPrefix marks the ids of requests sent through a rawConn. The SDK numbers its own requests, so a
// string id with this prefix is never one of its.
const rawIDPrefix = "orrery-raw-"

// rawConn carries, beside the SDK's session, requests its client has no method for (the tasks methods
// and task-augmented tools/call, which go-sdk v1.8.0 does not know) over the same connection, and keeps
// the server's capabilities as it sent them, since the SDK's types drop the ones they do not know.
type rawConn struct {
	mcp.Connection
	// lines is the server's stdin, which the Connection writes to as well.
	lines *lineWriter
	next  atomic.Uint64

	mu      sync.Mutex
	pending map[string]chan *jsonrpc.Response
	initID  string
	listIDs map[string]bool // tools/list requests of the SDK's client waiting for their answer
	err     error           // set once Read failed: the connection is over

	// declared receives the capabilities of the server's answer to initialize.
	declared *atomic.Pointer[map[string]json.RawMessage]
	// taskSupport receives the execution.taskSupport of the tools the server lists.
	taskSupport *atomic.Pointer[map[string]string]
}

// rawTransport wraps a transport's connection in raw.
type rawTransport struct {
	mcp.Transport
	raw *rawConn
}

func (t *rawTransport) Connect(ctx context.Context) (mcp.Connection, error) {
	conn, err := t.Transport.Connect(ctx)
	if err != nil {
		return nil, err
	}
	t.raw.Connection = conn
	t.raw.pending = make(map[string]chan *jsonrpc.Response)
	return t.raw, nil
}

func (c *rawConn) Write(ctx context.Context, msg jsonrpc.Message) error {
	if req, ok := msg.(*jsonrpc.Request); ok && req.ID.IsValid() {
		switch req.Method {
		case "initialize":
			c.mu.Lock()
			c.initID = fmt.Sprint(req.ID.Raw())
			c.mu.Unlock()
		case "tools/list":
			c.mu.Lock()
			if c.listIDs == nil {
				c.listIDs = make(map[string]bool)
			}
			// A first page starts the list afresh; later pages add to it.
			var p struct {
				Cursor string `json:"cursor"`
			}
			_ = json.Unmarshal(req.Params, &p)
			c.listIDs[fmt.Sprint(req.ID.Raw())] = p.Cursor == ""
			c.mu.Unlock()
		}
	}
	return c.Connection.Write(ctx, msg)
}

func (c *rawConn) Read(ctx context.Context) (jsonrpc.Message, error) {
	for {
		msg, err := c.Connection.Read(ctx)
		if err != nil {
			c.fail(err)
			return msg, err
		}
		resp, ok := msg.(*jsonrpc.Response)
		if !ok {
			return msg, nil
		}
		id, isString := resp.ID.Raw().(string)
		if !isString || !strings.HasPrefix(id, rawIDPrefix) {
			c.noteInitialize(resp)
			c.noteToolList(resp)
			return msg, nil
		}
		c.mu.Lock()
		ch := c.pending[id]
		delete(c.pending, id)
		c.mu.Unlock()
		if ch != nil {
			ch <- resp
		}
	}
}

// noteInitialize keeps the capabilities of the server's answer to initialize.
func (c *rawConn) noteInitialize(resp *jsonrpc.Response) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.initID == "" || fmt.Sprint(resp.ID.Raw()) != c.initID || resp.Error != nil {
		return
	}
	c.initID = ""
	var res struct {
		Capabilities map[string]json.RawMessage `json:"capabilities"`
	}
	if json.Unmarshal(resp.Result, &res) == nil && c.declared != nil {
		c.declared.Store(&res.Capabilities)
	}
}

// noteToolList keeps the execution.taskSupport of the tools in an answer to tools/list.
func (c *rawConn) noteToolList(resp *jsonrpc.Response) {
	c.mu.Lock()
	defer c.mu.Unlock()
	id := fmt.Sprint(resp.ID.Raw())
	first, ok := c.listIDs[id]
	if !ok {
		return
	}
	delete(c.listIDs, id)
	if resp.Error != nil || c.taskSupport == nil {
		return
	}
	var res struct {
		Tools []struct {
			Name      string `json:"name"`
			Execution struct {
				TaskSupport string `json:"taskSupport"`
			} `json:"execution"`
		} `json:"tools"`
	}
	if json.Unmarshal(resp.Result, &res) != nil {
		return
	}
	support := map[string]string{}
	if old := c.taskSupport.Load(); old != nil && !first {
		maps.Copy(support, *old)
	}
	for _, t := range res.Tools {
		if t.Execution.TaskSupport != "" && len(t.Execution.TaskSupport) <= 32 {
			support[t.Name] = t.Execution.TaskSupport
		}
	}
	c.taskSupport.Store(&support)
}

func (c *rawConn) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = err
	}
	for id, ch := range c.pending {
		close(ch)
		delete(c.pending, id)
	}
}

// call sends method with params and waits for the answer. A JSON-RPC error comes back as a
// *jsonrpc.Error. When cancel is set and ctx ends first, the server is told the request was cancelled,
// as the SDK's client tells it.
func (c *rawConn) call(ctx context.Context, method string, params json.RawMessage, cancel bool) (json.RawMessage, error) {
	id := rawIDPrefix + strconv.FormatUint(c.next.Add(1), 10)
	ch := make(chan *jsonrpc.Response, 1)
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return nil, fmt.Errorf("%w: the connection ended", ErrUnavailable)
	}
	c.pending[id] = ch
	c.mu.Unlock()
	forget := func() {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
	}
	if err := c.send(ctx, id, method, params); err != nil {
		forget()
		return nil, fmt.Errorf("send %s: %w", method, err)
	}
	select {
	case resp, ok := <-ch:
		if !ok {
			return nil, fmt.Errorf("%w: the connection ended", ErrUnavailable)
		}
		if resp.Error != nil {
			var werr *jsonrpc.Error
			if errors.As(resp.Error, &werr) {
				return nil, werr
			}
			return nil, resp.Error
		}
		return resp.Result, nil
	case <-ctx.Done():
		forget()
		if cancel {
			c.cancelled(context.WithoutCancel(ctx), id, ctx.Err())
		}
		return nil, ctx.Err()
	}
}

// send writes the request as the SDK's connection would (jsonrpc2.EncodeMessage, compacted params), with
// no reflection: the gateway sends most tool calls this way, and the encoding was a good part of its
// work on a small one.
func (c *rawConn) send(ctx context.Context, id, method string, params json.RawMessage) error {
	if err := ctx.Err(); err != nil {
		return err // as the SDK's connection refuses to write on a closed context
	}
	quoted, err := json.Marshal(method)
	if err != nil {
		return err
	}
	line := bytes.NewBuffer(make([]byte, 0, len(params)+len(id)+len(quoted)+48))
	line.WriteString(`{"jsonrpc":"2.0","id":"`)
	line.WriteString(id) // rawIDPrefix and digits: nothing to escape
	line.WriteString(`","method":`)
	line.Write(quoted)
	if len(params) > 0 {
		line.WriteString(`,"params":`)
		if err := json.Compact(line, params); err != nil {
			return fmt.Errorf("marshaling jsonrpc message: %w", err)
		}
	}
	line.WriteString("}\n")
	_, err = c.lines.Write(line.Bytes())
	return err
}

// lineWriter is a server's stdin, written one whole message at a time: stdioConn writes each message the
// SDK's client sends with one Write (its line with the newline), and rawConn.send its own, each under the lock.
type lineWriter struct {
	mu sync.Mutex
	w  io.WriteCloser
}

func (l *lineWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// Close closes stdin without the lock, so that it also ends a write the server is not reading.
func (l *lineWriter) Close() error { return l.w.Close() }

// cancelled sends notifications/cancelled for the raw request id.
func (c *rawConn) cancelled(ctx context.Context, id string, reason error) {
	params, err := json.Marshal(struct {
		RequestID string `json:"requestId"`
		Reason    string `json:"reason"`
	}{id, reason.Error()})
	if err != nil {
		return
	}
	// The server may be gone already; a cancellation is advice, and its failure changes nothing.
	_ = c.Connection.Write(ctx, &jsonrpc.Request{Method: "notifications/cancelled", Params: params})
}

// Request sends instance id a request its SDK client has no method for, such as tasks/get, and returns
// the result as the server wrote it. It starts a dormant instance like Acquire. A JSON-RPC error from
// the server comes back as a *jsonrpc.Error; ErrNoRawChannel when the instance is not a stdio server.
func (r *Runtime) Request(ctx context.Context, id, method string, params json.RawMessage) (json.RawMessage, error) {
	lease, err := r.Acquire(ctx, id)
	if err != nil {
		return nil, err
	}
	defer lease.Release()
	if lease.c.raw == nil {
		return nil, ErrNoRawChannel
	}
	return lease.c.raw.call(ctx, method, params, false)
}

// SessionRequest sends method with params, as Request does, over the connection of session, which
// Session returned for instance id, and returns the result as the server wrote it, undecoded: a
// tools/call so sent costs the satellite no decoding of its result. When ctx ends first, the server is
// told the request was cancelled. It fails with ErrNoRawChannel when the instance is not a stdio server
// or session is no longer its live one; the caller then uses session itself.
func (r *Runtime) SessionRequest(ctx context.Context, id string, session *mcp.ClientSession, method string, params json.RawMessage) (json.RawMessage, error) {
	lease, err := r.Acquire(ctx, id)
	if err != nil {
		return nil, err
	}
	defer lease.Release()
	if lease.c.raw == nil || lease.c.session != session {
		return nil, ErrNoRawChannel
	}
	lease.c.requests.Add(1)
	return lease.c.raw.call(ctx, method, params, true)
}

// Capability returns the capability name (such as "tasks") that instance id's server declared when it
// last started, as it wrote it, or nil when it declared none or is not a stdio server. A dormant
// instance keeps its server's declaration. It never starts the instance.
func (r *Runtime) Capability(id, name string) json.RawMessage {
	in, ok := r.lookup(id)
	if !ok {
		return nil
	}
	if caps := in.declared.Load(); caps != nil {
		return (*caps)[name]
	}
	return nil
}

// ToolTaskSupport returns the execution.taskSupport ("optional", "required" or "forbidden") that tool
// declared in the last tools/list of instance id's server, or "" when it declared none or the server is
// not a stdio server. It never starts the instance.
func (r *Runtime) ToolTaskSupport(id, tool string) string {
	in, ok := r.lookup(id)
	if !ok {
		return ""
	}
	if support := in.taskSupport.Load(); support != nil {
		return (*support)[tool]
	}
	return ""
}
