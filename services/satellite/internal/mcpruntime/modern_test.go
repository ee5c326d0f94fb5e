package mcpruntime_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/services/satellite/internal/mcpruntime"
)

// TestModernSession: for a server that speaks both eras (the go-sdk's conformance server), the primary
// session stays in the session era while the modern lane speaks 2026-07-28 on a second process, and
// hands the server's input_required results back as they are rather than answering them itself. The
// lane ends with the instance.
func TestModernSession(t *testing.T) {
	t.Parallel()
	bin := conformanceServer(t)
	b := setup(t, nil)
	in := stdioInstance("conf", bin)
	b.apply(t, in)
	b.waitStatus(t, in.GetId(), online)
	ctx := t.Context()

	primary, err := b.rt.Session(ctx, in.GetId())
	if err != nil {
		t.Fatal(err)
	}
	if v := primary.InitializeResult().ProtocolVersion; v != mcpruntime.DefaultProtocolVersion {
		t.Errorf("primary session speaks %s, want %s", v, mcpruntime.DefaultProtocolVersion)
	}
	lane, err := b.rt.ModernSession(ctx, in.GetId())
	if err != nil || lane == nil {
		t.Fatalf("ModernSession = %v, %v", lane, err)
	}
	if v := lane.InitializeResult().ProtocolVersion; v != mcpruntime.ModernProtocolVersion {
		t.Errorf("modern lane speaks %s, want %s", v, mcpruntime.ModernProtocolVersion)
	}
	if again, err := b.rt.ModernSession(ctx, in.GetId()); err != nil || again != lane {
		t.Errorf("a second call opened another lane (%v, %v)", again, err)
	}
	res, err := lane.CallTool(ctx, &mcp.CallToolParams{Name: "test_input_required_result_elicitation", Arguments: map[string]any{}})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := res.InputRequests["user_name"].(*mcp.ElicitParams); !ok {
		t.Errorf("result = %+v, want the server's input request user_name", res)
	}

	proc, ok := b.rt.ModernLaneOf(in.GetId())
	if !ok {
		t.Fatal("the modern lane runs no process of its own")
	}

	b.apply(t)
	b.waitFor(t, in.GetId(), "removal", func(i mcpruntime.InstanceInfo) bool { return i.ID == "" })
	ended := make(chan error, 1)
	go func() { ended <- lane.Wait() }()
	deadline := time.After(waitLimit)
	for _, ch := range []<-chan struct{}{proc.Exited, toStruct(ended)} {
		select {
		case <-ch:
		case <-deadline:
			t.Fatal("the modern lane outlived its instance")
		}
	}
	if err := syscall.Kill(proc.Pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("the modern lane's process %d is still there: %v", proc.Pid, err)
	}
}

// TestModernLaneEnded: a lane whose server dies is not started again on the next call but counts as a
// failure for a while, and the instance's logs say so.
func TestModernLaneEnded(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	in := stdioInstance("conf", conformanceServer(t))
	b.apply(t, in)
	b.waitStatus(t, in.GetId(), online)
	ctx := t.Context()
	if lane, err := b.rt.ModernSession(ctx, in.GetId()); err != nil || lane == nil {
		t.Fatalf("ModernSession = %v, %v", lane, err)
	}
	proc, ok := b.rt.ModernLaneOf(in.GetId())
	if !ok {
		t.Fatal("the modern lane runs no process of its own")
	}
	if err := syscall.Kill(proc.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-proc.Ended:
	case <-time.After(waitLimit):
		t.Fatal("the runtime did not see the lane end")
	}
	for range 2 {
		if lane, err := b.rt.ModernSession(ctx, in.GetId()); !errors.Is(err, mcpruntime.ErrUnavailable) {
			t.Errorf("ModernSession after the lane died = %v, %v; want ErrUnavailable", lane, err)
		}
		if again, ok := b.rt.ModernLaneOf(in.GetId()); ok {
			t.Errorf("a new lane process %d started at once", again.Pid)
		}
	}
	b.events.wait(t, in.GetId(), "a log line saying the lane's server was killed", func(evs []*satellitev1.Event) bool {
		return slices.ContainsFunc(logLines(evs), func(line string) bool {
			return strings.Contains(line, "2026-07-28 lane's server exited (signal: killed)")
		})
	})
	// The primary connection is unaffected.
	if _, err := b.rt.Session(ctx, in.GetId()); err != nil {
		t.Errorf("Session after the lane died: %v", err)
	}
}

