//lint:file-ignore SA1019 sampling and roots are deprecated only from the 2026-07-28 protocol on; a task of a session-era server still asks for them

package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/orrery/orrery/services/satellite/internal/sdkjson"
)

// The tasks extension (io.modelcontextprotocol/tasks, SEP-2663) is how clients of the stateless
// 2026-07-28 era run tools as tasks. The endpoint speaks it to them and translates to the experimental
// form of the 2025-11-25 protocol (tasks.go), which is what servers with tasks speak today:
//
//   - The server decides: a tools/call of a client that declared the extension (in the request's
//     _meta clientCapabilities) for a tool whose server declared execution.taskSupport "optional" or
//     "required", and takes task-augmented calls, goes downstream with params.task, and the client gets a
//     flat CreateTaskResult (resultType "task", ttlMs, pollIntervalMs) under a sealed id. Any other call
//     is a plain call, which the SDK serves; a "required" tool of a client without the extension is
//     refused with MissingRequiredClientCapability (-32021).
//   - Requests the server sends while serving the call, before it answers with its task (input it needs
//     to decide), reach the client as input_required rounds, as for any call (inputrequired.go).
//   - The gateway keeps a record per task: right after creation it asks the server for tasks/result,
//     which blocks until the task ends (and is where servers deliver what a task asks its client), and
//     inlines the result, or the JSON-RPC error as status "failed", in tasks/get. A request the server
//     sends for the task (elicitation, sampling, roots, with the related-task _meta key) is held as one of
//     the task's inputRequests until the client answers it with tasks/update. tasks/cancel cancels the
//     task downstream and acknowledges with an empty result, also for a task that already ended.
//   - tasks/result and tasks/list do not exist in the extension: -32601.
//
// Nothing is served this way for a user none of whose servers takes task-augmented calls: the methods
// are unknown there, as before. Task ids are sealed to team, user and instance like the experimental
// form's, so another user's or team's id is "task not found"; the records live in this process, as the
// instance processes whose tasks they follow do.

const (
	// extensionTasks is the tasks extension's identifier.
	extensionTasks = "io.modelcontextprotocol/tasks"

	methodTasksUpdate = "tasks/update"

	// extTaskTTL is the time to live the gateway asks of a server for a task it creates for a client.
	extTaskTTL = 10 * time.Minute
	// maxExtTaskLife bounds how long a task record is kept, whatever the server's ttl says.
	maxExtTaskLife = time.Hour
	// maxExtTasksPerUser bounds the task records of one user of a team: finished ones count until their
	// ttl passes, because they hold their results.
	maxExtTasksPerUser = 200
	// maxTaskInputs bounds the requests one task may have pending for its client.
	maxTaskInputs = 32
	// relatedTaskWait bounds how long a request of a server for one of its tasks waits for the gateway to
	// record the task being created, which it does when the server's answer to tools/call has arrived.
	relatedTaskWait = 5 * time.Second
)

// Task statuses.
const (
	taskWorking       = "working"
	taskInputRequired = "input_required"
	taskCompleted     = "completed"
	taskFailed        = "failed"
	taskCancelled     = "cancelled"
)

// taskUpdateParams are the params of tasks/update.
type taskUpdateParams struct {
	Meta           map[string]any  `json:"_meta,omitempty"`
	TaskID         string          `json:"taskId"`
	InputResponses json.RawMessage `json:"inputResponses"`
}

// extTask is the gateway's record of a task it created for a client of the extension.
type extTask struct {
	owner      userKey
	instanceID string
	downstream string
	cs         *mcp.ClientSession // the connection whose requests name the task
	caps       *mcp.ClientCapabilities
	created    time.Time
	ttl        *int64 // milliseconds; nil means unlimited
	poll       *int64
	stopWait   context.CancelFunc

	// Guarded by extTasks.mu.
	status    string // working, or a terminal status; input_required while inputs are pending
	message   string
	updated   time.Time
	result    json.RawMessage
	failure   *jsonrpc.Error
	inputs    map[string]*taskInput
	nextInput int
	ended     chan struct{} // closed when the task reaches a terminal status
}

