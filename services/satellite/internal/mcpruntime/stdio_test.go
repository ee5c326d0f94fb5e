package mcpruntime_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"google.golang.org/protobuf/proto"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/services/satellite/internal/mcpruntime"
	"github.com/orrery/orrery/services/satellite/internal/sandbox"
)

func TestStdioDiscoveryAndCalls(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var progress []float64
	b := setup(t, func(c *mcpruntime.Config) {
		c.OnProgress = func(_ context.Context, req *mcp.ProgressNotificationClientRequest) {
			mu.Lock()
			defer mu.Unlock()
			if req.Params.ProgressToken != "caller-token" {
				t.Errorf("progress token %v, want the caller's", req.Params.ProgressToken)
			}
			progress = append(progress, req.Params.Progress)
		}
	})
	in := everything(t, "everything")
	in.Env = map[string]string{"ORRERY_TEST_VALUE": "from-config"}
	in.RequestLoggingEnabled = true
	b.apply(t, in)
	info := b.waitStatus(t, in.GetId(), online)

	// Discovery found the whole catalogue.
	tools := names(info.Tools, func(t *mcp.Tool) string { return t.Name })
	for _, want := range []string{"echo", "get-env", "get-sum", "trigger-long-running-operation"} {
		if !slices.Contains(tools, want) {
			t.Errorf("tools %v lack %s", tools, want)
		}
	}
	if len(info.Resources) == 0 || len(info.Prompts) == 0 {
		t.Errorf("discovered %d resources and %d prompts, want some of each", len(info.Resources), len(info.Prompts))
	}
	if info.ServerInfo == nil || info.Capabilities == nil || info.Revision == 0 || info.Pid == 0 {
		t.Errorf("info lacks server info, capabilities, revision or pid: %+v", info)
	}
	evs := b.events.of(in.GetId())
	want := []satellitev1.InstanceStatus{
		satellitev1.InstanceStatus_INSTANCE_STATUS_PROVISIONING,
		satellitev1.InstanceStatus_INSTANCE_STATUS_CONNECTING,
		satellitev1.InstanceStatus_INSTANCE_STATUS_DISCOVERING_TOOLS,
		online,
	}
	if got := statuses(evs); !slices.Equal(got, want) {
		t.Errorf("statuses %v, want %v", got, want)
	}
	if lcs := lifecycles(evs); len(lcs) != 1 || lcs[0].GetKind() != satellitev1.LifecycleKind_LIFECYCLE_KIND_STARTED {
		t.Errorf("lifecycle events %v, want one started", lcs)
	}
	for _, ev := range evs {
		if ev.GetTeamId() != in.GetTeamId() || ev.GetInstallationId() != in.GetInstallationId() {
			t.Errorf("event %v lacks the instance's team or installation", ev)
		}
	}
	// mcp.tools.discovered carries the schemas and token estimates.
	var discovered *satellitev1.ToolsDiscovered
	for _, ev := range evs {
		if td := ev.GetToolsDiscovered(); td != nil {
			discovered = td
		}
	}
	if discovered == nil || len(discovered.GetTools()) != len(info.Tools) {
		t.Fatalf("tools_discovered = %v, want %d tools", discovered, len(info.Tools))
	}
	for _, tool := range discovered.GetTools() {
		if tool.GetName() != "echo" {
			continue
		}
		if _, ok := tool.GetInputSchema().GetFields()["properties"].GetStructValue().GetFields()["message"]; !ok {
			t.Errorf("echo's input schema lacks its message property: %v", tool.GetInputSchema())
		}
		i := slices.IndexFunc(info.Tools, func(t *mcp.Tool) bool { return t.Name == "echo" })
		if tool.GetTokenCount() == 0 || tool.GetTokenCount() != mcpruntime.ToolTokens(info.Tools[i]) {
			t.Errorf("echo's token count %d, want the estimate %d", tool.GetTokenCount(), mcpruntime.ToolTokens(info.Tools[i]))
		}
	}

	// Calls, several at once, share the one process.
	var wg sync.WaitGroup
	for i := range 5 {
		wg.Go(func() { callEcho(t, b.rt, in.GetId(), "hello "+strconv.Itoa(i)) })
	}
	wg.Wait()
	ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
	defer cancel()
	res, err := callTool(ctx, b.rt, in.GetId(), &mcp.CallToolParams{Name: "get-env"})
	if err != nil {
		t.Fatal(err)
	}
	if env := text(res); !strings.Contains(env, `"ORRERY_TEST_VALUE": "from-config"`) {
		t.Errorf("the server's environment lacks its configured variable: %s", env)
	}

	// Progress reaches Config.OnProgress with the token the caller put in the request.
	params := &mcp.CallToolParams{Name: "trigger-long-running-operation", Arguments: map[string]any{"duration": 0.2, "steps": 2}}
	params.SetProgressToken("caller-token")
	res, err = callTool(ctx, b.rt, in.GetId(), params)
	if err != nil || !strings.Contains(text(res), "completed") {
		t.Fatalf("long-running operation: %v %v", text(res), err)
	}
	// The last notification may race the result and arrive after the call is over, when nobody wants it.
	mu.Lock()
	if len(progress) == 0 || !slices.IsSorted(progress) || progress[0] != 1 {
		t.Errorf("progress %v, want 1, 2 (2 may be late)", progress)
	}
	mu.Unlock()

	// Request logs are the team endpoint's to write; the runtime's calls leave none.
	for _, ev := range b.events.of(in.GetId()) {
		if rl := ev.GetRequestLog(); rl != nil {
			t.Errorf("the runtime wrote a request log: %v", rl)
		}
	}

	// The heartbeat's view of the process.
	reports := b.rt.Processes()
	if len(reports) != 1 {
		t.Fatalf("%d process reports", len(reports))
	}
	p := reports[0]
	if p.GetPid() != int32(info.Pid) || p.GetMemoryBytes() < 1<<20 || p.GetUptime().AsDuration() <= 0 ||
		p.GetRequestCount() != 7 || p.GetHealth() != satellitev1.ProcessHealth_PROCESS_HEALTH_HEALTHY ||
		p.GetStatus() != online || p.GetTeamId() != in.GetTeamId() {
		t.Errorf("process report %v", p)
	}
}

