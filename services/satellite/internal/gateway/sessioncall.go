//lint:file-ignore SA1019 sampling and roots are deprecated only from the 2026-07-28 protocol on; a session of the session era still declares them

package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/orrery/orrery/services/satellite/internal/sdkjson"
)

// A session-era tools/call, the most common request, is served by the gateway's guard without the SDK's
// Streamable HTTP server (serveSessionCall), as the SDK's server would serve it: the SDK would read the
// body again, route it through the session's connection and frame the answer, which costs more than the
// gateway's own work on the call. That needs what the SDK keeps to itself: the gateway finds the session
// by its id (sessionIndex), checks the binding it was opened under, and owns the session's idle timeout
// (sessionUse), which the SDK's handler would reset on every POST it serves and which nothing outside it
// can reset. Whatever the call needs the SDK's stream or checks for, it leaves to the SDK.

// sessionIndex finds the open Streamable HTTP sessions by their id.
type sessionIndex struct {
	mu   sync.Mutex
	byID map[string]*openSession
}

func (x *sessionIndex) add(open *openSession) {
	x.mu.Lock()
	x.byID[open.ss.ID()] = open
	x.mu.Unlock()
}

func (x *sessionIndex) remove(open *openSession) {
	x.mu.Lock()
	if x.byID[open.ss.ID()] == open {
		delete(x.byID, open.ss.ID())
	}
	x.mu.Unlock()
}

// get returns the open session with id, or nil.
func (x *sessionIndex) get(id string) *openSession {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.byID[id]
}

// len is how many sessions the index holds.
func (x *sessionIndex) len() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return len(x.byID)
}

// of returns the open session a request names in Mcp-Session-Id, if it was opened under p's binding.
// Any other (unknown, closed, another principal's) is the SDK's to answer.
func (x *sessionIndex) of(r *http.Request, p *principal) *openSession {
	id := r.Header.Get("Mcp-Session-Id")
	if id == "" || p == nil {
		return nil
	}
	if open := x.get(id); open != nil && open.binding == p.binding {
		return open
	}
	return nil
}

// sessionUse is a Streamable HTTP session's use by HTTP requests, which decides when it has been idle for
// Config.SessionIdleTimeout (the SDK's own timer is off: see New). As the SDK counted it, a session is in
// use while any POST of it is served; an open GET stream does not count.
type sessionUse struct {
	mu sync.Mutex
	// posts counts the POSTs of the session being served, its opening one included.
	posts int
	// gets counts its GET streams being served: requests the session's instances send mid-call reach
	// the client there when the call is not served on its POST's stream.
	gets int
	// idleSince is when posts last fell to 0; timer closes the session once it has been idle for the
	// timeout, and is nil until the opening POST ends.
	idleSince time.Time
	timer     *time.Timer
	// ended says the session is closing or closed: it takes no more calls before the SDK.
	ended bool
	// calls are the session's requests in progress by JSON-RPC id: those the gateway serves with the
	// function that cancels them, those the SDK serves with nil.
	calls map[jsonrpc.ID]context.CancelFunc
}

// startPOST counts a POST of the session that begins, whose requests have these ids; it pauses the idle
// timer. It reports false, counting nothing, when the session has ended.
func (o *openSession) startPOST(ids []jsonrpc.ID) bool {
	u := &o.use
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.ended {
		return false
	}
	u.posts++
	if u.timer != nil {
		u.timer.Stop()
	}
	for _, id := range ids {
		if _, ok := u.calls[id]; !ok {
			if u.calls == nil {
				u.calls = make(map[jsonrpc.ID]context.CancelFunc)
			}
			u.calls[id] = nil
		}
	}
	return true
}

// endPOST counts a POST of the session that ended, with the ids it began with; the idle timeout starts
// again once no POST of the session is served.
func (o *openSession) endPOST(timeout time.Duration, ids ...jsonrpc.ID) {
	u := &o.use
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, id := range ids {
		if cancel, ok := u.calls[id]; ok && cancel == nil {
			delete(u.calls, id)
		}
	}
	if u.posts--; u.posts > 0 || u.ended {
		return
	}
	u.idleSince = time.Now()
	if u.timer == nil {
		u.timer = time.AfterFunc(timeout, func() { o.expire(timeout) })
		return
	}
	u.timer.Reset(timeout)
}