// taskInput is a request of the server for a task, waiting for the client's answer.
type taskInput struct {
	method string
	req    mcp.InputRequest
	answer chan mcp.Result // buffered
}

type extTaskKey struct{ instanceID, downstream string }

type sessionTaskKey struct {
	cs         *mcp.ClientSession
	downstream string
}

// extTasks are the task records of the gateway.
type extTasks struct {
	mu        sync.Mutex
	byID      map[extTaskKey]*extTask
	bySession map[sessionTaskKey]*extTask
	perUser   map[userKey]int
	// creating counts the task-augmented calls in flight on each connection, whose tasks the server may
	// ask for input before the gateway has recorded them.
	creating map[*mcp.ClientSession]int
	added    chan struct{} // closed and replaced when a task is recorded
}

func newExtTasks() *extTasks {
	return &extTasks{byID: map[extTaskKey]*extTask{}, bySession: map[sessionTaskKey]*extTask{},
		perUser: map[userKey]int{}, creating: map[*mcp.ClientSession]int{}, added: make(chan struct{})}
}

// declaresTasks reports whether a request's _meta declares the tasks extension among the client's
// capabilities.
func declaresTasks(meta map[string]any) bool {
	caps, _ := meta[metaClientCapabilities].(map[string]any)
	ext, _ := caps["extensions"].(map[string]any)
	_, ok := ext[extensionTasks]
	return ok
}

// metaCapabilities returns the client capabilities a request's _meta declares.
func metaCapabilities(meta map[string]any) *mcp.ClientCapabilities {
	caps := &mcp.ClientCapabilities{}
	raw, ok := meta[metaClientCapabilities].(map[string]any)
	if !ok {
		return caps
	}
	data, err := json.Marshal(raw)
	if err != nil || json.Unmarshal(data, caps) != nil {
		return &mcp.ClientCapabilities{}
	}
	if _, ok := raw["roots"]; ok {
		caps.RootsV2 = &mcp.RootCapabilities{ListChanged: caps.Roots.ListChanged}
	}
	return caps
}

// userCallsTasks reports whether one of the user's online instances takes task-augmented tool calls.
func (g *Gateway) userCallsTasks(us *userServer) bool {
	online, _ := us.instances()
	for _, inst := range online {
		if c, ok := g.taskCapability(inst.ID); ok && c.Requests.Tools.Call != nil {
			return true
		}
	}
	return false
}

// isTaskSurface reports whether a request of the 2026-07-28 era is one serveTaskExtension may answer.
func isTaskSurface(req *jsonrpc.Request) bool {
	switch req.Method {
	case "tools/call", methodTasksGet, methodTasksUpdate, methodTasksCancel, methodTasksResult, methodTasksList:
		return true
	}
	return false
}

// serveTaskExtension answers a request of the stateless 2026-07-28 era on the tasks surface, and reports
// whether it did; what it leaves, the SDK serves, or the endpoint answers as unknown.
func (g *Gateway) serveTaskExtension(w http.ResponseWriter, r *http.Request, p *principal, req *jsonrpc.Request) bool {
	tb, ok := g.cfg.Backend.(TaskBackend)
	if !ok {
		return false
	}
	us, release := g.acquire(p.teamID, p.userID)
	defer release()
	if req.Method == "tools/call" {
		return g.extCall(w, r, p, us, tb, req)
	}
	if !g.userCallsTasks(us) {
		return false
	}
	switch req.Method {
	case methodTasksResult, methodTasksList:
		writeRPCError(w, http.StatusNotFound, req.ID, jsonrpc.CodeMethodNotFound,
			"method not found: "+req.Method+" is not part of the tasks extension; tasks/get inlines results")
		return true
	}
	var params struct {
		Meta           map[string]any  `json:"_meta"`
		TaskID         *string         `json:"taskId"`
		InputResponses json.RawMessage `json:"inputResponses"`
	}
	if sdkjson.Unmarshal(req.Params, &params) != nil || params.TaskID == nil {
		writeRPCError(w, http.StatusOK, req.ID, jsonrpc.CodeInvalidParams, req.Method+`: params must be an object with a string "taskId"`)
		return true
	}
	if err := checkRoutingHeaders(r.Header, req.Method, *params.TaskID); err != nil {
		writeRPCError(w, http.StatusBadRequest, req.ID, mcp.CodeHeaderMismatch, err.Error())
		return true
	}
	if !declaresTasks(params.Meta) {
		writeMissingTasks(w, req.ID, req.Method+" needs the "+extensionTasks+" extension")
		return true
	}
	t := g.openExtTask(us, *params.TaskID)
	if t == nil {
		writeRPCError(w, http.StatusOK, req.ID, errTaskNotFound.Code, errTaskNotFound.Message)
		return true
	}
	var res any
	switch req.Method {
	case methodTasksGet:
		res = g.ext.view(t, *params.TaskID, false)
	case methodTasksUpdate:
		if err := g.ext.answer(t, params.InputResponses); err != nil {
			writeRPCError(w, http.StatusOK, req.ID, err.Code, err.Message)
			return true
		}
		res = map[string]any{"resultType": "complete"}
	case methodTasksCancel:
		g.cancelExtTask(r.Context(), us, t)
		res = map[string]any{"resultType": "complete"}
	}
	writeRPCResult(w, req.ID, res)
	return true
}