func TestCrashedServerRestarts(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	in := everything(t, "crashy")
	b.apply(t, in)
	before := b.waitStatus(t, in.GetId(), online)

	if err := syscall.Kill(before.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	after := b.waitFor(t, in.GetId(), "online with a new process", func(i mcpruntime.InstanceInfo) bool {
		return i.Status == online && i.Pid != 0 && i.Pid != before.Pid
	})
	if after.Crashes != 1 {
		t.Errorf("crash count %d, want 1", after.Crashes)
	}
	evs := b.events.of(in.GetId())
	var kinds []satellitev1.LifecycleKind
	for _, lc := range lifecycles(evs) {
		kinds = append(kinds, lc.GetKind())
		if lc.GetKind() == satellitev1.LifecycleKind_LIFECYCLE_KIND_CRASHED && (lc.GetCrashCount() != 1 || lc.GetExitCode() != -1) {
			t.Errorf("crash event %v, want crash 1 with exit code -1 (killed)", lc)
		}
	}
	wantKinds := []satellitev1.LifecycleKind{
		satellitev1.LifecycleKind_LIFECYCLE_KIND_STARTED,
		satellitev1.LifecycleKind_LIFECYCLE_KIND_CRASHED,
		satellitev1.LifecycleKind_LIFECYCLE_KIND_RESTARTED,
	}
	if !slices.Equal(kinds, wantKinds) {
		t.Errorf("lifecycle %v, want %v", kinds, wantKinds)
	}
	got := statuses(evs)
	wantTail := []satellitev1.InstanceStatus{
		online,
		satellitev1.InstanceStatus_INSTANCE_STATUS_CRASHED,
		satellitev1.InstanceStatus_INSTANCE_STATUS_RESTARTING,
		satellitev1.InstanceStatus_INSTANCE_STATUS_CONNECTING,
		satellitev1.InstanceStatus_INSTANCE_STATUS_DISCOVERING_TOOLS,
		online,
	}
	if len(got) < len(wantTail) || !slices.Equal(got[len(got)-len(wantTail):], wantTail) {
		t.Errorf("statuses %v, want them to end in %v", got, wantTail)
	}
	callEcho(t, b.rt, in.GetId(), "back again")
}

func TestCrashLoopEndsPermanentlyFailed(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *mcpruntime.Config) {
		c.RestartDelays = []time.Duration{10 * time.Millisecond, 20 * time.Millisecond}
	})
	fixed := filepath.Join(b.dir, "fixed")
	// The server fails at once until the file "fixed" exists.
	in := everythingScript(t, "flaky", `if [ -e '`+fixed+`' ]; then exec "$@"; fi; echo "cannot start: config missing" >&2; exit 3`)
	b.apply(t, in)
	info := b.waitStatus(t, in.GetId(), satellitev1.InstanceStatus_INSTANCE_STATUS_PERMANENTLY_FAILED)
	if info.Crashes != 3 || !strings.Contains(info.Message, "crashed 3 times") {
		t.Errorf("permanently failed with %d crashes: %s", info.Crashes, info.Message)
	}

	evs := b.events.of(in.GetId())
	var crashes, restarts, failures int
	for _, lc := range lifecycles(evs) {
		switch lc.GetKind() {
		case satellitev1.LifecycleKind_LIFECYCLE_KIND_CRASHED:
			crashes++
			if lc.GetExitCode() != 3 || lc.GetCrashCount() != uint32(crashes) {
				t.Errorf("crash event %v, want exit code 3 and crash count %d", lc, crashes)
			}
		case satellitev1.LifecycleKind_LIFECYCLE_KIND_RESTARTED:
			restarts++
		case satellitev1.LifecycleKind_LIFECYCLE_KIND_PERMANENTLY_FAILED:
			failures++
		}
	}
	if crashes != 3 || restarts != 2 || failures != 1 {
		t.Errorf("%d crashes, %d restarts, %d permanent failures; want 3, 2, 1", crashes, restarts, failures)
	}
	if !slices.ContainsFunc(logLines(evs), func(l string) bool { return l == "cannot start: config missing" }) {
		t.Errorf("the server's stderr is not in its logs: %q", logLines(evs))
	}
	// It stays down, calls included, until a restart command.
	if _, err := b.rt.Acquire(t.Context(), in.GetId()); !errors.Is(err, mcpruntime.ErrPermanentlyFailed) {
		t.Errorf("Acquire of a permanently failed instance: %v", err)
	}
	if err := os.WriteFile(fixed, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// The restart as the control plane's RestartInstance queues it: the instance, by id, in its team.
	outcomes, err := b.rt.Restart(t.Context(), in.GetTeamId(),
		&satellitev1.InstanceSelector{Target: &satellitev1.InstanceSelector_InstanceId{InstanceId: in.GetId()}},
		satellitev1.RestartReason_RESTART_REASON_MANUAL_RESTART)
	if err != nil {
		t.Fatal(err)
	}
	if len(outcomes) != 1 || outcomes[0].GetStatus() != online {
		t.Errorf("restart outcomes %v, want online", outcomes)
	}
	callEcho(t, b.rt, in.GetId(), "fixed")
}

