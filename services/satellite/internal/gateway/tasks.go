package gateway

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/orrery/orrery/services/satellite/internal/sdkjson"
)

// Tasks (the experimental task-augmented requests of the 2025-11-25 protocol: tools/call with
// params.task, tasks/get, tasks/result, tasks/list, tasks/cancel) are served here, before the SDK,
// because go-sdk v1.8.0 knows none of them. A downstream task id is never shown as it is: the caller
// gets a sealed id naming the instance, the downstream id and an HMAC over them and the caller's team
// and user, so an id presented by anyone else, or altered, is "task not found" without the satellite
// keeping a table, and tasks/list asks only the caller's own instances.

// TaskBackend is a Backend that can carry task requests to an instance. Without it the endpoint offers
// no tasks.
type TaskBackend interface {
	// Request sends the instance a request the SDK's client has no method for and returns the result as
	// the server wrote it; a JSON-RPC error of the server comes back as a *jsonrpc.Error.
	Request(ctx context.Context, instanceID, method string, params json.RawMessage) (json.RawMessage, error)
	// Capability returns the capability name the instance's running server declared, as written, or
	// nil. It never starts the instance.
	Capability(instanceID, name string) json.RawMessage
	// ToolTaskSupport returns the execution.taskSupport ("optional", "required" or "forbidden") the
	// instance's server declared for its tool, by the server's own name for it, or "" for none. It never
	// starts the instance.
	ToolTaskSupport(instanceID, tool string) string
}

// Task methods and their limits.
const (
	methodTasksGet    = "tasks/get"
	methodTasksResult = "tasks/result"
	methodTasksList   = "tasks/list"
	methodTasksCancel = "tasks/cancel"

	// maxTaskIDBytes bounds a sealed id a client presents, and a downstream id the satellite seals.
	maxTaskIDBytes = 1024
	// maxListedTasks bounds the tasks one tasks/list answers with, over all the caller's instances.
	maxListedTasks = 1000

	taskIDVersion = "t1"
	taskMACBytes  = 16
)

// taskParams are the params of tasks/get, tasks/result and tasks/cancel.
type taskParams struct {
	Meta   map[string]any `json:"_meta,omitempty"`
	TaskID string         `json:"taskId"`
}

// listTasksParams are the params of tasks/list.
type listTasksParams struct {
	Meta   map[string]any `json:"_meta,omitempty"`
	Cursor string         `json:"cursor,omitempty"`
}

// errTaskNotFound is the one answer for an id that is not the caller's: unknown, forged, altered, or
// another user's or team's.
var errTaskNotFound = &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: "task not found"}

// taskIDs seals downstream task ids to a team, user and instance.
type taskIDs struct{ key []byte }

func (t taskIDs) mac(teamID, userID, instanceID, downstream string) []byte {
	h := hmac.New(sha256.New, t.key)
	for _, s := range []string{teamID, userID, instanceID, downstream} {
		// Length-prefixed, so that no two tuples hash the same bytes.
		_ = binary.Write(h, binary.BigEndian, uint32(len(s)))
		h.Write([]byte(s))
	}
	return h.Sum(nil)[:taskMACBytes]
}

// seal returns the id the caller sees for downstream, a task of instanceID.
func (t taskIDs) seal(teamID, userID, instanceID, downstream string) string {
	enc := base64.RawURLEncoding
	return strings.Join([]string{taskIDVersion, enc.EncodeToString([]byte(instanceID)),
		enc.EncodeToString([]byte(downstream)), enc.EncodeToString(t.mac(teamID, userID, instanceID, downstream))}, ".")
}

// open returns the instance and downstream id of a sealed id, if teamID's userID was given it.
func (t taskIDs) open(teamID, userID, public string) (instanceID, downstream string, ok bool) {
	if len(public) > 2*maxTaskIDBytes {
		return "", "", false
	}
	parts := strings.Split(public, ".")
	if len(parts) != 4 || parts[0] != taskIDVersion {
		return "", "", false
	}
	enc := base64.RawURLEncoding
	inst, err1 := enc.DecodeString(parts[1])
	down, err2 := enc.DecodeString(parts[2])
	mac, err3 := enc.DecodeString(parts[3])
	if err := errors.Join(err1, err2, err3); err != nil {
		return "", "", false
	}
	if !hmac.Equal(mac, t.mac(teamID, userID, string(inst), string(down))) {
		return "", "", false
	}
	return string(inst), string(down), true
}