// TestModernLaneStartWait: a call waits for a lane that is slow to start no longer than CallStartWait
// and its own context, as it would for the instance.
func TestModernLaneStartWait(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *mcpruntime.Config) { c.CallStartWait = 200 * time.Millisecond })
	// The first process is the primary; the second, the lane, never answers.
	in := stdioInstance("conf", "sh", "-c", `if [ -e started ]; then exec sleep 600; fi; touch started; exec "$0"`,
		conformanceServer(t))
	b.apply(t, in)
	b.waitStatus(t, in.GetId(), online)

	start := time.Now()
	if lane, err := b.rt.ModernSession(t.Context(), in.GetId()); !errors.Is(err, mcpruntime.ErrStarting) {
		t.Errorf("ModernSession while the lane starts = %v, %v; want ErrStarting", lane, err)
	}
	if d := time.Since(start); d > waitLimit/2 {
		t.Errorf("ModernSession waited %v for a starting lane, CallStartWait is 200ms", d)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if lane, err := b.rt.ModernSession(ctx, in.GetId()); !errors.Is(err, context.Canceled) {
		t.Errorf("ModernSession with a cancelled context = %v, %v", lane, err)
	}
}

// conformanceServer builds the go-sdk's conformance server, which speaks both protocol eras, where a
// sandboxed server can run it too (t.TempDir's parent is private to its owner).
func conformanceServer(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "conformance-server-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "everything-server")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/modelcontextprotocol/go-sdk/conformance/everything-server").CombinedOutput(); err != nil {
		t.Fatalf("build the go-sdk conformance server: %v\n%s", err, out)
	}
	return bin
}

// toStruct turns a channel that receives once into one that is closed then.
func toStruct[T any](ch <-chan T) <-chan struct{} {
	out := make(chan struct{})
	go func() {
		<-ch
		close(out)
	}()
	return out
}

// TestModernLaneCPULimit: the lane's process, like the primary's, runs at the instance's CPU limit once it
// is up, not at the sandbox's start-up allowance.
func TestModernLaneCPULimit(t *testing.T) {
	t.Parallel()
	bin := conformanceServer(t)
	driver := bwrapDriver(t, t.TempDir(), filepath.Dir(bin))
	if !driver.Enforced().CPU {
		t.Fatalf("no cpu cgroup can be made here (%+v): run the tests as root, or in a delegated cgroup", driver.Enforced())
	}
	b := setup(t, func(c *mcpruntime.Config) { c.Driver = driver })
	in := stdioInstance("conf", bin)
	in.Sandbox = &satellitev1.Sandbox{Limits: &satellitev1.ResourceLimits{CpuMillis: 250}}
	b.apply(t, in)
	b.waitStatus(t, in.GetId(), online)
	if lane, err := b.rt.ModernSession(t.Context(), in.GetId()); err != nil || lane == nil {
		t.Fatalf("ModernSession = %v, %v", lane, err)
	}
	proc, ok := b.rt.ModernLaneOf(in.GetId())
	if !ok {
		t.Fatal("the modern lane runs no process of its own")
	}
	if got := cpuShare(t, proc.Pid); got != 0.25 {
		t.Errorf("the lane's CPU share is %v, want its limit 0.25", got)
	}
}

// cpuShare reads the CPU quota of pid's cgroup, in CPUs.
func cpuShare(t *testing.T, pid int) float64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		var quota, period string
		switch {
		case parts[1] == "": // cgroup v2: "max 100000" or "25000 100000"
			raw, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", parts[2], "cpu.max"))
			if err != nil {
				continue
			}
			quota, period, _ = strings.Cut(strings.TrimSpace(string(raw)), " ")
		case slices.Contains(strings.Split(parts[1], ","), "cpu"):
			dir := filepath.Join("/sys/fs/cgroup", parts[1], parts[2])
			q, err1 := os.ReadFile(filepath.Join(dir, "cpu.cfs_quota_us"))
			p, err2 := os.ReadFile(filepath.Join(dir, "cpu.cfs_period_us"))
			if err1 != nil || err2 != nil {
				t.Fatalf("reading the cpu cgroup of pid %d: %v, %v", pid, err1, err2)
			}
			quota, period = strings.TrimSpace(string(q)), strings.TrimSpace(string(p))
		default:
			continue
		}
		qn, err1 := strconv.ParseFloat(quota, 64)
		pn, err2 := strconv.ParseFloat(period, 64)
		if err1 != nil || err2 != nil || pn == 0 {
			t.Fatalf("pid %d has no CPU quota: %q / %q", pid, quota, period)
		}
		return qn / pn
	}
	t.Fatalf("pid %d is in no cpu cgroup:\n%s", pid, data)
	return 0
}