// TestStopLeavesNothing stops servers that start helpers and ignore SIGTERM: by removal from the
// configuration, by a kill command and by the runtime's shutdown.
func TestStopLeavesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *mcpruntime.Config) { c.StopGrace = 300 * time.Millisecond })
	helperPIDs := func(t *testing.T, name string) *satellitev1.Instance {
		// The helper (sleep) and the server itself (node) ignore SIGTERM, inherited from the shell.
		return everythingScript(t, name, `trap "" TERM; sleep 1000 & echo $! > '`+filepath.Join(b.dir, name+".helper")+`'; exec "$@"`)
	}
	removed, killed, last := helperPIDs(t, "removed"), helperPIDs(t, "killed"), helperPIDs(t, "last")
	b.apply(t, removed, killed, last)
	procs := map[string][2]int{}
	for _, in := range []*satellitev1.Instance{removed, killed, last} {
		info := b.waitStatus(t, in.GetId(), online)
		data, err := os.ReadFile(filepath.Join(b.dir, in.GetServerSlug()+".helper"))
		if err != nil {
			t.Fatal(err)
		}
		helper, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil {
			t.Fatal(err)
		}
		procs[in.GetServerSlug()] = [2]int{info.Pid, helper}
	}
	gone := func(name string) {
		t.Helper()
		p := procs[name]
		if sandbox.ProcessAlive(p[0]) || sandbox.ProcessAlive(p[1]) || sandbox.GroupAlive(p[0]) {
			t.Errorf("%s: server %d alive %v, helper %d alive %v, group alive %v", name, p[0],
				sandbox.ProcessAlive(p[0]), p[1], sandbox.ProcessAlive(p[1]), sandbox.GroupAlive(p[0]))
		}
	}

	// Removal: Reconcile returns once the instance has stopped, whether this call or Run's did the work.
	b.apply(t, killed, last)
	if _, err := b.rt.Reconcile(t.Context()); err != nil {
		t.Fatal(err)
	}
	if hasInstance(b.rt, removed.GetId()) {
		t.Error("the removed instance is still listed")
	}
	if entries, _ := os.ReadDir(filepath.Join(b.dir, "instances")); len(entries) != 2 {
		t.Errorf("%d working directories left, want those of the 2 remaining instances", len(entries))
	}
	gone("removed")

	// Kill: stopped and held stopped, calls included, until spawned again.
	outcomes, err := b.rt.Kill(t.Context(), killed.GetTeamId(),
		&satellitev1.InstanceSelector{Target: &satellitev1.InstanceSelector_InstallationId{InstallationId: killed.GetInstallationId()}})
	if err != nil {
		t.Fatal(err)
	}
	if len(outcomes) != 1 || outcomes[0].Status != satellitev1.InstanceStatus_INSTANCE_STATUS_OFFLINE {
		t.Errorf("kill outcomes %+v", outcomes)
	}
	gone("killed")
	if _, err := b.rt.Acquire(t.Context(), killed.GetId()); !errors.Is(err, mcpruntime.ErrStopped) {
		t.Errorf("Acquire of a killed instance: %v", err)
	}
	if outcomes, err := b.rt.Spawn(t.Context(), killed.GetTeamId(),
		&satellitev1.InstanceSelector{Target: &satellitev1.InstanceSelector_InstanceId{InstanceId: killed.GetId()}}); err != nil || outcomes[0].GetStatus() != online {
		t.Errorf("spawn: %+v, %v", outcomes, err)
	}
	respawned, _ := b.rt.Instance(killed.GetId())
	data, err := os.ReadFile(filepath.Join(b.dir, "killed.helper"))
	if err != nil {
		t.Fatal(err)
	}
	helper, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || helper == procs["killed"][1] {
		t.Fatalf("helper of the respawned server: %q, %v", data, err)
	}
	procs["killed"] = [2]int{respawned.Pid, helper}

	// Shutdown stops everything that runs.
	b.stop()
	gone("last")
	gone("killed")
	if lines := statuses(b.events.of(last.GetId())); lines[len(lines)-1] != satellitev1.InstanceStatus_INSTANCE_STATUS_OFFLINE {
		t.Errorf("after shutdown the last status is %v, want offline", lines[len(lines)-1])
	}
}

