// Command taskserver is an MCP server over stdio that runs tools as tasks in the experimental form of the
// 2025-11-25 protocol (tools/call with params.task, tasks/get, tasks/result, tasks/list, tasks/cancel),
// with the tools the official conformance suite's tasks scenarios call. No SDK installable here has tasks
// on the server side in Go, and the suite's own package holds no server, so the satellite's translation
// between the 2026-07-28 tasks extension and the experimental form is tested against this one.
//
// Tools (execution.taskSupport in brackets):
//
//	greet               [forbidden] "Hello, {name}!"
//	slow_compute        [optional]  sleeps arguments.seconds, then "computed {label}"; cancellable
//	failing_job         [required]  after about a second, a tool error (isError)
//	protocol_error_job  [optional]  the task fails with a JSON-RPC error
//	confirm_delete      [optional]  the task asks elicitation/create once, then "deleted {filename}"
//	multi_input         [optional]  the task asks elicitation/create twice at once
//	test_tool_with_task [required]  asks for user_name before it creates the task, which then greets
//
// A task's requests to its client carry the io.modelcontextprotocol/related-task _meta key, as the
// protocol asks. The server answers initialize with 2025-11-25 whatever version it is asked for.
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"time"
)

const (
	protocolVersion = "2025-11-25"
	relatedTask     = "io.modelcontextprotocol/related-task"
	taskTTL         = 60_000 // milliseconds
	pollInterval    = 200    // milliseconds
)

type message struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id,omitempty"`
	Method  string          `json:"method,omitempty"`
	Params  json.RawMessage `json:"params,omitempty"`
	Result  json.RawMessage `json:"result,omitempty"`
	Error   *rpcError       `json:"error,omitempty"`
}

type rpcError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

type task struct {
	ID           string
	status       string
	created      time.Time
	updated      time.Time
	cancel       context.CancelFunc
	done         chan struct{}
	result       json.RawMessage
	err          *rpcError
	statusDetail string
}

type server struct {
	out  io.Writer
	wmu  sync.Mutex
	mu   sync.Mutex
	next int
	// waiting are this server's requests to its client, by id.
	waiting map[string]chan *message
	tasks   map[string]*task
}

func main() {
	s := &server{out: os.Stdout, waiting: map[string]chan *message{}, tasks: map[string]*task{}}
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 16<<20)
	for in.Scan() {
		var msg message
		if json.Unmarshal(in.Bytes(), &msg) != nil {
			continue
		}
		switch {
		case msg.Method == "" && msg.ID != nil:
			s.mu.Lock()
			ch := s.waiting[string(msg.ID)]
			delete(s.waiting, string(msg.ID))
			s.mu.Unlock()
			if ch != nil {
				ch <- &msg
			}
		case msg.ID != nil:
			go s.handle(&msg)
		}
	}
}

func (s *server) send(msg any) {
	data, _ := json.Marshal(msg)
	s.wmu.Lock()
	defer s.wmu.Unlock()
	_, _ = s.out.Write(append(data, '\n'))
}

func (s *server) reply(id json.RawMessage, result any) {
	s.send(map[string]any{"jsonrpc": "2.0", "id": id, "result": result})
}

func (s *server) fail(id json.RawMessage, code int, msg string) {
	s.send(map[string]any{"jsonrpc": "2.0", "id": id, "error": rpcError{Code: code, Message: msg}})
}

// ask sends the client a request and waits for its answer.
func (s *server) ask(ctx context.Context, method string, params any) (json.RawMessage, error) {
	s.mu.Lock()
	s.next++
	id := strconv.Quote("srv-" + strconv.Itoa(s.next))
	ch := make(chan *message, 1)
	s.waiting[id] = ch
	s.mu.Unlock()
	s.send(map[string]any{"jsonrpc": "2.0", "id": json.RawMessage(id), "method": method, "params": params})
	select {
	case m := <-ch:
		if m.Error != nil {
			return nil, fmt.Errorf("%s: %s", method, m.Error.Message)
		}
		return m.Result, nil
	case <-ctx.Done():
		s.mu.Lock()
		delete(s.waiting, id)
		s.mu.Unlock()
		return nil, ctx.Err()
	}
}

// elicit asks for a form with one string field and returns the answer's content.
func (s *server) elicit(ctx context.Context, taskID, message, field string) (map[string]any, error) {
	params := map[string]any{
		"mode":    "form",
		"message": message,
		"requestedSchema": map[string]any{"type": "object",
			"properties": map[string]any{field: map[string]any{"type": "string"}}},
	}
	if taskID != "" {
		params["_meta"] = map[string]any{relatedTask: map[string]any{"taskId": taskID}}
	}
	raw, err := s.ask(ctx, "elicitation/create", params)
	if err != nil {
		return nil, err
	}
	var res struct {
		Action  string         `json:"action"`
		Content map[string]any `json:"content"`
	}
	if err := json.Unmarshal(raw, &res); err != nil {
		return nil, err
	}
	if res.Action != "accept" {
		return nil, fmt.Errorf("the client answered %q", res.Action)
	}
	return res.Content, nil
}

