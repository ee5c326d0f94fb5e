package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/internal/mcptest"
)

// TestTasksWithRealServerAndClient runs server-everything, whose simulate-research-query tool runs as
// a task, for three users on one satellite: ada and bob in acme, cy in globex. Ada's TypeScript SDK
// client runs a task to its result, lists it and cancels another; then bob and cy, each with their own
// valid token, present ada's task ids, as is and altered, and learn nothing but "task not found".
func TestTasksWithRealServerAndClient(t *testing.T) {
	t.Parallel()
	srv := quickBackend(t)
	acme, globex := uuid.NewString(), uuid.NewString()
	ada, bob, cy := uuid.NewString(), uuid.NewString(), uuid.NewString()
	command, args := mcptest.Everything(t)
	instance := func(id, teamID, teamSlug, userID, userSlug string) *satellitev1.Instance {
		return &satellitev1.Instance{
			Id: id, ContentHash: "h1", InstallationId: uuid.NewString(), TeamId: teamID, TeamSlug: teamSlug,
			UserId: userID, UserSlug: userSlug, ServerSlug: "everything", ToolPrefix: "everything",
			Transport: satellitev1.Transport_TRANSPORT_STDIO, Command: command, Args: args,
		}
	}
	srv.SetConfiguration("v1", instance("everything-acme-ada-1", acme, "acme", ada, "ada"),
		instance("everything-acme-bob-1", acme, "acme", bob, "bob"),
		instance("everything-globex-cy-1", globex, "globex", cy, "cy"))
	// A task is a tool call like any other: the team's policy that refuses bob the tool refuses his task.
	srv.SetPolicies(&satellitev1.Policy{
		Id: uuid.NewString(), TeamId: acme, Name: "no-research-for-bob", Kind: satellitev1.PolicyKind_POLICY_KIND_DENY,
		Expression: fmt.Sprintf(`user.id == %q && tool.name == "simulate-research-query"`, bob),
	})
	cfg := testConfig(t, srv)
	base := "http://" + cfg.listener.Addr().String()
	token := func(name, teamID, slug, userID string) (string, string) {
		tok := "tasks-test-" + name + "-token"
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

	node, sdkDir := mcptest.TypeScriptSDK(t)
	script, err := filepath.Abs("testdata/tasks-client.mjs")
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithTimeout(t.Context(), time.Minute)
	defer stop()
	out, err := exec.CommandContext(runCtx, node, script, sdkDir, acmeURL, adaToken,
		"everything__simulate-research-query", `{"topic":"orbits"}`).CombinedOutput()
	if err != nil {
		t.Fatalf("TypeScript client: %v\n%s", err, out)
	}
	t.Logf("TypeScript client: %s", out)
	var ts struct {
		Capability      json.RawMessage `json:"capability"`
		TaskID          string          `json:"taskId"`
		Statuses        []string        `json:"statuses"`
		Result          string          `json:"result"`
		Listed          []string        `json:"listed"`
		CancelledID     string          `json:"cancelledId"`
		CancelledStatus string          `json:"cancelledStatus"`
	}
	if err := json.Unmarshal(out, &ts); err != nil {
		t.Fatalf("TypeScript client printed %q: %v", out, err)
	}
	if ts.TaskID == "" || !slices.Contains(ts.Statuses, "completed") || !strings.Contains(ts.Result, "Research Report: orbits") {
		t.Fatalf("TypeScript client saw %+v; want a task that completed with the research report", ts)
	}
	if want := `{"list":{},"cancel":{},"requests":{"tools":{"call":{}}}}`; !jsonEqual(ts.Capability, want) {
		t.Errorf("the endpoint declared tasks %s, want %s", ts.Capability, want)
	}
	if !slices.Contains(ts.Listed, ts.TaskID) {
		t.Errorf("tasks/list gave %q, want it to hold the task %q", ts.Listed, ts.TaskID)
	}
	if ts.CancelledStatus != "cancelled" {
		t.Errorf("task %q is %q after tasks/cancel, want cancelled", ts.CancelledID, ts.CancelledStatus)
	}
	// The ids a client sees are sealed, never the server's own.
	if !strings.HasPrefix(ts.TaskID, "t1.") {
		t.Errorf("task id %q is not a sealed id", ts.TaskID)
	}

	// Ada's own raw requests find her task; with bob's or cy's token, the same request does not.
	rpc := func(url, token, method string, params any) (result json.RawMessage, rpcErr string) {
		t.Helper()
		body, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, url, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Mcp-Protocol-Version", "2025-11-25")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		var msg struct {
			Result json.RawMessage `json:"result"`
			Error  *struct {
				Code    int    `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := json.Unmarshal(data, &msg); err != nil {
			t.Fatalf("%s answered %d %q", method, resp.StatusCode, data)
		}
		if msg.Error != nil {
			return nil, fmt.Sprintf("%d %s", msg.Error.Code, msg.Error.Message)
		}
		return msg.Result, ""
	}
	if res, errMsg := rpc(acmeURL, adaToken, "tasks/get", map[string]string{"taskId": ts.TaskID}); errMsg != "" ||
		!bytes.Contains(res, []byte(`"completed"`)) {
		t.Fatalf("ada's tasks/get of her task: %s %s", res, errMsg)
	}
	altered := strings.Split(ts.TaskID, ".")
	altered[1] = base64URL("everything-acme-bob-1")
	attempts := []struct{ who, url, token, taskID string }{
		{"bob, same team", acmeURL, bobToken, ts.TaskID},
		{"cy, other team", globexURL, cyToken, ts.TaskID},
		{"bob, id pointed at his own instance", acmeURL, bobToken, strings.Join(altered, ".")},
		{"ada, id pointed at bob's instance", acmeURL, adaToken, strings.Join(altered, ".")},
		{"bob, garbage", acmeURL, bobToken, "not-a-task"},
	}
	for _, a := range attempts {
		for _, method := range []string{"tasks/get", "tasks/result", "tasks/cancel"} {
			res, errMsg := rpc(a.url, a.token, method, map[string]string{"taskId": a.taskID})
			if errMsg != "-32602 task not found" {
				t.Errorf("%s: %s answered %s %q, want -32602 task not found", a.who, method, res, errMsg)
			}
		}
	}
	for _, who := range []struct{ url, token string }{{acmeURL, bobToken}, {globexURL, cyToken}} {
		res, errMsg := rpc(who.url, who.token, "tasks/list", map[string]any{})
		if errMsg != "" || bytes.Contains(res, []byte(ts.TaskID)) || bytes.Contains(res, []byte(ts.CancelledID)) {
			t.Errorf("another user's tasks/list: %s %s, want a list without ada's tasks", res, errMsg)
		}
	}
	res, errMsg := rpc(acmeURL, bobToken, "tools/call", map[string]any{
		"name": "everything__simulate-research-query", "arguments": map[string]any{"topic": "orbits"}, "task": map[string]any{},
	})
	if errMsg != "" || !bytes.Contains(res, []byte(`"isError":true`)) || !bytes.Contains(res, []byte(`no-research-for-bob`)) ||
		bytes.Contains(res, []byte(`"task"`)) {
		t.Errorf("bob's task-augmented call under a policy that refuses him: %s %s, want the policy's refusal", res, errMsg)
	}
	// Ada's task survived the attempts, cancellations included.
	if res, errMsg := rpc(acmeURL, adaToken, "tasks/get", map[string]string{"taskId": ts.TaskID}); errMsg != "" ||
		!bytes.Contains(res, []byte(`"completed"`)) {
		t.Errorf("ada's task after the attempts: %s %s", res, errMsg)
	}
}

func base64URL(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func jsonEqual(got json.RawMessage, want string) bool {
	var a, b any
	return json.Unmarshal(got, &a) == nil && json.Unmarshal([]byte(want), &b) == nil && reflect.DeepEqual(a, b)
}