func hasInstance(rt *mcpruntime.Runtime, id string) bool {
	_, ok := rt.Instance(id)
	return ok
}

func TestIdleServerGoesDormantAndWakesOnCall(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *mcpruntime.Config) { c.IdleTimeout = 300 * time.Millisecond })
	in := everything(t, "sleepy")
	b.apply(t, in)
	first := b.waitStatus(t, in.GetId(), online)
	dormant := b.waitStatus(t, in.GetId(), satellitev1.InstanceStatus_INSTANCE_STATUS_DORMANT)
	if dormant.Pid != 0 || sandbox.ProcessAlive(first.Pid) {
		t.Errorf("dormant instance still runs pid %d", first.Pid)
	}
	if len(dormant.Tools) == 0 {
		t.Error("a dormant instance forgot its tools")
	}

	callEcho(t, b.rt, in.GetId(), "wake up")
	woken, _ := b.rt.Instance(in.GetId())
	if woken.Pid == 0 || woken.Pid == first.Pid {
		t.Errorf("after the call pid %d, want a new process", woken.Pid)
	}
	lcs := lifecycles(b.events.of(in.GetId()))
	if len(lcs) != 2 || lcs[1].GetKind() != satellitev1.LifecycleKind_LIFECYCLE_KIND_STARTED || !strings.Contains(lcs[1].GetReason(), "dormant") {
		t.Errorf("lifecycle %v, want a second start from dormant", lcs)
	}

	// A call that outlasts the idle timeout keeps the server up, even through a bare session.
	session, err := b.rt.Session(t.Context(), in.GetId())
	if err != nil {
		t.Fatal(err)
	}
	res, err := session.CallTool(t.Context(), &mcp.CallToolParams{Name: "trigger-long-running-operation",
		Arguments: map[string]any{"duration": 0.8, "steps": 1}})
	if err != nil || !strings.Contains(text(res), "completed") {
		t.Fatalf("a call longer than the idle timeout: %v %v", res, err)
	}
	if info, _ := b.rt.Instance(in.GetId()); info.Pid != woken.Pid || info.Requests != 2 {
		t.Errorf("after the long call pid %d (want %d) and %d requests (want 2)", info.Pid, woken.Pid, info.Requests)
	}
	b.waitStatus(t, in.GetId(), satellitev1.InstanceStatus_INSTANCE_STATUS_DORMANT)
}