// taskCapability is what a server declares under capabilities.tasks.
type taskCapability struct {
	List     *struct{} `json:"list"`
	Cancel   *struct{} `json:"cancel"`
	Requests struct {
		Tools struct {
			Call *struct{} `json:"call"`
		} `json:"tools"`
	} `json:"requests"`
}

func (g *Gateway) taskCapability(instanceID string) (taskCapability, bool) {
	var c taskCapability
	tb, ok := g.cfg.Backend.(TaskBackend)
	if !ok {
		return c, false
	}
	raw := tb.Capability(instanceID, "tasks")
	if len(raw) == 0 || json.Unmarshal(raw, &c) != nil {
		return c, false
	}
	return c, true
}

// isTaskRequest reports whether req is one serveTask answers: a tasks method, or a task-augmented
// tools/call.
func isTaskRequest(req *jsonrpc.Request) bool {
	switch req.Method {
	case methodTasksGet, methodTasksResult, methodTasksList, methodTasksCancel:
		return true
	case "tools/call":
		// Most calls are plain: they skip the decoding. A key spelled with escapes that skips it here
		// runs as a plain call, which the SDK makes of any call it gets.
		if !bytes.Contains(req.Params, []byte(`"task"`)) {
			return false
		}
		var p struct {
			Task json.RawMessage `json:"task"`
		}
		return sdkjson.Unmarshal(req.Params, &p) == nil && len(p.Task) > 0 && !bytes.Equal(p.Task, []byte("null"))
	}
	return false
}

// serveTask answers a task request of p, and reports whether it did. What it leaves to the SDK: every
// task request of a user none of whose servers declares tasks, so that the methods are as unknown as
// they were (-32601), and a task-augmented tools/call of a tool whose server takes no tasks, which the
// SDK runs as a plain call, as the protocol asks of a receiver that does not support tasks for a request.
func (g *Gateway) serveTask(w http.ResponseWriter, r *http.Request, p *principal, req *jsonrpc.Request) bool {
	ctx := r.Context()
	us, release := g.acquire(p.teamID, p.userID)
	defer release()
	if g.userTaskCapability(us) == nil {
		return false // no server of the user's has tasks: the methods are unknown here, as to the SDK
	}
	var res any
	var err error
	switch req.Method {
	case "tools/call":
		var handled bool
		mode, _ := toolsModeOf(r, p)
		res, handled, err = g.createTask(ctx, us, req.Params, mode == ToolsSearch)
		if !handled {
			return false
		}
	case methodTasksList:
		res, err = g.listTasks(ctx, us)
	default:
		res, err = g.forwardTask(ctx, us, req.Method, req.Params)
	}
	writeRPCOutcome(w, req.ID, res, err)
	return true
}

