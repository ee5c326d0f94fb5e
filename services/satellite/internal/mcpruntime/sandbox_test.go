package mcpruntime_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/internal/mcptest"
	"github.com/orrery/orrery/services/satellite/internal/mcpruntime"
	"github.com/orrery/orrery/services/satellite/internal/sandbox"
)

// bwrapDriver returns a Bwrap driver with homes in homeRoot that shows readOnly; the test fails, saying how
// to get bubblewrap, where it cannot run.
func bwrapDriver(t *testing.T, homeRoot string, readOnly ...string) *sandbox.Bwrap {
	t.Helper()
	path, err := sandbox.FindBwrap(t.Context(), nil, true)
	if err != nil {
		t.Fatal(err)
	}
	b, err := sandbox.NewBwrap(nil, sandbox.BwrapConfig{Path: path, HomeRoot: homeRoot, ReadOnly: readOnly})
	if err != nil {
		t.Fatal(err)
	}
	if !b.Enforced().Memory {
		t.Fatalf("no memory cgroup can be made here (%+v): run the tests as root, or in a delegated cgroup", b.Enforced())
	}
	return b
}

// TestServerKilledAtItsLimitCrashes runs a server that exceeds the memory limit its template sets: each
// start is reported crashed with the limit that killed it, and the restart policy applies as to any crash.
func TestServerKilledAtItsLimitCrashes(t *testing.T) {
	t.Parallel()
	driver := bwrapDriver(t, t.TempDir())
	b := setup(t, func(c *mcpruntime.Config) {
		c.Driver = driver
		c.RestartDelays = []time.Duration{10 * time.Millisecond}
	})
	in := stdioInstance("hog", "sh", "-c", "exec tail /dev/zero")
	in.Sandbox = &satellitev1.Sandbox{Limits: &satellitev1.ResourceLimits{MemoryBytes: 32 << 20, CpuMillis: 1000}}
	b.apply(t, in)
	info := b.waitStatus(t, in.GetId(), satellitev1.InstanceStatus_INSTANCE_STATUS_PERMANENTLY_FAILED)
	const want = "killed: out of memory (memory limit 32 MiB)"
	if !strings.Contains(info.Message, want) {
		t.Errorf("permanently failed with %q, want it to name %q", info.Message, want)
	}
	var crashes int
	for _, lc := range lifecycles(b.events.of(in.GetId())) {
		if lc.GetKind() == satellitev1.LifecycleKind_LIFECYCLE_KIND_CRASHED {
			crashes++
			if !strings.Contains(lc.GetReason(), want) {
				t.Errorf("crash reported as %q, want it to name %q", lc.GetReason(), want)
			}
		}
	}
	if crashes != 3 {
		t.Errorf("%d crashes reported, want 3", crashes)
	}
	got := statuses(b.events.of(in.GetId()))
	if !slices.Contains(got, satellitev1.InstanceStatus_INSTANCE_STATUS_CRASHED) ||
		!slices.Contains(got, satellitev1.InstanceStatus_INSTANCE_STATUS_RESTARTING) {
		t.Errorf("statuses %v, want crashed and restarting before the permanent failure", got)
	}
}

// TestSandboxedServer runs server-everything in a sandbox whose template gives each user a home and no
// network: it comes online, its environment is the sandbox's, its home is the user's, and heartbeats count
// the memory of the whole sandbox rather than of bwrap alone.
func TestSandboxedServer(t *testing.T) {
	t.Parallel()
	in := everything(t, "boxed")
	homes := t.TempDir()
	driver := bwrapDriver(t, homes, mcptest.EverythingDir(t))
	b := setup(t, func(c *mcpruntime.Config) { c.Driver = driver })
	in.Sandbox = &satellitev1.Sandbox{NetworkDisabled: true, Home: satellitev1.HomeScope_HOME_SCOPE_USER}
	b.apply(t, in)
	b.waitStatus(t, in.GetId(), online)

	res, err := callTool(t.Context(), b.rt, in.GetId(), &mcp.CallToolParams{Name: "get-env", Arguments: map[string]any{}})
	if err != nil {
		t.Fatal(err)
	}
	var env map[string]string
	if err := json.Unmarshal([]byte(text(res)), &env); err != nil {
		t.Fatalf("get-env: %v", err)
	}
	if env["HOME"] != sandbox.SandboxHome {
		t.Errorf("HOME %q, want %q", env["HOME"], sandbox.SandboxHome)
	}
	if _, err := os.Stat(filepath.Join(homes, in.GetTeamId(), "users", in.GetUserId())); err != nil {
		t.Errorf("the user's home: %v", err)
	}
	for _, p := range b.rt.Processes() {
		// node alone holds tens of MiB; bwrap's two processes hold about one.
		if p.GetInstanceId() == in.GetId() && p.GetMemoryBytes() < 16<<20 {
			t.Errorf("heartbeat memory %d bytes, want the sandbox's, node's included", p.GetMemoryBytes())
		}
	}
}