// extCall serves a tools/call of the 2026-07-28 era that runs as a task, or refuses one that must and
// cannot; any other call it leaves to the SDK.
func (g *Gateway) extCall(w http.ResponseWriter, r *http.Request, p *principal, us *userServer, tb TaskBackend, req *jsonrpc.Request) bool {
	var params struct {
		Name           string          `json:"name"`
		Meta           map[string]any  `json:"_meta"`
		Arguments      json.RawMessage `json:"arguments"`
		RequestState   string          `json:"requestState"`
		InputResponses json.RawMessage `json:"inputResponses"`
	}
	// Most calls are of tools without tasks: the name alone decides, and the rest is decoded only after.
	var named struct {
		Name string `json:"name"`
	}
	if sdkjson.Unmarshal(req.Params, &named) != nil {
		return false
	}
	params.Name = named.Name
	if mode, _ := toolsModeOf(r, p); mode == ToolsSearch {
		return false
	}
	us.syncMu.Lock()
	reg, ok := us.tools[params.Name]
	us.syncMu.Unlock()
	if !ok || reg.rt.inst.ConnectAccountURL != "" || reg.rt.inst.EmergencyStop != "" {
		return false // callTool answers with the reason
	}
	support := tb.ToolTaskSupport(reg.rt.inst.ID, reg.rt.name)
	if support != "optional" && support != "required" {
		return false
	}
	if c, ok := g.taskCapability(reg.rt.inst.ID); !ok || c.Requests.Tools.Call == nil {
		return false
	}
	if sdkjson.Unmarshal(req.Params, &params) != nil {
		return false
	}
	if !declaresTasks(params.Meta) {
		if support == "required" {
			writeMissingTasks(w, req.ID, "the tool "+params.Name+" runs only as a task")
			return true
		}
		return false // a plain call, which the server runs synchronously
	}
	if err := checkRoutingHeaders(r.Header, "tools/call", params.Name); err != nil {
		writeRPCError(w, http.StatusBadRequest, req.ID, mcp.CodeHeaderMismatch, err.Error())
		return true
	}
	var responses mcp.InputResponseMap
	if len(params.InputResponses) > 0 && json.Unmarshal(params.InputResponses, &responses) != nil {
		writeRPCError(w, http.StatusOK, req.ID, jsonrpc.CodeInvalidParams, "inputResponses is not a map of input responses")
		return true
	}
	res, err := g.createExtTask(r.Context(), us, reg.rt, params.Arguments, params.Meta, params.RequestState, responses)
	writeRPCOutcome(w, req.ID, res, err)
	return true
}

// created is what a task-augmented call of the server's came back with, and on which connection.
type created struct {
	cs  *mcp.ClientSession
	res json.RawMessage
}

