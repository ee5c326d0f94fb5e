package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/internal/mcptest"
)

// TestTasksExtensionThroughSatellite speaks the 2026-07-28 tasks extension to a satellite whose instances
// run the repo's task fixture server, which has tasks in the experimental 2025-11-25 form only: ada in acme
// runs tasks, answers one's input with tasks/update and cancels another; bob in acme and cy in globex,
// each with a valid token of their own, present ada's task ids, as is and altered, and learn nothing but
// "task not found"; a policy that refuses bob the tool refuses his task.
func TestTasksExtensionThroughSatellite(t *testing.T) {
	t.Parallel()
	srv := quickBackend(t)
	acme, globex := uuid.NewString(), uuid.NewString()
	ada, bob, cy := uuid.NewString(), uuid.NewString(), uuid.NewString()
	fixture := mcptest.TaskServer(t)
	instance := func(id, teamID, teamSlug, userID, userSlug string) *satellitev1.Instance {
		return &satellitev1.Instance{
			Id: id, ContentHash: "h1", InstallationId: uuid.NewString(), TeamId: teamID, TeamSlug: teamSlug,
			UserId: userID, UserSlug: userSlug, ServerSlug: "fx", ToolPrefix: "fx",
			Transport: satellitev1.Transport_TRANSPORT_STDIO, Command: fixture,
		}
	}
	srv.SetConfiguration("v1", instance("fx-acme-ada-1", acme, "acme", ada, "ada"),
		instance("fx-acme-bob-1", acme, "acme", bob, "bob"),
		instance("fx-globex-cy-1", globex, "globex", cy, "cy"))
	srv.SetPolicies(&satellitev1.Policy{
		Id: uuid.NewString(), TeamId: acme, Name: "no-compute-for-bob", Kind: satellitev1.PolicyKind_POLICY_KIND_DENY,
		Expression: fmt.Sprintf(`user.id == %q && tool.name == "slow_compute"`, bob),
	})
	cfg := testConfig(t, srv)
	base := "http://" + cfg.listener.Addr().String()
	token := func(name, teamID, slug, userID string) (string, string) {
		tok := "tasks-ext-test-" + name + "-token"
		srv.SetAccessToken(tok, &satellitev1.IntrospectTokenResponse{
			Active: true, TeamId: teamID, TeamSlug: slug, UserId: userID, ClientId: "client-" + name,
			Audience: base + "/teams/" + slug + "/mcp", Scopes: []string{"mcp:read", "mcp:tools:execute"},
			ExpiresAt: timestamppb.New(time.Now().Add(time.Hour)),
		})
		return tok, base + "/teams/" + slug + "/mcp"
	}
	adaToken, acmeURL := token("ada", acme, "acme", ada)
	bobToken, _ := token("bob", acme, "acme", bob)
	cyToken, globexURL := token("cy", globex, "globex", cy)
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- run(ctx, cfg, testLogger(t)) }()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	srv.Wait(t.Context(), "all three servers online", time.Minute, func() bool {
		discovered := map[string]bool{}
		for _, ev := range srv.Events() {
			if len(ev.GetToolsDiscovered().GetTools()) > 0 {
				discovered[ev.GetInstanceId()] = true
			}
		}
		return len(discovered) == 3
	})

	withExt := map[string]any{"extensions": map[string]any{"io.modelcontextprotocol/tasks": map[string]any{}},
		"elicitation": map[string]any{}}
	rpc := func(url, token, method string, params map[string]any, caps map[string]any) (json.RawMessage, int, string) {
		t.Helper()
		return statelessCall(t, url, token, method, params, caps)
	}
	type taskView struct {
		ResultType    string                     `json:"resultType"`
		TaskID        string                     `json:"taskId"`
		Status        string                     `json:"status"`
		TTLMs         *int64                     `json:"ttlMs"`
		InputRequests map[string]json.RawMessage `json:"inputRequests"`
		Result        *struct {
			Content []struct {
				Text string `json:"text"`
			} `json:"content"`
			IsError bool `json:"isError"`
		} `json:"result"`
		Error *struct {
			Code int `json:"code"`
		} `json:"error"`
	}
	decode := func(what string, res json.RawMessage, code int, msg string) taskView {
		t.Helper()
		var v taskView
		if code != 0 || json.Unmarshal(res, &v) != nil {
			t.Fatalf("%s: %s %d %s", what, res, code, msg)
		}
		return v
	}
	get := func(taskID string) taskView {
		t.Helper()
		res, code, msg := rpc(acmeURL, adaToken, "tasks/get", map[string]any{"taskId": taskID}, withExt)
		return decode("tasks/get", res, code, msg)
	}
	waitStatus := func(taskID, status string) taskView {
		t.Helper()
		var v taskView
		deadline := time.Now().Add(20 * time.Second)
		for v = get(taskID); v.Status != status && time.Now().Before(deadline); v = get(taskID) {
			time.Sleep(50 * time.Millisecond)
		}
		if v.Status != status {
			t.Fatalf("task %s is %q, want %q", taskID, v.Status, status)
		}
		return v
	}

	res, code, msg := rpc(acmeURL, adaToken, "server/discover", map[string]any{}, withExt)
	if code != 0 || !bytes.Contains(res, []byte(`"io.modelcontextprotocol/tasks"`)) || bytes.Contains(res, []byte(`"tasks":{`)) {
		t.Errorf("server/discover: %s %d %s; want the tasks extension and no capabilities.tasks", res, code, msg)
	}

	// A sync tool stays sync; a task-supporting one becomes a task under a sealed id.
	res, code, msg = rpc(acmeURL, adaToken, "tools/call", map[string]any{"name": "fx__greet", "arguments": map[string]any{"name": "Ada"}}, withExt)
	if code != 0 || !bytes.Contains(res, []byte("Hello, Ada!")) || bytes.Contains(res, []byte(`"taskId"`)) {
		t.Errorf("greet: %s %d %s", res, code, msg)
	}
	res, code, msg = rpc(acmeURL, adaToken, "tools/call", map[string]any{"name": "fx__slow_compute", "arguments": map[string]any{"seconds": 60, "label": "long"}}, withExt)
	long := decode("slow_compute", res, code, msg)
	if long.ResultType != "task" || !strings.HasPrefix(long.TaskID, "t1.") || long.Status != "working" || long.TTLMs == nil {
		t.Fatalf("slow_compute created %+v; want a working task under a sealed id", long)
	}

	// Input the task asks for is the client's to give through tasks/update.
	res, code, msg = rpc(acmeURL, adaToken, "tools/call", map[string]any{"name": "fx__confirm_delete", "arguments": map[string]any{"filename": "a.txt"}}, withExt)
	confirm := decode("confirm_delete", res, code, msg)
	pending := waitStatus(confirm.TaskID, "input_required")
	if len(pending.InputRequests) != 1 {
		t.Fatalf("confirm_delete asks %v, want one input request", pending.InputRequests)
	}
	var key string
	for k, req := range pending.InputRequests {
		key = k
		if !bytes.Contains(req, []byte(`"elicitation/create"`)) || bytes.Contains(req, []byte("related-task")) {
			t.Errorf("input request %s: %s; want an elicitation without the server's task id", k, req)
		}
	}

	// Nobody else opens ada's tasks, as they are or pointed at their own instance.
	altered := strings.Split(long.TaskID, ".")
	altered[1] = base64URL("fx-acme-bob-1")
	for _, a := range []struct{ who, url, token, taskID string }{
		{"bob, same team", acmeURL, bobToken, long.TaskID},
		{"cy, other team", globexURL, cyToken, confirm.TaskID},
		{"bob, id pointed at his own instance", acmeURL, bobToken, strings.Join(altered, ".")},
		{"ada, id pointed at bob's instance", acmeURL, adaToken, strings.Join(altered, ".")},
		{"bob, garbage", acmeURL, bobToken, "not-a-task"},
	} {
		for _, method := range []string{"tasks/get", "tasks/update", "tasks/cancel"} {
			params := map[string]any{"taskId": a.taskID}
			if method == "tasks/update" {
				params["inputResponses"] = map[string]any{key: map[string]any{"action": "decline"}}
			}
			if res, code, msg := rpc(a.url, a.token, method, params, withExt); code != -32602 || msg != "task not found" {
				t.Errorf("%s: %s answered %s %d %q, want -32602 task not found", a.who, method, res, code, msg)
			}
		}
	}

	res, code, msg = rpc(acmeURL, adaToken, "tasks/update", map[string]any{"taskId": confirm.TaskID,
		"inputResponses": map[string]any{key: map[string]any{"action": "accept", "content": map[string]any{"confirm": true}}}}, withExt)
	if code != 0 || string(res) != `{"resultType":"complete"}` {
		t.Errorf("tasks/update: %s %d %s", res, code, msg)
	}
	done := waitStatus(confirm.TaskID, "completed")
	if done.Result == nil || len(done.Result.Content) == 0 || done.Result.Content[0].Text != "deleted a.txt" {
		t.Errorf("confirm_delete completed with %+v, want deleted a.txt", done.Result)
	}

	// A tool error completes the task with the error; a protocol error fails it.
	res, code, msg = rpc(acmeURL, adaToken, "tools/call", map[string]any{"name": "fx__protocol_error_job", "arguments": map[string]any{}}, withExt)
	failed := waitStatus(decode("protocol_error_job", res, code, msg).TaskID, "failed")
	if failed.Error == nil || failed.Error.Code != -32603 || failed.Result != nil {
		t.Errorf("protocol_error_job failed with %+v / %+v, want the server's error alone", failed.Error, failed.Result)
	}

	// What a server asks before it creates its task comes as an input_required round of the call, and
	// the retry with the answer gets the task.
	res, code, msg = rpc(acmeURL, adaToken, "tools/call", map[string]any{"name": "fx__test_tool_with_task", "arguments": map[string]any{}}, withExt)
	var round struct {
		ResultType    string                     `json:"resultType"`
		TaskID        string                     `json:"taskId"`
		InputRequests map[string]json.RawMessage `json:"inputRequests"`
		RequestState  string                     `json:"requestState"`
	}
	if code != 0 || json.Unmarshal(res, &round) != nil || round.ResultType != "input_required" || round.TaskID != "" ||
		len(round.InputRequests) != 1 || round.RequestState == "" {
		t.Fatalf("test_tool_with_task, round 1: %s %d %s; want input_required and no task", res, code, msg)
	}
	responses := map[string]any{}
	for k := range round.InputRequests {
		responses[k] = map[string]any{"action": "accept", "content": map[string]any{"user_name": "Alice"}}
	}
	res, code, msg = rpc(acmeURL, adaToken, "tools/call", map[string]any{"name": "fx__test_tool_with_task", "arguments": map[string]any{},
		"inputResponses": responses, "requestState": round.RequestState}, withExt)
	escalated := decode("test_tool_with_task, round 2", res, code, msg)
	if escalated.ResultType != "task" || bytes.Contains(res, []byte("requestState")) {
		t.Fatalf("test_tool_with_task, round 2: %s; want a CreateTaskResult", res)
	}
	if v := waitStatus(escalated.TaskID, "completed"); v.Result == nil || len(v.Result.Content) == 0 || v.Result.Content[0].Text != "Hello, Alice!" {
		t.Errorf("test_tool_with_task completed with %+v, want Hello, Alice!", v.Result)
	}

	// Cancelling is acknowledged with an empty result, also once the task has ended.
	for range 2 {
		res, code, msg = rpc(acmeURL, adaToken, "tasks/cancel", map[string]any{"taskId": long.TaskID}, withExt)
		if code != 0 || string(res) != `{"resultType":"complete"}` {
			t.Errorf("tasks/cancel: %s %d %s", res, code, msg)
		}
	}
	waitStatus(long.TaskID, "cancelled")

	// Without the extension: the methods need it, a task-only tool is refused, an optional one runs plain.
	noExt := map[string]any{}
	if _, code, _ := rpc(acmeURL, adaToken, "tasks/get", map[string]any{"taskId": long.TaskID}, noExt); code != -32021 {
		t.Errorf("tasks/get without the extension: %d, want -32021", code)
	}
	if _, code, _ := rpc(acmeURL, adaToken, "tools/call", map[string]any{"name": "fx__failing_job", "arguments": map[string]any{}}, noExt); code != -32021 {
		t.Errorf("a task-only tool without the extension: %d, want -32021", code)
	}
	res, code, msg = rpc(acmeURL, adaToken, "tools/call", map[string]any{"name": "fx__slow_compute", "arguments": map[string]any{"seconds": 0, "label": "now"}}, noExt)
	if code != 0 || !bytes.Contains(res, []byte("computed now")) || bytes.Contains(res, []byte(`"taskId"`)) {
		t.Errorf("slow_compute without the extension: %s %d %s, want its result", res, code, msg)
	}
	for _, method := range []string{"tasks/result", "tasks/list"} {
		if _, code, _ := rpc(acmeURL, adaToken, method, map[string]any{"taskId": long.TaskID}, withExt); code != -32601 {
			t.Errorf("%s: %d, want -32601: the extension has no such method", method, code)
		}
	}
	// The routing headers must name the task the body names.
	res, code, msg = rpc(acmeURL, adaToken, "tasks/get", map[string]any{"taskId": long.TaskID, "name": "another"}, withExt)
	if code != -32020 {
		t.Errorf("tasks/get with a mismatched Mcp-Name: %s %d %s, want -32020", res, code, msg)
	}

	// A task is a tool call: the policy that refuses bob the tool refuses his task.
	res, code, msg = rpc(acmeURL, bobToken, "tools/call", map[string]any{"name": "fx__slow_compute", "arguments": map[string]any{"seconds": 1}}, withExt)
	if code != 0 || !bytes.Contains(res, []byte(`"isError":true`)) || !bytes.Contains(res, []byte("no-compute-for-bob")) ||
		bytes.Contains(res, []byte(`"taskId"`)) {
		t.Errorf("bob's call under a policy that refuses him: %s %d %s, want the policy's refusal", res, code, msg)
	}
}