// createTask forwards a task-augmented tools/call to the instance that owns the tool, if its server
// takes task-augmented calls, and seals the id of the task it created.
func (g *Gateway) createTask(ctx context.Context, us *userServer, raw json.RawMessage, search bool) (any, bool, error) {
	start := time.Now()
	var params map[string]json.RawMessage
	if search || sdkjson.Unmarshal(raw, &params) != nil {
		return nil, false, nil
	}
	var name string
	if json.Unmarshal(params["name"], &name) != nil {
		return nil, false, nil
	}
	us.syncMu.Lock()
	reg, ok := us.tools[name]
	us.syncMu.Unlock()
	if !ok {
		return nil, false, nil // the SDK answers as for any unknown tool
	}
	// An instance whose user has yet to connect their account is left to callTool, which answers with the
	// link and never starts it.
	if reg.rt.inst.ConnectAccountURL != "" {
		return nil, false, nil
	}
	if c, ok := g.taskCapability(reg.rt.inst.ID); !ok || c.Requests.Tools.Call == nil {
		return nil, false, nil
	}
	// A task is a tool call too: the team's policies decide before it reaches the server, and its
	// creation is logged and counted like a call.
	call := &mcp.CallToolRequest{Params: &mcp.CallToolParamsRaw{Name: name, Arguments: params["arguments"]}}
	set, pc := g.policyCall(ctx, us, call, reg.rt)
	if pc != nil {
		if denial := set.Check(ctx, pc, g.limiter); denial != nil {
			res := g.refuse(ctx, us, reg.rt, denial)
			d := time.Since(start)
			g.logCall(us, reg.rt, params["arguments"], res, nil, d, traceIDOf(ctx),
				callLog{denial: denial, redact: redactions(ctx, set, pc, reg.rt)})
			g.metrics.observeCall(reg.rt, outcomePolicyDenied, d)
			return res, true, nil
		}
	}
	down := map[string]json.RawMessage{"name": mustJSON(reg.rt.name), "task": params["task"]}
	if args, ok := params["arguments"]; ok {
		down["arguments"] = args
	}
	if meta := forwardRawMeta(params["_meta"]); meta != nil {
		down["_meta"] = meta
	}
	res, err := g.taskRequest(ctx, reg.rt, "tools/call", down)
	var logged *mcp.CallToolResult
	if err == nil {
		logged = &mcp.CallToolResult{StructuredContent: res}
	}
	d := time.Since(start)
	g.logCall(us, reg.rt, params["arguments"], logged, err, d, traceIDOf(ctx), callLog{redact: redactions(ctx, set, pc, reg.rt)})
	g.metrics.observeCall(reg.rt, callOutcome(ctx, logged, err), d)
	if err != nil {
		return nil, true, err
	}
	out, err := g.sealTaskField(us, reg.rt.inst.ID, res, "task")
	return out, true, err
}

// forwardTask forwards tasks/get, tasks/result or tasks/cancel of a sealed id to its instance.
func (g *Gateway) forwardTask(ctx context.Context, us *userServer, method string, raw json.RawMessage) (any, error) {
	var params map[string]json.RawMessage
	var public string
	if sdkjson.Unmarshal(raw, &params) != nil || json.Unmarshal(params["taskId"], &public) != nil {
		return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: method + `: params must be an object with a string "taskId"`}
	}
	instanceID, downstream, ok := g.tasks.open(us.key.teamID, us.key.userID, public)
	if !ok {
		return nil, errTaskNotFound
	}
	rt, ok := us.ownInstance(instanceID)
	if !ok {
		return nil, errTaskNotFound // the instance is gone, and its tasks with it
	}
	down := map[string]json.RawMessage{"taskId": mustJSON(downstream)}
	if meta := forwardRawMeta(params["_meta"]); meta != nil {
		down["_meta"] = meta
	}
	res, err := g.taskRequest(ctx, rt, method, down)
	if err != nil {
		return nil, err
	}
	switch method {
	case methodTasksResult:
		return g.sealRelatedTask(us, instanceID, res)
	default:
		return g.sealTaskField(us, instanceID, res, "")
	}
}

// listTasks lists the tasks of the caller's instances whose servers list tasks. One failing server
// leaves its tasks out and the rest listed.
func (g *Gateway) listTasks(ctx context.Context, us *userServer) (any, error) {
	online, _ := us.instances()
	tasks := []json.RawMessage{}
	for _, inst := range online {
		if c, ok := g.taskCapability(inst.ID); !ok || c.List == nil {
			continue
		}
		rt := route{inst: inst}
		res, err := g.taskRequest(ctx, rt, methodTasksList, map[string]json.RawMessage{})
		if err != nil {
			g.logger.InfoContext(ctx, "tasks/list of an instance failed", slog.String("instance_id", inst.ID), slog.Any("error", err))
			continue
		}
		var page struct {
			Tasks []json.RawMessage `json:"tasks"`
		}
		if json.Unmarshal(res, &page) != nil {
			continue
		}
		for _, task := range page.Tasks {
			if len(tasks) == maxListedTasks {
				break
			}
			sealed, err := g.sealTask(us, inst.ID, task)
			if err != nil {
				continue
			}
			tasks = append(tasks, sealed)
		}
	}
	return map[string]any{"tasks": tasks}, nil
}

