package mcpruntime_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/internal/mcptest"
	"github.com/orrery/orrery/services/satellite/internal/desired"
	"github.com/orrery/orrery/services/satellite/internal/mcpruntime"
	"github.com/orrery/orrery/services/satellite/internal/sandbox"
)

// waitLimit bounds every wait; starts of node servers take about a second on a busy machine.
const waitLimit = 30 * time.Second

// recorder is an Emitter that keeps every event.
type recorder struct {
	mu      sync.Mutex
	events  []*satellitev1.Event
	changed chan struct{}
}

func newRecorder() *recorder { return &recorder{changed: make(chan struct{})} }

func (r *recorder) Emit(ev *satellitev1.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev)
	close(r.changed)
	r.changed = make(chan struct{})
}

// of returns the events of one instance.
func (r *recorder) of(id string) []*satellitev1.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var evs []*satellitev1.Event
	for _, ev := range r.events {
		if ev.GetInstanceId() == id {
			evs = append(evs, ev)
		}
	}
	return evs
}

// wait waits until cond holds for the events of instance id.
func (r *recorder) wait(t *testing.T, id, what string, cond func([]*satellitev1.Event) bool) []*satellitev1.Event {
	t.Helper()
	deadline := time.After(waitLimit)
	for {
		r.mu.Lock()
		changed := r.changed
		r.mu.Unlock()
		if evs := r.of(id); cond(evs) {
			return evs
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("%s: %s did not happen; events:\n%s", id, what, describe(r.of(id)))
		}
	}
}

func describe(evs []*satellitev1.Event) string {
	var b strings.Builder
	for _, ev := range evs {
		switch p := ev.GetPayload().(type) {
		case *satellitev1.Event_StatusChanged:
			b.WriteString("status " + p.StatusChanged.GetStatus().String() + " " + p.StatusChanged.GetMessage())
		case *satellitev1.Event_Lifecycle:
			b.WriteString("lifecycle " + p.Lifecycle.GetKind().String() + " " + p.Lifecycle.GetReason())
		case *satellitev1.Event_ServerLog:
			b.WriteString("log " + p.ServerLog.GetMessage())
		case *satellitev1.Event_ToolsDiscovered:
			b.WriteString("tools_discovered")
		case *satellitev1.Event_RequestLog:
			b.WriteString("request " + p.RequestLog.GetToolName())
		}
		b.WriteByte('\n')
	}
	return b.String()
}

func statuses(evs []*satellitev1.Event) []satellitev1.InstanceStatus {
	var list []satellitev1.InstanceStatus
	for _, ev := range evs {
		if s := ev.GetStatusChanged(); s != nil {
			list = append(list, s.GetStatus())
		}
	}
	return list
}

func lifecycles(evs []*satellitev1.Event) []*satellitev1.Lifecycle {
	var list []*satellitev1.Lifecycle
	for _, ev := range evs {
		if lc := ev.GetLifecycle(); lc != nil {
			list = append(list, lc)
		}
	}
	return list
}

func logLines(evs []*satellitev1.Event) []string {
	var list []string
	for _, ev := range evs {
		if l := ev.GetServerLog(); l != nil {
			list = append(list, l.GetMessage())
		}
	}
	return list
}

type bundle struct {
	rt     *mcpruntime.Runtime
	view   *desired.View
	events *recorder
	dir    string
	// stop ends Run and waits for it to return; the test's cleanup calls it too.
	stop func()
}

// setup runs a Runtime until the test ends. Delays are short so that crash tests run fast.
func setup(t *testing.T, tune func(*mcpruntime.Config)) *bundle {
	t.Helper()
	b := &bundle{view: desired.New(), events: newRecorder(), dir: t.TempDir()}
	cfg := mcpruntime.Config{
		Desired:       b.view,
		Events:        b.events,
		Driver:        sandbox.Direct{},
		WorkDir:       filepath.Join(b.dir, "instances"),
		StopGrace:     2 * time.Second,
		RestartDelays: []time.Duration{50 * time.Millisecond},
		StartTimeout:  waitLimit,
	}
	if tune != nil {
		tune(&cfg)
	}
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	rt, err := mcpruntime.New(logger, cfg)
	if err != nil {
		t.Fatal(err)
	}
	b.rt = rt
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rt.Run(ctx) }()
	var once sync.Once
	b.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(b.stop)
	return b
}