// createExtTask has rt's server create a task for the call, or continues the round state names, and
// returns what the client gets: a CreateTaskResult, an input_required result for a round, or a plain
// result when the server answered without a task.
func (g *Gateway) createExtTask(ctx context.Context, us *userServer, rt route, args json.RawMessage, meta map[string]any,
	state string, responses mcp.InputResponseMap) (any, error) {
	start := time.Now()
	call := &mcp.CallToolRequest{Params: &mcp.CallToolParamsRaw{Name: rt.name, Arguments: args}}
	set, pc := g.policyCall(ctx, us, call, rt)
	// A task is a tool call too: the team's policies decide before it reaches the server (once, when it
	// starts), and it is logged and counted like a call.
	if pc != nil && state == "" {
		if denial := set.Check(ctx, pc, g.limiter); denial != nil {
			res := g.refuse(ctx, us, rt, denial)
			d := time.Since(start)
			g.logCall(us, rt, args, res, nil, d, traceIDOf(ctx), callLog{denial: denial, redact: redactions(ctx, set, pc, rt)})
			g.metrics.observeCall(rt, outcomePolicyDenied, d)
			return completeResult(res), nil
		}
	}
	if state == "" && !g.ext.room(us.key) {
		return nil, &jsonrpc.Error{Code: jsonrpc.CodeInternalError,
			Message: "too many of your tasks are kept on this endpoint; wait for some to end or expire"}
	}
	caps := metaCapabilities(meta)
	down := map[string]json.RawMessage{"name": mustJSON(rt.name), "task": mustJSON(map[string]any{"ttl": extTaskTTL.Milliseconds()})}
	if len(args) > 0 {
		down["arguments"] = args
	}
	if fwd := forwardRawMeta(mustJSON(meta)); fwd != nil {
		down["_meta"] = fwd
	}
	res, in, err := g.roundTrip(ctx, us, rt, state, responses, func(ctx context.Context) (mcp.Result, error) {
		// What the server asks while it serves the call is the client's to answer, in rounds; the
		// caller is no session of the SDK's, so its capabilities come along.
		cs, done, err := g.open(withCallerCaps(ctx, caps), us, rt, new(mcp.ServerSession))
		if err != nil {
			return nil, err
		}
		defer done()
		g.ext.beginCreate(cs)
		raw, err := g.taskRequest(ctx, rt, "tools/call", down)
		if err != nil {
			g.ext.endCreate(cs)
			return nil, err
		}
		// The task's first requests may overtake its record: they wait for it a while, however this
		// call ends (its client may be gone before the record is made).
		time.AfterFunc(relatedTaskWait, func() { g.ext.endCreate(cs) })
		return &mcp.CallToolResult{StructuredContent: created{cs: cs, res: raw}}, nil
	})
	if in != nil {
		return map[string]any{"resultType": "input_required", "inputRequests": in.requests, "requestState": in.state}, nil
	}
	var out created
	if err == nil {
		out, _ = res.(*mcp.CallToolResult).StructuredContent.(created)
	}
	d := time.Since(start)
	var logged *mcp.CallToolResult
	if err == nil {
		logged = &mcp.CallToolResult{StructuredContent: out.res}
	}
	g.logCall(us, rt, args, logged, err, d, traceIDOf(ctx), callLog{redact: redactions(ctx, set, pc, rt)})
	g.metrics.observeCall(rt, callOutcome(ctx, logged, err), d)
	if err != nil {
		return nil, err
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(out.res, &obj) != nil {
		return nil, errors.New("the MCP server's answer is not a JSON object")
	}
	if obj["task"] == nil {
		// The server ran the call without a task, as it may: the client gets its result.
		obj["resultType"] = mustJSON("complete")
		return obj, nil
	}
	var task struct {
		TaskID        string   `json:"taskId"`
		Status        string   `json:"status"`
		StatusMessage string   `json:"statusMessage"`
		TTL           *float64 `json:"ttl"`
		PollInterval  *float64 `json:"pollInterval"`
	}
	if json.Unmarshal(obj["task"], &task) != nil || task.TaskID == "" || len(task.TaskID) > maxTaskIDBytes {
		return nil, errors.New("the MCP server's answer carries no valid task id")
	}
	t := &extTask{owner: us.key, instanceID: rt.inst.ID, downstream: task.TaskID, cs: out.cs, caps: caps,
		created: g.cfg.Now(), ttl: millis(task.TTL), poll: millis(task.PollInterval),
		status: taskWorking, message: task.StatusMessage, inputs: map[string]*taskInput{}, ended: make(chan struct{})}
	t.updated = t.created
	switch task.Status {
	case taskCompleted, taskFailed, taskCancelled, "":
		// Terminal at once: the record learns how from tasks/result.
	default:
		t.status = task.Status
		if t.status == taskInputRequired {
			t.status = taskWorking // input_required is the gateway's to say, once it holds the requests
		}
	}
	life := maxExtTaskLife
	if t.ttl != nil && time.Duration(*t.ttl)*time.Millisecond < life {
		life = time.Duration(*t.ttl) * time.Millisecond
	}
	waitCtx, stop := context.WithTimeout(context.WithoutCancel(ctx), life)
	t.stopWait = stop
	sealed := g.tasks.seal(us.key.teamID, us.key.userID, rt.inst.ID, task.TaskID)
	g.ext.add(t, life)
	go g.awaitTaskResult(waitCtx, t, rt)
	view := g.ext.view(t, sealed, true)
	return view, nil
}

// awaitTaskResult waits for the server's result of t and records it.
func (g *Gateway) awaitTaskResult(ctx context.Context, t *extTask, rt route) {
	defer t.stopWait()
	res, err := g.taskRequest(ctx, rt, methodTasksResult, map[string]json.RawMessage{"taskId": mustJSON(t.downstream)})
	var failure *jsonrpc.Error
	switch {
	case err == nil:
		res = withoutRelatedTask(res)
	case errors.As(err, &failure):
	default:
		failure = errUnavailable
	}
	g.ext.finish(t, res, failure, g.cfg.Now())
}

// cancelExtTask cancels t downstream, unless it has ended, and records it cancelled.
func (g *Gateway) cancelExtTask(ctx context.Context, us *userServer, t *extTask) {
	if !g.ext.cancel(t, g.cfg.Now()) {
		return // it had ended: cancelling is idempotent
	}
	rt, ok := us.ownInstance(t.instanceID)
	if !ok {
		return
	}
	// The server's answer changes nothing the client sees: the task is cancelled for it.
	_, _ = g.taskRequest(ctx, rt, methodTasksCancel, map[string]json.RawMessage{"taskId": mustJSON(t.downstream)})
}

// openExtTask returns the record behind a sealed id of the user's, or nil.
func (g *Gateway) openExtTask(us *userServer, public string) *extTask {
	instanceID, downstream, ok := g.tasks.open(us.key.teamID, us.key.userID, public)
	if !ok {
		return nil
	}
	g.ext.mu.Lock()
	defer g.ext.mu.Unlock()
	t := g.ext.byID[extTaskKey{instanceID, downstream}]
	if t == nil || t.owner != us.key {
		return nil
	}
	return t
}

// taskInput holds a request of a server for one of the extension's tasks (it names the task in its
// related-task _meta key) until the client answers it with tasks/update. It reports false for a request
// of no such task.
func (g *Gateway) taskInput(ctx context.Context, cs *mcp.ClientSession, method string, params mcp.Params) (mcp.Result, error, bool) {
	if params == nil || reflect.ValueOf(params).IsNil() {
		return nil, nil, false // roots/list may come without params
	}
	related, _ := params.GetMeta()[relatedTaskMeta].(map[string]any)
	id, _ := related["taskId"].(string)
	if id == "" || cs == nil {
		return nil, nil, false
	}
	t := g.ext.await(ctx, cs, id)
	if t == nil {
		return nil, nil, false
	}
	if err := supported(t.caps, params); err != nil {
		return nil, err, true
	}
	ir, ok := params.(mcp.InputRequest)
	if !ok {
		return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: "unexpected parameters"}, true
	}
	key, in, err := g.ext.hold(t, method, withoutTaskMeta(ir), g.cfg.Now())
	if err != nil {
		return nil, err, true
	}
	select {
	case res := <-in.answer:
		return res, nil, true
	case <-t.ended:
		return nil, &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: "the task ended before the client answered"}, true
	case <-ctx.Done():
		g.ext.drop(t, key, g.cfg.Now())
		return nil, ctx.Err(), true
	}
}