// ownInstance returns the route to instanceID if it is one of the caller's online instances.
func (us *userServer) ownInstance(instanceID string) (route, bool) {
	online, _ := us.instances()
	for _, inst := range online {
		if inst.ID == instanceID {
			return route{inst: inst}, true
		}
	}
	return route{}, false
}

// taskRequest sends a task request to rt's instance.
func (g *Gateway) taskRequest(ctx context.Context, rt route, method string, params map[string]json.RawMessage) (json.RawMessage, error) {
	tb, ok := g.cfg.Backend.(TaskBackend)
	if !ok {
		return nil, &jsonrpc.Error{Code: jsonrpc.CodeMethodNotFound, Message: "tasks are not supported here"}
	}
	body, err := json.Marshal(params)
	if err != nil {
		return nil, err
	}
	res, err := tb.Request(ctx, rt.inst.ID, method, body)
	if err != nil {
		return nil, g.downstreamError(ctx, rt, err)
	}
	return res, nil
}

// sealTaskField replaces the taskId of the task in res (under field, or res itself when field is
// empty) with its sealed id.
func (g *Gateway) sealTaskField(us *userServer, instanceID string, res json.RawMessage, field string) (json.RawMessage, error) {
	if field == "" {
		return g.sealTask(us, instanceID, res)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(res, &obj); err != nil {
		return nil, errors.New("the MCP server's answer is not a JSON object")
	}
	task, err := g.sealTask(us, instanceID, obj[field])
	if err != nil {
		return nil, err
	}
	obj[field] = task
	return json.Marshal(obj)
}

// sealTask replaces the taskId of one task object with its sealed id.
func (g *Gateway) sealTask(us *userServer, instanceID string, task json.RawMessage) (json.RawMessage, error) {
	var obj map[string]json.RawMessage
	var downstream string
	if json.Unmarshal(task, &obj) != nil || json.Unmarshal(obj["taskId"], &downstream) != nil ||
		downstream == "" || len(downstream) > maxTaskIDBytes {
		return nil, errors.New("the MCP server's answer carries no valid task id")
	}
	obj["taskId"] = mustJSON(g.tasks.seal(us.key.teamID, us.key.userID, instanceID, downstream))
	return json.Marshal(obj)
}

// relatedTaskMeta is the _meta key that ties a message to a task.
const relatedTaskMeta = "io.modelcontextprotocol/related-task"

// sealRelatedTask seals the task id a tasks/result answer names in its _meta.
func (g *Gateway) sealRelatedTask(us *userServer, instanceID string, res json.RawMessage) (json.RawMessage, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(res, &obj); err != nil {
		return nil, errors.New("the MCP server's answer is not a JSON object")
	}
	var meta map[string]json.RawMessage
	if json.Unmarshal(obj["_meta"], &meta) != nil || meta[relatedTaskMeta] == nil {
		return res, nil
	}
	related, err := g.sealTask(us, instanceID, meta[relatedTaskMeta])
	if err != nil {
		delete(meta, relatedTaskMeta) // never pass on an id that is not sealed
	} else {
		meta[relatedTaskMeta] = related
	}
	obj["_meta"] = mustJSON(meta)
	return json.Marshal(obj)
}

// forwardRawMeta is forwardMeta for a request the SDK did not decode.
func forwardRawMeta(raw json.RawMessage) json.RawMessage {
	var m map[string]any
	if len(raw) == 0 || json.Unmarshal(raw, &m) != nil {
		return nil
	}
	out := forwardMeta(m)
	if out == nil {
		return nil
	}
	return mustJSON(out)
}

// mustJSON encodes a value that always encodes: strings, and maps of values decoded from JSON.
func mustJSON(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}