// apply makes instances the desired configuration.
func (b *bundle) apply(t *testing.T, instances ...*satellitev1.Instance) {
	t.Helper()
	if _, err := b.view.Apply(instances); err != nil {
		t.Fatal(err)
	}
}

// waitFor waits until the instance satisfies cond, and returns it.
func (b *bundle) waitFor(t *testing.T, id, what string, cond func(mcpruntime.InstanceInfo) bool) mcpruntime.InstanceInfo {
	t.Helper()
	changes, stop := b.rt.Subscribe("", "")
	defer stop()
	deadline := time.After(waitLimit)
	for {
		info, _ := b.rt.Instance(id) // zero once removed
		if cond(info) {
			return info
		}
		select {
		case <-changes:
		case <-deadline:
			t.Fatalf("%s: %s did not happen (now %v: %s); events:\n%s", id, what, info.Status, info.Message,
				describe(b.events.of(id)))
		}
	}
}

func (b *bundle) waitStatus(t *testing.T, id string, status satellitev1.InstanceStatus) mcpruntime.InstanceInfo {
	t.Helper()
	return b.waitFor(t, id, "status "+status.String(), func(i mcpruntime.InstanceInfo) bool { return i.Status == status })
}

const online = satellitev1.InstanceStatus_INSTANCE_STATUS_ONLINE

var teamID = uuid.NewString()

// stdioInstance is an instance running command.
func stdioInstance(name, command string, args ...string) *satellitev1.Instance {
	return &satellitev1.Instance{
		Id:             name + "-platform-ada-" + uuid.NewString(),
		ContentHash:    "h1",
		InstallationId: uuid.NewString(),
		TeamId:         teamID,
		TeamSlug:       "platform",
		UserId:         uuid.NewString(),
		UserSlug:       "ada",
		ServerSlug:     name,
		ServerName:     name,
		Transport:      satellitev1.Transport_TRANSPORT_STDIO,
		Command:        command,
		Args:           args,
	}
}

// everything is an instance of the reference server over stdio.
func everything(t *testing.T, name string) *satellitev1.Instance {
	t.Helper()
	command, args := mcptest.Everything(t)
	return stdioInstance(name, command, args...)
}

// everythingScript is an instance that runs script in sh, where "$@" starts the reference server.
func everythingScript(t *testing.T, name, script string) *satellitev1.Instance {
	t.Helper()
	command, args := mcptest.Everything(t)
	return stdioInstance(name, "sh", append([]string{"-c", script, "sh", command}, args...)...)
}

// callTool calls a tool the way the team endpoint does: on the instance's shared session, which Session
// starts or wakes as needed.
func callTool(ctx context.Context, rt *mcpruntime.Runtime, id string, params *mcp.CallToolParams) (*mcp.CallToolResult, error) {
	session, err := rt.Session(ctx, id)
	if err != nil {
		return nil, err
	}
	return session.CallTool(ctx, params)
}

func callEcho(t *testing.T, rt *mcpruntime.Runtime, id, message string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
	defer cancel()
	res, err := callTool(ctx, rt, id, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"message": message}})
	if err != nil {
		t.Fatalf("call echo: %v", err)
	}
	if got := text(res); got != "Echo: "+message {
		t.Fatalf("echo answered %q", got)
	}
}

func text(res *mcp.CallToolResult) string {
	for _, c := range res.Content {
		if t, ok := c.(*mcp.TextContent); ok {
			return t.Text
		}
	}
	return ""
}

func names[T any](items []*T, name func(*T) string) []string {
	var list []string
	for _, it := range items {
		list = append(list, name(it))
	}
	slices.Sort(list)
	return list
}
