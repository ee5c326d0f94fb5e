package e2e_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/orrery/orrery/e2e"
	adminv1 "github.com/orrery/orrery/gen/orrery/admin/v1"
	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/gen/orrery/satellite/v1/satellitev1connect"
	"github.com/orrery/orrery/internal/mcptest"
	"github.com/orrery/orrery/internal/release"
)

// buildVersion builds the satellite reporting version into dir/name.
func buildVersion(t *testing.T, dir, name, pkg, version string, ldflags ...string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", path,
		"-ldflags", strings.Join(append([]string{"-X github.com/orrery/orrery/internal/buildinfo.version=" + version}, ldflags...), " "), pkg)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s %s: %v\n%s", pkg, version, err, out)
	}
	return path
}

// publishRelease uploads the binary at path as release version, signed with key, in pieces as orreryctl does.
func publishRelease(t *testing.T, cp *e2e.ControlPlane, path, version string, key ed25519.PrivateKey) error {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	hexSum := hex.EncodeToString(sum[:])
	admin := cp.Admin()
	created, err := admin.CreateSatelliteRelease(t.Context(), connect.NewRequest(&adminv1.CreateSatelliteReleaseRequest{
		Version: version, Platform: release.Platform(), Sha256: hexSum, Size: int64(len(data)),
		Signature: release.Sign(key, version, release.Platform(), hexSum),
	}))
	if err != nil {
		return err
	}
	id := created.Msg.GetRelease().GetId()
	for off := 0; off < len(data); off += 1 << 20 {
		end := min(off+1<<20, len(data))
		if _, err := admin.UploadSatelliteReleaseChunk(t.Context(), connect.NewRequest(&adminv1.UploadSatelliteReleaseChunkRequest{
			ReleaseId: id, Offset: int64(off), Data: data[off:end],
		})); err != nil {
			return err
		}
	}
	_, err = admin.CompleteSatelliteRelease(t.Context(), connect.NewRequest(&adminv1.CompleteSatelliteReleaseRequest{ReleaseId: id}))
	return err
}