// withoutTaskMeta returns a copy of a server's request without the related-task key, which names the
// server's own id of the task.
func withoutTaskMeta(ir mcp.InputRequest) mcp.InputRequest {
	strip := func(m mcp.Meta) mcp.Meta {
		if _, ok := m[relatedTaskMeta]; !ok {
			return m
		}
		out := mcp.Meta{}
		for k, v := range m {
			if k != relatedTaskMeta {
				out[k] = v
			}
		}
		if len(out) == 0 {
			return nil
		}
		return out
	}
	switch p := ir.(type) {
	case *mcp.ElicitParams:
		c := *p
		c.Meta = strip(p.Meta)
		return &c
	case *mcp.CreateMessageWithToolsParams:
		c := *p
		c.Meta = strip(p.Meta)
		return &c
	case *mcp.CreateMessageParams:
		c := *p
		c.Meta = strip(p.Meta)
		return &c
	case *mcp.ListRootsParams:
		c := *p
		c.Meta = strip(p.Meta)
		return &c
	}
	return ir
}

// withoutRelatedTask removes the related-task key from a result's _meta: the task's id is at the root of
// tasks/get already, and the server's own id must not reach the client.
func withoutRelatedTask(res json.RawMessage) json.RawMessage {
	var obj map[string]json.RawMessage
	if json.Unmarshal(res, &obj) != nil {
		return res
	}
	var meta map[string]json.RawMessage
	if json.Unmarshal(obj["_meta"], &meta) != nil || meta[relatedTaskMeta] == nil {
		return res
	}
	delete(meta, relatedTaskMeta)
	if len(meta) == 0 {
		delete(obj, "_meta")
	} else {
		obj["_meta"] = mustJSON(meta)
	}
	return mustJSON(obj)
}

