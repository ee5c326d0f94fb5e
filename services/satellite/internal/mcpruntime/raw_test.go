package mcpruntime_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/internal/mcptest"
	"github.com/orrery/orrery/services/satellite/internal/mcpruntime"
)

// TestRequestCarriesTasks drives the reference server's task tool through Request: the SDK's client
// has no tasks methods, so they travel beside its session on the same connection.
func TestRequestCarriesTasks(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	in := everything(t, "everything")
	b.apply(t, in)
	b.waitStatus(t, in.Id, online)
	if caps := b.rt.Capability(in.Id, "tasks"); !json.Valid(caps) || len(caps) == 0 {
		t.Fatalf("tasks capability %q, want the server's declaration", caps)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	created, err := b.rt.Request(ctx, in.Id, "tools/call",
		json.RawMessage(`{"name":"simulate-research-query","arguments":{"topic":"orbits"},"task":{"ttl":60000}}`))
	if err != nil {
		t.Fatalf("task-augmented tools/call: %v", err)
	}
	var c struct {
		Task struct {
			TaskID string `json:"taskId"`
			Status string `json:"status"`
		} `json:"task"`
	}
	if err := json.Unmarshal(created, &c); err != nil || c.Task.TaskID == "" || c.Task.Status != "working" {
		t.Fatalf("CreateTaskResult %s (%v)", created, err)
	}
	idParams, _ := json.Marshal(map[string]string{"taskId": c.Task.TaskID})
	for {
		got, err := b.rt.Request(ctx, in.Id, "tasks/get", idParams)
		if err != nil {
			t.Fatalf("tasks/get: %v", err)
		}
		var task struct{ Status string }
		_ = json.Unmarshal(got, &task)
		if task.Status == "completed" {
			break
		}
		if task.Status != "working" {
			t.Fatalf("task status %q: %s", task.Status, got)
		}
		time.Sleep(200 * time.Millisecond) // the client's poll interval, not a synchronisation
	}
	result, err := b.rt.Request(ctx, in.Id, "tasks/result", idParams)
	if err != nil {
		t.Fatalf("tasks/result: %v", err)
	}
	var r struct {
		Content []struct{ Text string } `json:"content"`
	}
	if json.Unmarshal(result, &r) != nil || len(r.Content) == 0 || r.Content[0].Text == "" {
		t.Fatalf("tasks/result %s", result)
	}

	_, err = b.rt.Request(ctx, in.Id, "tasks/get", json.RawMessage(`{"taskId":"no-such-task"}`))
	var werr *jsonrpc.Error
	if !errors.As(err, &werr) {
		t.Fatalf("tasks/get of an unknown task: %v, want the server's JSON-RPC error", err)
	}
	callEcho(t, b.rt, in.Id, "the session still works beside the tasks")
}

// TestCapabilityOutlivesDormancy keeps a dormant instance's declared capabilities, so that the endpoint
// still offers tasks for it and a call wakes it.
func TestCapabilityOutlivesDormancy(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *mcpruntime.Config) { c.IdleTimeout = 300 * time.Millisecond })
	in := everything(t, "everything")
	b.apply(t, in)
	b.waitStatus(t, in.Id, satellitev1.InstanceStatus_INSTANCE_STATUS_DORMANT)
	if caps := b.rt.Capability(in.Id, "tasks"); len(caps) == 0 {
		t.Fatal("a dormant instance lost its server's tasks capability")
	}
	if caps := b.rt.Capability(in.Id, "no-such-capability"); caps != nil {
		t.Fatalf("undeclared capability: %s", caps)
	}
	if caps := b.rt.Capability("no-such-instance", "tasks"); caps != nil {
		t.Fatalf("unknown instance: %s", caps)
	}
}

// TestToolTaskSupport keeps what each tool of a stdio server declared as its execution.taskSupport in
// tools/list, which the SDK's Tool type drops: the gateway decides by it which calls run as tasks.
func TestToolTaskSupport(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	in := stdioInstance("fixture", mcptest.TaskServer(t))
	b.apply(t, in)
	b.waitStatus(t, in.Id, online)
	for tool, want := range map[string]string{
		"greet": "", "slow_compute": "optional", "failing_job": "required", "test_tool_with_task": "required", "no_such_tool": "",
	} {
		if got := b.rt.ToolTaskSupport(in.Id, tool); got != want {
			t.Errorf("ToolTaskSupport(%s) = %q, want %q", tool, got, want)
		}
	}
	if got := b.rt.ToolTaskSupport("no-such-instance", "slow_compute"); got != "" {
		t.Errorf("ToolTaskSupport of an unknown instance = %q", got)
	}
}

// TestSessionRequest sends a tools/call over an instance's session's connection without the SDK's
// client: the result comes back as the server wrote it, and a session that is not the instance's live
// one is refused, so that the caller uses the session instead.
func TestSessionRequest(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	in := everything(t, "everything")
	b.apply(t, in)
	b.waitStatus(t, in.Id, online)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cs, err := b.rt.Session(ctx, in.Id)
	if err != nil {
		t.Fatal(err)
	}
	res, err := b.rt.SessionRequest(ctx, in.Id, cs, "tools/call", json.RawMessage(`{"name":"echo","arguments":{"message":"raw"}}`))
	if err != nil {
		t.Fatalf("SessionRequest: %v", err)
	}
	var r struct {
		Content []struct{ Type, Text string } `json:"content"`
	}
	if json.Unmarshal(res, &r) != nil || len(r.Content) != 1 || r.Content[0].Text != "Echo: raw" {
		t.Fatalf("echo through SessionRequest = %s", res)
	}
	if _, err := b.rt.SessionRequest(ctx, in.Id, nil, "tools/call", json.RawMessage(`{"name":"echo"}`)); !errors.Is(err, mcpruntime.ErrNoRawChannel) {
		t.Fatalf("SessionRequest on a session that is not the instance's: %v, want ErrNoRawChannel", err)
	}
	callEcho(t, b.rt, in.Id, "the session still works beside raw calls")
}