// expire closes the session if it has been idle for timeout. A timer that fired as a POST began, and
// ran after that POST ended, finds the session idle for less and leaves it to the timer reset then.
func (o *openSession) expire(timeout time.Duration) {
	u := &o.use
	u.mu.Lock()
	idle := u.posts == 0 && !u.ended && time.Since(u.idleSince) >= timeout
	u.mu.Unlock()
	if idle {
		o.close()
	}
}

// close closes the session: the calls the gateway serves on it are cancelled, as the SDK cancels its own.
func (o *openSession) close() {
	if o.streamable {
		o.closed()
	}
	_ = o.ss.Close()
}

// closed marks the session ended and cancels the calls the gateway serves on it.
func (o *openSession) closed() {
	u := &o.use
	u.mu.Lock()
	u.ended = true
	if u.timer != nil {
		u.timer.Stop()
	}
	var cancels []context.CancelFunc
	for _, cancel := range u.calls {
		if cancel != nil {
			cancels = append(cancels, cancel)
		}
	}
	u.mu.Unlock()
	for _, cancel := range cancels {
		cancel()
	}
}

// startGET and endGET count a GET stream of the session being served.
func (o *openSession) startGET() { o.use.mu.Lock(); o.use.gets++; o.use.mu.Unlock() }
func (o *openSession) endGET()   { o.use.mu.Lock(); o.use.gets--; o.use.mu.Unlock() }

// errDuplicateCall says a call's id is already in progress on the session, where the gateway serves
// it, so that the SDK does not know it.
var errDuplicateCall = errors.New("duplicate in-flight request ID")

// startCall counts the POST of a call the gateway serves, with the function that cancels it. It fails
// when the session has ended, and with errDuplicateCall when a call of the gateway's with that id is in
// progress; a call of the SDK's with that id is the SDK's to refuse.
func (o *openSession) startCall(id jsonrpc.ID, cancel context.CancelFunc) error {
	u := &o.use
	u.mu.Lock()
	defer u.mu.Unlock()
	if mine, ok := u.calls[id]; ok {
		if mine != nil {
			return errDuplicateCall
		}
		return errors.New("the SDK serves a call with that id")
	}
	if u.ended {
		return errors.New("session ended")
	}
	u.posts++
	if u.timer != nil {
		u.timer.Stop()
	}
	if u.calls == nil {
		u.calls = make(map[jsonrpc.ID]context.CancelFunc)
	}
	u.calls[id] = cancel
	return nil
}

// endCall forgets a call the gateway served, and reports whether the session is still open to answer it.
func (o *openSession) endCall(id jsonrpc.ID, timeout time.Duration) bool {
	o.use.mu.Lock()
	delete(o.use.calls, id)
	open := !o.use.ended
	o.use.mu.Unlock()
	o.endPOST(timeout)
	return open
}