// room reports whether the user may have one more task recorded.
func (e *extTasks) room(owner userKey) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.perUser[owner] < maxExtTasksPerUser
}

func (e *extTasks) beginCreate(cs *mcp.ClientSession) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.creating[cs]++
}

func (e *extTasks) endCreate(cs *mcp.ClientSession) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.creating[cs]--; e.creating[cs] <= 0 {
		delete(e.creating, cs)
	}
	e.changedLocked()
}

func (e *extTasks) changedLocked() {
	close(e.added)
	e.added = make(chan struct{})
}

// add records t and forgets it after life.
func (e *extTasks) add(t *extTask, life time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.byID[extTaskKey{t.instanceID, t.downstream}] = t
	e.bySession[sessionTaskKey{t.cs, t.downstream}] = t
	e.perUser[t.owner]++
	e.changedLocked()
	time.AfterFunc(life, func() { e.remove(t) })
}

func (e *extTasks) remove(t *extTask) {
	t.stopWait()
	e.mu.Lock()
	defer e.mu.Unlock()
	k := extTaskKey{t.instanceID, t.downstream}
	if e.byID[k] != t {
		return
	}
	delete(e.byID, k)
	delete(e.bySession, sessionTaskKey{t.cs, t.downstream})
	if e.perUser[t.owner]--; e.perUser[t.owner] <= 0 {
		delete(e.perUser, t.owner)
	}
	t.endLocked()
}

// await returns the task cs's server names by id, waiting while a call that may create it is in flight
// on cs, for relatedTaskWait at most.
func (e *extTasks) await(ctx context.Context, cs *mcp.ClientSession, id string) *extTask {
	timeout := time.NewTimer(relatedTaskWait)
	defer timeout.Stop()
	e.mu.Lock()
	defer e.mu.Unlock()
	for {
		if t := e.bySession[sessionTaskKey{cs, id}]; t != nil {
			return t
		}
		if e.creating[cs] == 0 {
			return nil
		}
		changed := e.added
		e.mu.Unlock()
		select {
		case <-changed:
		case <-timeout.C:
			e.mu.Lock()
			return e.bySession[sessionTaskKey{cs, id}]
		case <-ctx.Done():
			e.mu.Lock()
			return nil
		}
		e.mu.Lock()
	}
}