func TestReconcileByContentHash(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	changed, unchanged := everything(t, "changed"), everything(t, "unchanged")
	b.apply(t, changed, unchanged)
	c1 := b.waitStatus(t, changed.GetId(), online)
	u1 := b.waitStatus(t, unchanged.GetId(), online)

	changed2 := proto.CloneOf(changed)
	changed2.ContentHash = "h2"
	changed2.Env = map[string]string{"NEW_SETTING": "1"}
	// The unchanged instance comes as a new message with the same hash, as from a new configuration.
	b.apply(t, changed2, proto.CloneOf(unchanged))
	c2 := b.waitFor(t, changed.GetId(), "restart with the new configuration", func(i mcpruntime.InstanceInfo) bool {
		return i.Status == online && i.Pid != 0 && i.Pid != c1.Pid
	})
	if sandbox.ProcessAlive(c1.Pid) {
		t.Errorf("the old process %d of the changed instance still runs", c1.Pid)
	}
	lcs := lifecycles(b.events.of(changed.GetId()))
	if last := lcs[len(lcs)-1]; last.GetKind() != satellitev1.LifecycleKind_LIFECYCLE_KIND_RESTARTED || !strings.HasPrefix(last.GetReason(), "config_reload") {
		t.Errorf("last lifecycle event %v, want restarted for config_reload", last)
	}
	if u2, _ := b.rt.Instance(unchanged.GetId()); u2.Pid != u1.Pid || len(lifecycles(b.events.of(unchanged.GetId()))) != 1 {
		t.Errorf("the unchanged instance was touched: pid %d → %d", u1.Pid, u2.Pid)
	}

	b.apply(t, unchanged)
	b.waitFor(t, changed.GetId(), "removal", func(mcpruntime.InstanceInfo) bool { return !hasInstance(b.rt, changed.GetId()) })
	if _, err := b.rt.Reconcile(t.Context()); err != nil { // returns once the removal is complete
		t.Fatal(err)
	}
	if sandbox.ProcessAlive(c2.Pid) || sandbox.GroupAlive(c2.Pid) {
		t.Errorf("the removed instance's process %d still runs", c2.Pid)
	}
	if u3, _ := b.rt.Instance(unchanged.GetId()); u3.Pid != u1.Pid {
		t.Errorf("the unchanged instance was restarted: pid %d → %d", u1.Pid, u3.Pid)
	}
	if _, err := b.rt.Acquire(t.Context(), changed.GetId()); !errors.Is(err, mcpruntime.ErrUnknownInstance) {
		t.Errorf("Acquire of a removed instance: %v", err)
	}
}