// cancelCall cancels the call with id that the gateway serves on the session, if there is one: the
// client's notifications/cancelled, which the SDK would apply to its own calls.
func (o *openSession) cancelCall(id jsonrpc.ID) {
	o.use.mu.Lock()
	cancel := o.use.calls[id]
	o.use.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// mayBeAsked reports whether the session's client declared a capability its instances may use mid-call
// (sampling, elicitation, roots) and holds no GET stream for those requests to travel on.
func (o *openSession) mayBeAsked(caps *mcp.ClientCapabilities) bool {
	if caps == nil || (caps.Sampling == nil && caps.Elicitation == nil && caps.RootsV2 == nil) {
		return false
	}
	o.use.mu.Lock()
	defer o.use.mu.Unlock()
	return o.use.gets == 0
}

// sessionEraVersions are the Mcp-Protocol-Version values of the calls served before the SDK; without the
// header, the SDK reads a call as of 2025-03-26.
var sessionEraVersions = map[string]bool{"": true, "2025-03-26": true, "2025-06-18": true, "2025-11-25": true}

// serveSessionCall answers a tools/call of a session-era Streamable HTTP session itself, as the SDK's
// server would answer it, and reports whether it did. It leaves to the SDK: a session it does not find
// open under the caller's binding (the SDK answers 404 or 403), a session of search mode, a request the
// SDK's handler would refuse (headers, a version of another era, a malformed or unknown-field-typed
// body), a call of a tool that is not listed or whose server is stopped or needs an account, and what
// needs the POST's own stream: a progress token, a session that set a log level, and a client that may
// be asked something mid-call (sampling, elicitation, roots) while it holds no GET stream.
func (g *Gateway) serveSessionCall(w http.ResponseWriter, r *http.Request, p *principal, req *jsonrpc.Request) bool {
	open := g.sessions.of(r, p)
	if open == nil || g.sessionCallsToSDK || open.search || !acceptsStreamable(r) || len(r.Header.Values("Last-Event-ID")) > 0 ||
		!sessionEraVersions[r.Header.Get("Mcp-Protocol-Version")] {
		return false
	}
	if _, err := toolsModeOf(r, p); err != nil {
		return false // serveStreamable refuses it
	}
	ip := open.ss.InitializeParams()
	if ip == nil || ip.ProtocolVersion >= "2026-07-28" || open.mayBeAsked(ip.Capabilities) {
		return false
	}
	var params struct {
		Meta           map[string]any  `json:"_meta"`
		Name           string          `json:"name"`
		Arguments      json.RawMessage `json:"arguments"`
		RequestState   json.RawMessage `json:"requestState"`
		InputResponses json.RawMessage `json:"inputResponses"`
		Task           json.RawMessage `json:"task"`
	}
	if len(req.Params) == 0 || sdkjson.Unmarshal(req.Params, &params) != nil || params.RequestState != nil ||
		params.InputResponses != nil || params.Task != nil {
		return false
	}
	for k := range params.Meta {
		// A progress token needs the POST's stream; the keys of the 2026-07-28 era the SDK checks.
		if k == "progressToken" || strings.HasPrefix(k, "io.modelcontextprotocol/") {
			return false
		}
	}
	us, release := g.acquire(p.teamID, p.userID)
	defer release()
	if open.us != us || us.sessionLevel(open.ss) {
		return false
	}
	us.syncMu.Lock()
	reg, ok := us.tools[params.Name]
	us.syncMu.Unlock()
	if !ok || reg.rt.inst.ConnectAccountURL != "" || reg.rt.inst.EmergencyStop != "" {
		return false
	}
	// The SDK's handler does not tie a session's call to its POST: a client that goes away cancels it
	// with notifications/cancelled, and a session that closes cancels it.
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	defer cancel()
	err := open.startCall(req.ID, cancel)
	if err != nil && !errors.Is(err, errDuplicateCall) {
		return false
	}
	// The SDK's answer is on the event stream it opens for a POST with a call; it sets the stream's headers
	// before it checks the call's id.
	h := w.Header()
	h.Set("Cache-Control", "no-cache, no-transform")
	h.Set("Content-Type", "text/event-stream")
	h.Set("Connection", "keep-alive")
	if err != nil {
		writeSDKError(w, http.StatusBadRequest, req.ID, &jsonrpc.Error{Code: jsonrpc.CodeInvalidRequest,
			Message: fmt.Sprintf("duplicate in-flight request ID %v", req.ID.Raw())})
		return true
	}
	call := &mcp.CallToolRequest{
		Session: open.ss,
		Params:  &mcp.CallToolParamsRaw{Meta: params.Meta, Name: params.Name, Arguments: params.Arguments},
		Extra:   &mcp.RequestExtra{TokenInfo: tokenInfoOf(p), Header: r.Header},
	}
	g.sessionCallsServed.Add(1)
	var logged encodedResult
	res, err := g.serveCall(context.WithValue(ctx, encodedResultKey{}, &logged), us, reg.rt, call)
	if !open.endCall(req.ID, g.cfg.SessionIdleTimeout) {
		return true // a closed session's stream ends without its answer, as the SDK's does
	}
	var answer any = res
	if raw, ok := logged.reusable(res); ok && err == nil {
		answer = raw
	}
	if err == nil && res != nil && res.Content == nil {
		res.Content = []mcp.Content{} // as the SDK's server sends it
	}
	if err == nil && res == nil {
		err = errors.New("the tool call returned no result")
	}
	writeEvent(w, sdkResponse(req.ID, answer, err))
	return true
}

type encodedResultKey struct{}

// encodedResult, in a call's context, receives the result serveCall returns with its JSON as the call's
// request log encoded it, so that a caller that sends the result does not encode it a second time.
type encodedResult struct {
	res  *mcp.CallToolResult
	json []byte
}

// reusable returns the logged encoding of res when it is what the SDK would send: the same result, with
// its content. The HTML escaping of json.Marshal changes nothing: a CallToolResult encodes itself with
// json.Marshal, for the SDK's encoder as for the log.
func (e *encodedResult) reusable(res *mcp.CallToolResult) (json.RawMessage, bool) {
	if e.res != res || res == nil || res.Content == nil || len(e.json) == 0 {
		return nil, false
	}
	return e.json, true
}

// sessionLevel reports whether ss set a log level, whose messages travel on the stream of the POST
// of the call that causes them.
func (us *userServer) sessionLevel(ss *mcp.ServerSession) bool {
	us.bridge.mu.Lock()
	defer us.bridge.mu.Unlock()
	_, ok := us.bridge.levels[ss]
	return ok
}

// tokenInfoOf is the TokenInfo of p's requests: what the SDK's transports bind sessions to and hand to
// handlers, with the principal for callerOf.
func tokenInfoOf(p *principal) *auth.TokenInfo {
	return &auth.TokenInfo{Scopes: p.scopes, UserID: p.binding, Extra: map[string]any{principalExtraKey: p}}
}

// sdkWireMessage is a JSON-RPC response as the SDK's jsonrpc2 package writes it (wireCombined).
type sdkWireMessage struct {
	VersionTag string          `json:"jsonrpc"`
	ID         any             `json:"id,omitempty"`
	Result     json.RawMessage `json:"result,omitempty"`
	Error      *jsonrpc.Error  `json:"error,omitempty"`
}

// sdkResponse encodes the response to the call with id as the SDK's server encodes it: without HTML
// escaping, and an error as the SDK's jsonrpc2 package turns it into a wire error.
func sdkResponse(id jsonrpc.ID, res any, err error) []byte {
	msg := sdkWireMessage{VersionTag: "2.0", ID: id.Raw()}
	if err != nil {
		msg.Error = wireError(err)
	} else if raw, merr := encodeNoEscape(res); merr != nil {
		msg.Error = &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: "the server's answer could not be encoded"}
	} else if n, ok := msg.ID.(int64); ok {
		return rpcResponse(strconv.AppendInt(nil, n, 10), raw)
	} else {
		msg.Result = raw
	}
	data, err := encodeNoEscape(msg)
	if err != nil {
		return nil
	}
	return data
}