// statelessCall sends one request of the 2026-07-28 era, with the _meta and routing headers a client of it
// sends, and returns its result or its error's code and message.
func statelessCall(tb testing.TB, url, token, method string, params map[string]any, caps map[string]any) (json.RawMessage, int, string) {
	tb.Helper()
	params["_meta"] = map[string]any{"io.modelcontextprotocol/protocolVersion": "2026-07-28",
		"io.modelcontextprotocol/clientCapabilities": caps,
		"io.modelcontextprotocol/clientInfo":         map[string]any{"name": "test", "version": "1"}}
	body, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
	req, _ := http.NewRequestWithContext(tb.Context(), http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Protocol-Version", "2026-07-28")
	req.Header.Set("Mcp-Method", method)
	for _, k := range []string{"taskId", "name"} { // a name given beside a taskId sets the header alone
		if v, ok := params[k].(string); ok {
			req.Header.Set("Mcp-Name", v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("%s: %v", method, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if i := bytes.Index(data, []byte("data: ")); i >= 0 { // an event stream of one answer
		data = bytes.TrimSpace(bytes.SplitN(data[i+6:], []byte("\n"), 2)[0])
	}
	var msg struct {
		Result json.RawMessage `json:"result"`
		Error  *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(data, &msg); err != nil {
		tb.Fatalf("%s answered %d %q", method, resp.StatusCode, data)
	}
	if msg.Error != nil {
		return nil, msg.Error.Code, msg.Error.Message
	}
	return msg.Result, 0, ""
}