// TestCeilingShowsInStatus runs a server whose template asks for more memory than the satellite's ceiling:
// it runs with the ceiling, and its online status says so.
func TestCeilingShowsInStatus(t *testing.T) {
	t.Parallel()
	in := everything(t, "greedy")
	path, err := sandbox.FindBwrap(t.Context(), nil, true)
	if err != nil {
		t.Fatal(err)
	}
	driver, err := sandbox.NewBwrap(nil, sandbox.BwrapConfig{Path: path, HomeRoot: t.TempDir(),
		ReadOnly: []string{mcptest.EverythingDir(t)}, Ceilings: sandbox.Limits{MemoryBytes: 512 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	b := setup(t, func(c *mcpruntime.Config) { c.Driver = driver })
	in.Sandbox = &satellitev1.Sandbox{NetworkDisabled: true, Limits: &satellitev1.ResourceLimits{MemoryBytes: 64 << 30}}
	b.apply(t, in)
	info := b.waitStatus(t, in.GetId(), online)
	const want = "memory limit 64 GiB lowered to the satellite's ceiling of 512 MiB"
	if !strings.Contains(info.Message, want) {
		t.Errorf("online with message %q, want it to say %q", info.Message, want)
	}
}

// homeKeeper is the Direct driver with homes to remove, which it records.
type homeKeeper struct {
	sandbox.Direct
	removed chan [2]string
}

func (h homeKeeper) RemoveUserHome(teamID, userID string) error {
	h.removed <- [2]string{teamID, userID}
	return nil
}

// TestMemberRemovalDeletesTheirHome carries out the configure command that follows a member's removal: the
// driver deletes the member's home once none of their instances is left, and not while one is.
func TestMemberRemovalDeletesTheirHome(t *testing.T) {
	t.Parallel()
	driver := homeKeeper{removed: make(chan [2]string, 1)}
	b := setup(t, func(c *mcpruntime.Config) { c.Driver = driver })
	in := stdioInstance("sleeper", "sleep", "1000")
	b.apply(t, in)
	// As a configure command runs: the configuration applied, then the member forgotten.
	forget := func() (bool, error) {
		if err := b.rt.ApplyConfiguration(t.Context()); err != nil {
			return false, err
		}
		return b.rt.ForgetMember(in.GetTeamId(), in.GetUserId())
	}
	removed, err := forget()
	if err != nil || removed || len(driver.removed) != 0 {
		t.Fatalf("with the member's instance still here: %v, %v; want the home kept", removed, err)
	}
	b.apply(t)
	removed, err = forget()
	if err != nil || !removed {
		t.Fatalf("after the instance left: %v, %v; want the home removed", removed, err)
	}
	if got, want := <-driver.removed, [2]string{in.GetTeamId(), in.GetUserId()}; got != want {
		t.Errorf("removed the home of %v, want %v", got, want)
	}
}

var pidPattern = regexp.MustCompile(`pid [0-9]+`)

// TestMissingCommandSaysNothingOfTheHost starts instances whose command is a path that exists nowhere, and
// host files that exist (the satellite's own key, an executable outside the sandbox), under each driver:
// what the team sees of them (statuses, crash reports, server logs) is the same but for the name.
func TestMissingCommandSaysNothingOfTheHost(t *testing.T) {
	t.Parallel()
	hostDir := t.TempDir()
	key := filepath.Join(hostDir, "satellite.key")
	if err := os.WriteFile(key, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	tool := filepath.Join(hostDir, "tool")
	if err := os.WriteFile(tool, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	drivers := []struct {
		name   string
		driver func(t *testing.T) sandbox.Driver
		// commands whose answers must match that of the first
		commands []string
	}{
		// Without isolation an executable host file runs, as any command would: Direct is no boundary.
		{"direct", func(*testing.T) sandbox.Driver { return sandbox.Direct{} },
			[]string{filepath.Join(hostDir, "missing"), key, hostDir, "/etc/shadow"}},
		{"bwrap", func(t *testing.T) sandbox.Driver { return bwrapDriver(t, t.TempDir()) },
			[]string{filepath.Join(hostDir, "missing"), key, hostDir, tool, "/etc/shadow"}},
	}
	for _, d := range drivers {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			driver := d.driver(t)
			b := setup(t, func(c *mcpruntime.Config) {
				c.Driver = driver
				c.RestartDelays = []time.Duration{10 * time.Millisecond}
			})
			var want string
			for i, cmd := range d.commands {
				in := stdioInstance("missing", cmd)
				b.apply(t, in)
				info := b.waitStatus(t, in.GetId(), satellitev1.InstanceStatus_INSTANCE_STATUS_PERMANENTLY_FAILED)
				// Pids differ, and a server's last log line may come before or after its crash report.
				lines := strings.Split(info.Message+"\n"+describe(b.events.of(in.GetId())), "\n")
				for i, l := range lines {
					lines[i] = pidPattern.ReplaceAllString(strings.ReplaceAll(l, cmd, "CMD"), "pid N")
				}
				slices.Sort(lines)
				got := strings.Join(lines, "\n")
				if i == 0 {
					want = got
					t.Logf("a missing command:\n%s", want)
					continue
				}
				if got != want {
					t.Errorf("%q is reported as\n%s\nwant the same as for a missing command:\n%s", cmd, got, want)
				}
			}
		})
	}
}