// terminal reports whether status ends a task.
func terminal(status string) bool {
	return status == taskCompleted || status == taskFailed || status == taskCancelled
}

// endLocked closes t.ended once.
func (t *extTask) endLocked() {
	select {
	case <-t.ended:
	default:
		close(t.ended)
	}
}

// finish records the outcome of t, unless it was cancelled.
func (e *extTasks) finish(t *extTask, res json.RawMessage, failure *jsonrpc.Error, now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if terminal(t.status) {
		return
	}
	t.status, t.updated, t.inputs = taskCompleted, now, map[string]*taskInput{}
	if failure != nil {
		t.status, t.failure = taskFailed, failure
	} else {
		t.result = res
	}
	t.endLocked()
}

// cancel records t cancelled and reports whether it was still running.
func (e *extTasks) cancel(t *extTask, now time.Time) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if terminal(t.status) {
		return false
	}
	t.status, t.updated, t.inputs = taskCancelled, now, map[string]*taskInput{}
	t.endLocked()
	return true
}

// hold adds a server's request to t's pending inputs.
func (e *extTasks) hold(t *extTask, method string, req mcp.InputRequest, now time.Time) (string, *taskInput, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case terminal(t.status):
		return "", nil, &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: "the task has ended"}
	case len(t.inputs) >= maxTaskInputs:
		return "", nil, &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: "too many requests of this task wait for the client"}
	}
	t.nextInput++
	key := "input-" + strconv.Itoa(t.nextInput)
	in := &taskInput{method: method, req: req, answer: make(chan mcp.Result, 1)}
	t.inputs[key] = in
	t.updated = now
	return key, in, nil
}

// drop forgets a pending input whose server gave up on it.
func (e *extTasks) drop(t *extTask, key string, now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := t.inputs[key]; ok {
		delete(t.inputs, key)
		t.updated = now
	}
}

// answer delivers the client's responses to t's pending inputs; keys of no pending input are ignored.
func (e *extTasks) answer(t *extTask, raw json.RawMessage) *jsonrpc.Error {
	var responses map[string]json.RawMessage
	if len(raw) == 0 || sdkjson.Unmarshal(raw, &responses) != nil || responses == nil {
		return &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: `tasks/update: "inputResponses" must be an object`}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	type delivery struct {
		key string
		in  *taskInput
		res mcp.Result
	}
	var ready []delivery
	for key, r := range responses {
		in := t.inputs[key]
		if in == nil {
			continue
		}
		var m mcp.InputResponseMap
		if json.Unmarshal(mustJSON(map[string]json.RawMessage{key: r}), &m) != nil {
			return &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: "inputResponses[" + strconv.Quote(key) + "] is not an input response"}
		}
		res, ok := m[key].(mcp.Result)
		if !ok || !answers(in.method, res) {
			return &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: "inputResponses[" + strconv.Quote(key) + "] does not answer a " + in.method + " request"}
		}
		ready = append(ready, delivery{key, in, res})
	}
	// All or nothing: a response that does not fit refuses the update before any is delivered.
	for _, d := range ready {
		d.in.answer <- d.res
		delete(t.inputs, d.key)
	}
	if len(ready) > 0 {
		t.updated = time.Now()
	}
	return nil
}

// answers reports whether res is an answer to a request of method.
func answers(method string, res mcp.Result) bool {
	switch res.(type) {
	case *mcp.ElicitResult:
		return method == methodElicit
	case *mcp.CreateMessageWithToolsResult, *mcp.CreateMessageResult:
		return method == methodCreateMessage
	case *mcp.ListRootsResult:
		return method == methodListRoots
	}
	return false
}