// TestRemovalCutsAStartShort removes instances of a server that never answers initialize, at once and
// while they start: neither removal waits for the start to time out.
func TestRemovalCutsAStartShort(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *mcpruntime.Config) { c.StartTimeout = time.Minute })
	for _, wait := range []time.Duration{0, 200 * time.Millisecond} {
		in := stdioInstance("mute", "sleep", "1000")
		b.apply(t, in)
		if _, err := b.rt.Reconcile(t.Context()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(wait)
		begin := time.Now()
		b.apply(t)
		if _, err := b.rt.Reconcile(t.Context()); err != nil { // returns once the removal is complete
			t.Fatal(err)
		}
		if took := time.Since(begin); took > 10*time.Second {
			t.Errorf("removal %v after the configuration took %v", wait, took)
		}
	}
}

func TestStderrIsRateLimited(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	// One overlong line, then 99 more at once, then the server (which logs a line of its own).
	in := everythingScript(t, "chatty", `head -c 3000 /dev/zero | tr '\0' x >&2; echo >&2
i=1; while [ $i -lt 100 ]; do echo "line $i" >&2; i=$((i+1)); done
exec "$@"`)
	b.apply(t, in)
	b.waitStatus(t, in.GetId(), online)
	evs := b.events.wait(t, in.GetId(), "a report of dropped lines", func(evs []*satellitev1.Event) bool {
		return slices.ContainsFunc(logLines(evs), func(l string) bool { return strings.Contains(l, "log lines dropped") })
	})

	var passed, dropped int // lines of the script
	for _, l := range logLines(evs) {
		if n, ok := strings.CutSuffix(l, " log lines dropped: the server wrote more than 20 lines in one second"); ok {
			d, err := strconv.Atoi(n)
			if err != nil {
				t.Fatalf("drop report %q", l)
			}
			dropped += d
			continue
		}
		if strings.HasPrefix(l, "xxx") {
			if len(l) > 1024 || !strings.HasSuffix(l, "[cut]") {
				t.Errorf("an overlong line came through %d bytes long: …%s", len(l), l[max(len(l)-20, 0):])
			}
		}
		if strings.HasPrefix(l, "xxx") || strings.HasPrefix(l, "line ") {
			passed++
		}
	}
	// The script wrote 100 lines at once, the server a few of its own later: only the first 20 passed, and
	// every other line is accounted for.
	if passed != 20 || dropped < 80 {
		t.Errorf("%d lines passed and %d were reported dropped; want 20 passed and at least 80 dropped", passed, dropped)
	}
	if info, _ := b.rt.Instance(in.GetId()); info.LogLinesDropped != uint64(dropped) {
		t.Errorf("LogLinesDropped %d, want %d", info.LogLinesDropped, dropped)
	}
}

// TestRunSweepsUpAfterACrashedRun checks that processes a crashed satellite left behind, marked with its
// owner mark, are killed before anything starts.
func TestRunSweepsUpAfterACrashedRun(t *testing.T) {
	t.Parallel()
	owner := "mcpruntime-test-" + uuid.NewString()
	leftover := exec.Command("sleep", "1000")
	leftover.Env = append(os.Environ(), sandbox.OwnerEnv+"="+owner)
	if err := leftover.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		_ = leftover.Wait()
		close(exited)
	}()
	t.Cleanup(func() { _ = leftover.Process.Kill() })

	b := setup(t, func(c *mcpruntime.Config) { c.Driver = sandbox.Direct{Owner: owner} })
	if _, err := b.rt.Reconcile(t.Context()); err != nil { // returns after the sweep
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(waitLimit):
		t.Fatal("the leftover process survived the sweep")
	}
}