var tools = []map[string]any{
	tool("greet", "", map[string]any{"name": map[string]any{"type": "string"}}),
	tool("slow_compute", "optional", map[string]any{"seconds": map[string]any{"type": "number"}, "label": map[string]any{"type": "string"}}),
	tool("failing_job", "required", nil),
	tool("protocol_error_job", "optional", nil),
	tool("confirm_delete", "optional", map[string]any{"filename": map[string]any{"type": "string"}}),
	tool("multi_input", "optional", nil),
	tool("test_tool_with_task", "required", nil),
}

func tool(name, support string, props map[string]any) map[string]any {
	if props == nil {
		props = map[string]any{}
	}
	t := map[string]any{"name": name, "description": "conformance fixture " + name,
		"inputSchema": map[string]any{"type": "object", "properties": props}}
	if support != "" {
		t["execution"] = map[string]any{"taskSupport": support}
	}
	return t
}

func supportOf(name string) (string, bool) {
	for _, t := range tools {
		if t["name"] == name {
			if e, ok := t["execution"].(map[string]any); ok {
				return e["taskSupport"].(string), true
			}
			return "forbidden", true
		}
	}
	return "", false
}

func text(s string, isError bool) json.RawMessage {
	data, _ := json.Marshal(map[string]any{"content": []any{map[string]any{"type": "text", "text": s}}, "isError": isError})
	return data
}

func (s *server) handle(msg *message) {
	switch msg.Method {
	case "initialize":
		s.reply(msg.ID, map[string]any{
			"protocolVersion": protocolVersion,
			"serverInfo":      map[string]any{"name": "orrery-task-fixture", "version": "1.0.0"},
			"capabilities": map[string]any{"tools": map[string]any{},
				"tasks": map[string]any{"list": map[string]any{}, "cancel": map[string]any{},
					"requests": map[string]any{"tools": map[string]any{"call": map[string]any{}}}}},
		})
	case "ping":
		s.reply(msg.ID, map[string]any{})
	case "tools/list":
		s.reply(msg.ID, map[string]any{"tools": tools})
	case "tools/call":
		s.call(msg)
	case "tasks/get", "tasks/result", "tasks/cancel":
		var p struct {
			TaskID string `json:"taskId"`
		}
		_ = json.Unmarshal(msg.Params, &p)
		s.mu.Lock()
		t := s.tasks[p.TaskID]
		s.mu.Unlock()
		if t == nil {
			s.fail(msg.ID, -32602, "task not found")
			return
		}
		switch msg.Method {
		case "tasks/get":
			s.reply(msg.ID, s.view(t))
		case "tasks/cancel":
			s.mu.Lock()
			terminal := t.status == "completed" || t.status == "failed" || t.status == "cancelled"
			if !terminal {
				t.status, t.updated = "cancelled", time.Now()
			}
			s.mu.Unlock()
			if terminal {
				s.fail(msg.ID, -32602, "task is already "+t.status)
				return
			}
			t.cancel()
			s.reply(msg.ID, s.view(t))
		case "tasks/result":
			<-t.done
			s.mu.Lock()
			res, rerr, status := t.result, t.err, t.status
			s.mu.Unlock()
			switch {
			case status == "cancelled":
				s.fail(msg.ID, -32603, "the task was cancelled")
			case rerr != nil:
				s.send(map[string]any{"jsonrpc": "2.0", "id": msg.ID, "error": rerr})
			default:
				var obj map[string]any
				_ = json.Unmarshal(res, &obj)
				obj["_meta"] = map[string]any{relatedTask: map[string]any{"taskId": t.ID}}
				s.reply(msg.ID, obj)
			}
		}
	case "tasks/list":
		s.mu.Lock()
		list := []any{}
		for _, t := range s.tasks {
			list = append(list, s.viewLocked(t))
		}
		s.mu.Unlock()
		s.reply(msg.ID, map[string]any{"tasks": list})
	default:
		s.fail(msg.ID, -32601, "method not found: "+msg.Method)
	}
}

func (s *server) view(t *task) map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.viewLocked(t)
}

func (s *server) viewLocked(t *task) map[string]any {
	v := map[string]any{"taskId": t.ID, "status": t.status, "createdAt": t.created.UTC().Format(time.RFC3339Nano),
		"lastUpdatedAt": t.updated.UTC().Format(time.RFC3339Nano), "ttl": taskTTL, "pollInterval": pollInterval}
	if t.statusDetail != "" {
		v["statusMessage"] = t.statusDetail
	}
	return v
}

func (s *server) setStatus(t *task, status string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t.status == "cancelled" {
		return
	}
	t.status, t.updated = status, time.Now()
}

// finish ends t with a result or an error, unless it was cancelled.
func (s *server) finish(t *task, result json.RawMessage, rerr *rpcError, status string) {
	s.mu.Lock()
	if t.status != "cancelled" {
		t.status, t.updated, t.result, t.err = status, time.Now(), result, rerr
	}
	s.mu.Unlock()
	close(t.done)
}