// view is the task as a tasks/get answer (a DetailedTask), or as a CreateTaskResult when created.
func (e *extTasks) view(t *extTask, sealed string, created bool) map[string]any {
	e.mu.Lock()
	defer e.mu.Unlock()
	status := t.status
	if status == taskWorking && len(t.inputs) > 0 {
		status = taskInputRequired
	}
	v := map[string]any{"taskId": sealed, "status": status, "resultType": "complete",
		"createdAt": t.created.UTC().Format(time.RFC3339Nano), "lastUpdatedAt": t.updated.UTC().Format(time.RFC3339Nano),
		"ttlMs": t.ttl}
	if t.poll != nil {
		v["pollIntervalMs"] = *t.poll
	}
	if t.message != "" {
		v["statusMessage"] = t.message
	}
	if created {
		v["resultType"] = "task"
		return v
	}
	switch status {
	case taskInputRequired:
		requests := mcp.InputRequestMap{}
		for key, in := range t.inputs {
			requests[key] = in.req
		}
		v["inputRequests"] = requests
	case taskCompleted:
		v["result"] = t.result
	case taskFailed:
		v["error"] = t.failure
	}
	return v
}

// millis turns a duration in milliseconds as a server wrote it into a positive integer, or nil.
func millis(v *float64) *int64 {
	if v == nil || *v <= 0 || *v > float64(maxExtTaskLife.Milliseconds())*1000 {
		return nil
	}
	n := int64(*v)
	if n == 0 {
		n = 1
	}
	return &n
}

// checkRoutingHeaders holds the Mcp-Method and Mcp-Name headers of a request of the 2026-07-28 era to
// its body, as the SDK does for the requests it serves: tools/call names its tool, the tasks methods
// their task.
func checkRoutingHeaders(h http.Header, method, name string) error {
	if v := h.Get("Mcp-Protocol-Version"); v == "" || v < "2026-07-28" {
		return nil
	}
	switch got := h.Get("Mcp-Method"); {
	case got == "":
		return errors.New("missing required Mcp-Method header")
	case got != method:
		return errors.New("header mismatch: Mcp-Method header value " + strconv.Quote(got) + " does not match body value " + strconv.Quote(method))
	}
	switch got := strings.TrimSpace(h.Get("Mcp-Name")); {
	case got == "":
		return errors.New("missing required Mcp-Name header for method " + strconv.Quote(method))
	case got != name:
		return errors.New("header mismatch: Mcp-Name header value does not match the body")
	}
	return nil
}

// writeMissingTasks refuses a request that needs the tasks extension the client did not declare, with
// MissingRequiredClientCapability and, as the 2026-07-28 era asks, HTTP 400.
func writeMissingTasks(w http.ResponseWriter, id jsonrpc.ID, msg string) {
	caps := &mcp.ClientCapabilities{}
	caps.AddExtension(extensionTasks, nil)
	data, _ := json.Marshal(mcp.MissingRequiredClientCapabilityData{RequiredCapabilities: caps})
	body, err := json.Marshal(struct {
		JSONRPC string         `json:"jsonrpc"`
		ID      any            `json:"id"`
		Error   *jsonrpc.Error `json:"error"`
	}{"2.0", id.Raw(), &jsonrpc.Error{Code: mcp.CodeMissingRequiredClientCapabilities, Message: msg, Data: data}})
	if err != nil {
		http.Error(w, msg, http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadRequest)
	_, _ = w.Write(body)
}

// writeRPCResult answers an HTTP request with a JSON-RPC result.
func writeRPCResult(w http.ResponseWriter, id jsonrpc.ID, res any) {
	if enc, ok := res.(encodedJSON); ok {
		if rawID, err := json.Marshal(id.Raw()); err == nil {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(rpcResponse(rawID, enc))
			return
		}
	}
	data, err := json.Marshal(struct {
		JSONRPC string `json:"jsonrpc"`
		ID      any    `json:"id"`
		Result  any    `json:"result"`
	}{"2.0", id.Raw(), res})
	if err != nil {
		writeRPCError(w, http.StatusOK, id, jsonrpc.CodeInternalError, "the server's answer could not be encoded")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(data)
}

// completeResult is a tool result as a 2026-07-28 answer.
func completeResult(res *mcp.CallToolResult) any {
	var obj map[string]json.RawMessage
	if json.Unmarshal(mustJSON(res), &obj) != nil {
		return res
	}
	obj["resultType"] = mustJSON("complete")
	return obj
}
