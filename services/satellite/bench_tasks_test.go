package main

import (
	"encoding/json"
	"fmt"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/orrery/orrery/internal/mcptest"
)

// BenchmarkTaskExtension measures the tasks extension through the endpoint, with the repo's task fixture
// server (experimental tasks only) as a stdio instance and a stateless 2026-07-28 client:
//
//   - plain: slow_compute with seconds 0 from a client without the extension, a synchronous call;
//   - create: the same call from a client with it, which the endpoint turns into a task-augmented call
//     and answers with a CreateTaskResult;
//   - to result: create, then tasks/get until the task completed (each tasks/get at once, no poll
//     interval), the time until the client has the result;
//   - get: tasks/get of a completed task, answered from the endpoint's record.
//
// Memory: the Go heap and stacks per task that runs (its record, the goroutine waiting on the server's
// tasks/result and its pending request), with 100 running.
func BenchmarkTaskExtension(b *testing.B) {
	const calls = 40 // each path; every task's record is kept for the fixture's ttl, within the user's 200
	s := startSatellite(b)
	in := s.instance("fx", mcptest.TaskServer(b))
	s.apply(b, in)
	s.waitOnline(b, in.GetId())
	withExt := map[string]any{"extensions": map[string]any{"io.modelcontextprotocol/tasks": map[string]any{}}}
	call := func(method string, params map[string]any, caps map[string]any) json.RawMessage {
		res, code, msg := statelessCall(b, s.endpoint, "bench", method, params, caps)
		if code != 0 {
			b.Fatalf("%s: %d %s", method, code, msg)
		}
		return res
	}
	compute := func(caps map[string]any) json.RawMessage {
		return call("tools/call", map[string]any{"name": "fx__slow_compute", "arguments": map[string]any{"seconds": 0, "label": "b"}}, caps)
	}
	taskID := func(res json.RawMessage) string {
		var v struct {
			TaskID string `json:"taskId"`
		}
		if json.Unmarshal(res, &v) != nil || v.TaskID == "" {
			b.Fatalf("no task: %s", res)
		}
		return v.TaskID
	}
	status := func(id string) string {
		var v struct {
			Status string `json:"status"`
		}
		_ = json.Unmarshal(call("tasks/get", map[string]any{"taskId": id}, withExt), &v)
		return v.Status
	}
	var completed string
	var gets int
	paths := []struct {
		name string
		run  func()
	}{
		{"plain call, no extension", func() { compute(map[string]any{}) }},
		{"create (CreateTaskResult)", func() { completed = taskID(compute(withExt)) }},
		{"create, then tasks/get to the result", func() {
			id := taskID(compute(withExt))
			for status(id) != "completed" {
				gets++
			}
			gets++
		}},
		{"tasks/get of a completed task", func() {
			if completed != "" {
				status(completed)
			}
		}},
	}
	samples := make([][]time.Duration, len(paths))
	for b.Loop() {
		for n := range calls {
			for k := range paths {
				i := (n + k) % len(paths)
				start := time.Now()
				paths[i].run()
				samples[i] = append(samples[i], time.Since(start))
			}
		}
	}
	b.Logf("%-40s %10s %10s", fmt.Sprint(calls)+" calls each", "p50", "p99")
	for i, p := range paths {
		slices.Sort(samples[i])
		b.Logf("%-40s %10v %10v", p.name, quantile(samples[i], 0.5).Round(time.Microsecond), quantile(samples[i], 0.99).Round(time.Microsecond))
		b.ReportMetric(micros(quantile(samples[i], 0.5)), fmt.Sprintf("path%d-p50-µs", i))
	}
	b.Logf("tasks/get per task to its result: %.1f", float64(gets)/float64(len(samples[2])))

	// Memory per running task.
	const running = 100
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	ids := make([]string, 0, running)
	for range running {
		ids = append(ids, taskID(call("tools/call", map[string]any{"name": "fx__slow_compute",
			"arguments": map[string]any{"seconds": 60, "label": "m"}}, withExt)))
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	perTask := float64(int64(after.HeapAlloc+after.StackInuse)-int64(before.HeapAlloc+before.StackInuse)) / running
	b.Logf("heap and stacks per running task: %.0f B (%d running)", perTask, running)
	b.ReportMetric(perTask, "B/running-task")
	for _, id := range ids {
		call("tasks/cancel", map[string]any{"taskId": id}, withExt)
	}
}