// rpcResponse is the JSON-RPC response with the encoded id and result as an encoder writes it, without a
// second pass over the result.
func rpcResponse(id, result []byte) []byte {
	out := make([]byte, 0, len(id)+len(result)+32)
	out = append(append(append(out, `{"jsonrpc":"2.0","id":`...), id...), `,"result":`...)
	return append(append(out, result...), '}')
}

// wireError is an error as the SDK's jsonrpc2 package sends it (toWireError): a *jsonrpc.Error as it is,
// anything else with its text and the code of a wrapped one.
func wireError(err error) *jsonrpc.Error {
	if jerr, ok := err.(*jsonrpc.Error); ok {
		return jerr
	}
	out := &jsonrpc.Error{Message: err.Error()}
	var wrapped *jsonrpc.Error
	if errors.As(err, &wrapped) {
		out.Code = wrapped.Code
	}
	return out
}

// encodeNoEscape is json.Marshal without HTML escaping, as the SDK encodes what it sends.
func encodeNoEscape(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

// writeEvent writes data as the SDK writes a message on an event stream. The SDK flushes each event,
// since a stream may carry more; this one ends with its only event, and net/http sends the answer in one
// write (with a Content-Length rather than chunks) once the handler returns, a system call less.
func writeEvent(w http.ResponseWriter, data []byte) {
	buf := make([]byte, 0, len("event: message\ndata: \n\n")+len(data))
	buf = append(buf, "event: message\ndata: "...)
	buf = append(buf, data...)
	buf = append(buf, "\n\n"...)
	_, _ = w.Write(buf)
}

// writeSDKError answers with a JSON-RPC error as the SDK's handler writes one before any stream.
func writeSDKError(w http.ResponseWriter, status int, id jsonrpc.ID, jerr *jsonrpc.Error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(sdkResponse(id, nil, jerr))
}