// TestSatelliteSelfUpdate updates a running satellite from one build to another end to end, refuses a
// downgrade and a release signed by an untrusted key, and rolls back from a release that crashes on start.
func TestSatelliteSelfUpdate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	binDir := filepath.Join(dir, "bin")
	if err := os.Mkdir(binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	const pkg = "github.com/orrery/orrery/services/satellite"
	exe := buildVersion(t, binDir, "orrery-satellite", pkg, "1.0.0")
	v2 := buildVersion(t, dir, "satellite-1.1.0", pkg, "1.1.0")
	// A downgrade is refused before anything is downloaded, so 1.1.0's bytes stand in for 0.9.0's.
	old := v2
	broken := buildVersion(t, dir, "broken", "./testdata/brokensatellite", "1.2.0")
	hung := buildVersion(t, dir, "hung", "./testdata/brokensatellite", "1.2.1", "-X main.mode=hang")

	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	cp := startControlPlane(t)
	admin := cp.Admin()

	stateDir := t.TempDir()
	proc := e2e.StartProcess(t, "satellite", exe, nil, []string{
		"ORRERY_CONTROL_PLANE_URL=" + cp.URL,
		"ORRERY_REGISTRATION_TOKEN=" + cp.RegistrationToken(t),
		"ORRERY_STATE_DIR=" + stateDir,
		"ORRERY_SATELLITE_NAME=updating",
		"ORRERY_SATELLITE_LISTEN=127.0.0.1:0",
		"ORRERY_METRICS_LISTEN=off",
		"ORRERY_LOG_FORMAT=json",
		"ORRERY_SANDBOX=direct",
		"ORRERY_DEV=true",
		"ORRERY_RELEASE_PUBLIC_KEYS=" + base64.StdEncoding.EncodeToString(pub),
		"ORRERY_UPDATE_TIMEOUT=" + updateTimeout.String(),
	})
	// Runs before StartProcess's cleanup: a satellite restored by the watchdog runs under the watchdog's
	// pid and holds the output pipe the harness waits on.
	t.Cleanup(func() {
		for _, e := range logEntries(proc, "re-executing on the new version") {
			if pid, ok := e["watchdog_pid"].(float64); ok {
				_ = syscall.Kill(int(pid), syscall.SIGKILL)
			}
		}
	})
	started := proc.WaitLog(t, 30*time.Second, "satellite starting", func(e e2e.LogEntry) bool {
		return e.String("msg") == "satellite starting"
	})
	url := started.String("public_url")
	pid := proc.Pid()

	var satID string
	e2e.WaitFor(t, 30*time.Second, "the satellite's first heartbeat on 1.0.0", func() error {
		resp, err := admin.ListSatellites(t.Context(), connect.NewRequest(&adminv1.ListSatellitesRequest{}))
		if err != nil {
			return err
		}
		for _, s := range resp.Msg.GetSatellites() {
			if s.GetVersion() == "1.0.0" {
				satID = s.GetId()
				return nil
			}
		}
		return errors.New("no satellite on 1.0.0")
	})

	// The control plane refuses an upload that does not match its checksum.
	if err := publishRelease(t, cp, v2, "1.1.0", key); err != nil {
		t.Fatalf("publish 1.1.0: %v", err)
	}
	for _, r := range []struct {
		path, version string
		key           ed25519.PrivateKey
	}{{old, "0.9.0", key}, {broken, "1.2.0", key}, {hung, "1.2.1", key}, {v2, "1.3.0", otherKey}} {
		if err := publishRelease(t, cp, r.path, r.version, r.key); err != nil {
			t.Fatalf("publish %s: %v", r.version, err)
		}
	}
	// A piece of another binary makes the checksum fail.
	mismatched, err := admin.CreateSatelliteRelease(t.Context(), connect.NewRequest(&adminv1.CreateSatelliteReleaseRequest{
		Version: "1.4.0", Platform: release.Platform(), Sha256: strings.Repeat("0", 64), Size: 3, Signature: make([]byte, 64),
	}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.UploadSatelliteReleaseChunk(t.Context(), connect.NewRequest(&adminv1.UploadSatelliteReleaseChunkRequest{
		ReleaseId: mismatched.Msg.GetRelease().GetId(), Data: []byte("abc"),
	})); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CompleteSatelliteRelease(t.Context(), connect.NewRequest(&adminv1.CompleteSatelliteReleaseRequest{
		ReleaseId: mismatched.Msg.GetRelease().GetId(),
	})); connect.CodeOf(err) != connect.CodeFailedPrecondition {
		t.Errorf("completing a release whose binary does not match its checksum: %v, want FailedPrecondition", err)
	}
	// Downloading needs a satellite's key.
	anon := satellitev1connect.NewSatelliteServiceClient(http.DefaultClient, cp.URL)
	if _, err := anon.DownloadRelease(t.Context(), connect.NewRequest(&satellitev1.DownloadReleaseRequest{
		Version: "1.1.0", Platform: release.Platform(),
	})); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Errorf("download without a satellite key: %v, want Unauthenticated", err)
	}

	update := func(version string, downgrade bool) (string, time.Time) {
		t.Helper()
		sent := time.Now()
		resp, err := admin.EnqueueCommand(t.Context(), connect.NewRequest(&adminv1.EnqueueCommandRequest{
			Target: &adminv1.EnqueueCommandRequest_SatelliteId{SatelliteId: satID},
			Action: &adminv1.EnqueueCommandRequest_Update{Update: &satellitev1.UpdateAction{Version: version, AllowDowngrade: downgrade}},
		}))
		if err != nil {
			t.Fatalf("enqueue update to %s: %v", version, err)
		}
		return resp.Msg.GetCommands()[0].GetCommand().GetId(), sent
	}
	result := func(id string, timeout time.Duration) *adminv1.AdminCommand {
		t.Helper()
		var cmd *adminv1.AdminCommand
		e2e.WaitFor(t, timeout, "the result of command "+id, func() error {
			resp, err := admin.ListCommands(t.Context(), connect.NewRequest(&adminv1.ListCommandsRequest{SatelliteId: satID}))
			if err != nil {
				return err
			}
			for _, c := range resp.Msg.GetCommands() {
				if c.GetCommand().GetId() == id {
					switch c.GetState() {
					case satellitev1.CommandState_COMMAND_STATE_COMPLETED, satellitev1.CommandState_COMMAND_STATE_FAILED:
						cmd = c
						return nil
					}
					return fmt.Errorf("command is %s", c.GetState())
				}
			}
			return errors.New("command not listed")
		})
		return cmd
	}
	refused := func(version string, want string) {
		t.Helper()
		id, _ := update(version, false)
		c := result(id, 30*time.Second)
		if c.GetState() != satellitev1.CommandState_COMMAND_STATE_FAILED || !strings.Contains(c.GetError(), want) {
			t.Errorf("update to %s: %s %q, want failed with %q", version, c.GetState(), c.GetError(), want)
		}
	}
	refused("0.9.0", "older")
	refused("1.3.0", "signature")

	// Steady MCP traffic through the update: one client calling a tool back to back, which reconnects
	// (a new session) when a call fails, as a client retrying transparently would.
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, cp.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	command, args := mcptest.Everything(t)
	var catalogID string
	if err := conn.QueryRow(ctx, `insert into catalog_entries (slug, name, transport, command, args)
		values ('everything', 'Everything', 'stdio', $1, $2) returning id`, command, args).Scan(&catalogID); err != nil {
		t.Fatal(err)
	}
	red := seedTeam(t, conn, catalogID, "red", url)
	if _, err := admin.EnqueueCommand(ctx, connect.NewRequest(&adminv1.EnqueueCommandRequest{
		Target: &adminv1.EnqueueCommandRequest_SatelliteId{SatelliteId: satID}, Action: configure.Action,
		Priority: satellitev1.CommandPriority_COMMAND_PRIORITY_IMMEDIATE,
	})); err != nil {
		t.Fatal(err)
	}
	session, err := connectMCP(ctx, red.endpoint, red.token)
	if err != nil {
		t.Fatalf("connect to red's endpoint: %v", err)
	}
	echo := func(s *mcp.ClientSession) error {
		res, err := s.CallTool(ctx, &mcp.CallToolParams{Name: "everything__echo", Arguments: map[string]any{"message": "hi"}})
		if err == nil && res.IsError {
			err = errors.New("tool error")
		}
		return err
	}
	e2e.WaitFor(t, 2*time.Minute, "red's echo tool answering", func() error { return echo(session) })
	// The MCP server processes of the old version must not outlive it.
	oldServers := descendants(pid)
	if len(oldServers) == 0 {
		t.Fatal("no MCP server process found under the satellite")
	}
	stopTraffic := make(chan struct{})
	type traffic struct {
		calls, failed, reconnects int
		failures                  []string
	}
	trafficDone := make(chan traffic, 1)
	go func() {
		var tr traffic
		s := session
		for {
			select {
			case <-stopTraffic:
				s.Close()
				trafficDone <- tr
				return
			default:
			}
			tr.calls++
			if err := echo(s); err != nil {
				tr.failed++
				if len(tr.failures) < 5 {
					tr.failures = append(tr.failures, err.Error())
				}
				s.Close()
				for {
					if ns, err := connectMCP(ctx, red.endpoint, red.token); err == nil {
						s = ns
						tr.reconnects++
						break
					}
					select {
					case <-stopTraffic:
						trafficDone <- tr
						return
					case <-time.After(100 * time.Millisecond):
					}
				}
			}
		}
	}()

	// The update proper.
	id, sent := update("1.1.0", false)
	var firstHeartbeat time.Duration
	e2e.WaitFor(t, 90*time.Second, "a heartbeat on 1.1.0", func() error {
		resp, err := admin.ListSatellites(t.Context(), connect.NewRequest(&adminv1.ListSatellitesRequest{}))
		if err != nil {
			return err
		}
		for _, s := range resp.Msg.GetSatellites() {
			if s.GetId() == satID && s.GetVersion() == "1.1.0" {
				firstHeartbeat = time.Since(sent)
				return nil
			}
		}
		return errors.New("not on 1.1.0 yet")
	})
	c := result(id, 30*time.Second)
	if c.GetState() != satellitev1.CommandState_COMMAND_STATE_COMPLETED {
		t.Fatalf("update to 1.1.0: %s %q", c.GetState(), c.GetError())
	}
	if proc.Exited() {
		t.Fatal("the satellite's process exited: the update must re-execute in place")
	}
	if got := hashFile(t, exe); got != hashFile(t, v2) {
		t.Errorf("binary after the update is not 1.1.0's")
	}
	if _, err := os.Stat(exe + ".previous"); err != nil {
		t.Errorf("the previous binary is not kept: %v", err)
	}
	if code, _ := httpGet(url + "/healthz"); code != http.StatusOK {
		t.Errorf("healthz on the kept address after the update: %d", code)
	}
	t.Logf("update sent → first heartbeat on the new version: %v (pid %d kept: %v)", firstHeartbeat.Round(time.Millisecond),
		pid, syscall.Kill(pid, 0) == nil)
	for _, p := range oldServers {
		if alive(p) {
			t.Errorf("MCP server process %d of the old version survived the update", p)
		}
	}
	// Traffic goes on until the new version answers a call.
	e2e.WaitFor(t, time.Minute, "a call answered by the new version", func() error {
		s, err := connectMCP(ctx, red.endpoint, red.token)
		if err != nil {
			return err
		}
		defer s.Close()
		return echo(s)
	})
	close(stopTraffic)
	tr := <-trafficDone
	t.Logf("MCP traffic during the update: %d calls, %d failed, %d new sessions; failures: %q", tr.calls, tr.failed, tr.reconnects, tr.failures)
	if tr.calls-tr.failed < 2 {
		t.Errorf("steady traffic made %d successful calls across the update", tr.calls-tr.failed)
	}

	// A release that crashes on start is rolled back.
	id, sent = update("1.2.0", false)
	c = result(id, 90*time.Second)
	rolledBack := time.Since(sent)
	if c.GetState() != satellitev1.CommandState_COMMAND_STATE_FAILED || !strings.Contains(c.GetError(), "rolled back") {
		t.Fatalf("update to the broken 1.2.0: %s %q, want failed and rolled back", c.GetState(), c.GetError())
	}
	if got := hashFile(t, exe); got != hashFile(t, v2) {
		t.Errorf("binary after the rollback is not 1.1.0's")
	}
	e2e.WaitFor(t, 30*time.Second, "/healthz after the rollback", func() error { return e2e.HTTPOK(url + "/healthz") })
	t.Logf("broken release rolled back and reported in %v: %s", rolledBack.Round(time.Millisecond), c.GetError())

	// A release that starts but never heartbeats is stopped at the deadline and rolled back.
	id, sent = update("1.2.1", false)
	c = result(id, updateTimeout+90*time.Second)
	rolledBack = time.Since(sent)
	if c.GetState() != satellitev1.CommandState_COMMAND_STATE_FAILED || !strings.Contains(c.GetError(), "did not heartbeat within") {
		t.Fatalf("update to the hung 1.2.1: %s %q, want failed for want of a heartbeat", c.GetState(), c.GetError())
	}
	if got := hashFile(t, exe); got != hashFile(t, v2) {
		t.Errorf("binary after the second rollback is not 1.1.0's")
	}
	e2e.WaitFor(t, 30*time.Second, "/healthz after the second rollback", func() error { return e2e.HTTPOK(url + "/healthz") })
	t.Logf("hung release rolled back and reported in %v: %s", rolledBack.Round(time.Millisecond), c.GetError())
}

// updateTimeout is how long the test's satellite gives a new version to heartbeat: well above the few
// seconds a healthy restart takes on a loaded machine, and short enough for the hung release's test.
const updateTimeout = 30 * time.Second

func hashFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func httpGet(url string) (int, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// logEntries returns the process's JSON log lines whose message is msg.
func logEntries(p *e2e.Process, msg string) []e2e.LogEntry {
	var out []e2e.LogEntry
	for line := range strings.Lines(p.Output()) {
		var e e2e.LogEntry
		if json.Unmarshal([]byte(line), &e) == nil && e.String("msg") == msg {
			out = append(out, e)
		}
	}
	return out
}

// descendants lists the live processes below pid, read from /proc.
func descendants(pid int) []int {
	parent := map[int]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// The command name may hold spaces and parentheses: the fields after it follow the last ')'.
		fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(fields) > 1 {
			parent[p], _ = strconv.Atoi(fields[1])
		}
	}
	var out []int
	for p := range parent {
		for q := parent[p]; q > 1; q = parent[q] {
			if q == pid {
				out = append(out, p)
				break
			}
		}
	}
	return out
}

// alive reports whether pid runs and is not a zombie.
func alive(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	return len(fields) > 0 && fields[0] != "Z"
}