type callParams struct {
	Name      string          `json:"name"`
	Arguments map[string]any  `json:"arguments"`
	Task      json.RawMessage `json:"task"`
}

func (s *server) call(msg *message) {
	var p callParams
	if json.Unmarshal(msg.Params, &p) != nil {
		s.fail(msg.ID, -32602, "invalid params")
		return
	}
	support, ok := supportOf(p.Name)
	if !ok {
		s.fail(msg.ID, -32602, "unknown tool "+p.Name)
		return
	}
	asTask := len(p.Task) > 0 && string(p.Task) != "null"
	switch {
	case asTask && support == "forbidden":
		s.fail(msg.ID, -32601, p.Name+" does not run as a task")
		return
	case !asTask && support == "required":
		s.fail(msg.ID, -32601, p.Name+" runs only as a task")
		return
	}
	ctx := context.Background()
	if p.Name == "test_tool_with_task" {
		// Input first, in the call itself; the task comes after.
		content, err := s.elicit(ctx, "", "What is your name?", "user_name")
		if err != nil {
			s.fail(msg.ID, -32603, err.Error())
			return
		}
		name, _ := content["user_name"].(string)
		if name == "" {
			name, _ = content["name"].(string)
		}
		p.Arguments = map[string]any{"user_name": name}
	}
	if !asTask {
		res, rerr := s.run(ctx, "", p)
		if rerr != nil {
			s.send(map[string]any{"jsonrpc": "2.0", "id": msg.ID, "error": rerr})
			return
		}
		s.reply(msg.ID, res)
		return
	}
	now := time.Now()
	tctx, cancel := context.WithCancel(ctx)
	t := &task{ID: "task-" + rand.Text(), status: "working", created: now, updated: now, cancel: cancel, done: make(chan struct{})}
	s.mu.Lock()
	s.tasks[t.ID] = t
	s.mu.Unlock()
	s.reply(msg.ID, map[string]any{"task": s.view(t)})
	go func() {
		defer cancel()
		res, rerr := s.run(tctx, t.ID, p)
		switch {
		case rerr != nil:
			s.finish(t, nil, rerr, "failed")
		default:
			var r struct {
				IsError bool `json:"isError"`
			}
			_ = json.Unmarshal(res, &r)
			status := "completed"
			if r.IsError {
				status = "failed"
			}
			s.finish(t, res, nil, status)
		}
	}()
}

// run does the work of a call; taskID is the task it runs as, if any.
func (s *server) run(ctx context.Context, taskID string, p callParams) (json.RawMessage, *rpcError) {
	str := func(k string) string { v, _ := p.Arguments[k].(string); return v }
	sleep := func(d time.Duration) *rpcError {
		select {
		case <-time.After(d):
			return nil
		case <-ctx.Done():
			return &rpcError{Code: -32603, Message: "cancelled"}
		}
	}
	var t *task
	if taskID != "" {
		s.mu.Lock()
		t = s.tasks[taskID]
		s.mu.Unlock()
	}
	switch p.Name {
	case "greet":
		return text("Hello, "+str("name")+"!", false), nil
	case "slow_compute":
		secs, _ := p.Arguments["seconds"].(float64)
		if err := sleep(time.Duration(secs * float64(time.Second))); err != nil {
			return nil, err
		}
		return text("computed "+str("label"), false), nil
	case "failing_job":
		if err := sleep(time.Second); err != nil {
			return nil, err
		}
		return text("the job failed", true), nil
	case "protocol_error_job":
		if err := sleep(200 * time.Millisecond); err != nil {
			return nil, err
		}
		return nil, &rpcError{Code: -32603, Message: "the job crashed"}
	case "confirm_delete":
		if t != nil {
			s.setStatus(t, "input_required")
		}
		content, err := s.elicit(ctx, taskID, "Delete "+str("filename")+"?", "confirm")
		if err != nil {
			return nil, &rpcError{Code: -32603, Message: err.Error()}
		}
		if t != nil {
			s.setStatus(t, "working")
		}
		if c, _ := content["confirm"].(bool); !c {
			return text("kept "+str("filename"), false), nil
		}
		return text("deleted "+str("filename"), false), nil
	case "multi_input":
		if t != nil {
			s.setStatus(t, "input_required")
		}
		var wg sync.WaitGroup
		names := make([]string, 2)
		errs := make([]error, 2)
		for i := range 2 {
			wg.Go(func() {
				content, err := s.elicit(ctx, taskID, fmt.Sprintf("Input %d?", i+1), "name")
				errs[i] = err
				if err == nil {
					names[i], _ = content["name"].(string)
				}
			})
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				return nil, &rpcError{Code: -32603, Message: err.Error()}
			}
		}
		if t != nil {
			s.setStatus(t, "working")
		}
		return text("got "+names[0]+" and "+names[1], false), nil
	case "test_tool_with_task":
		if err := sleep(300 * time.Millisecond); err != nil {
			return nil, err
		}
		return text("Hello, "+str("user_name")+"!", false), nil
	}
	return nil, &rpcError{Code: -32602, Message: "unknown tool"}
}
