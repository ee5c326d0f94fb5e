package e2e_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/orrery/orrery/internal/aptget"
	"github.com/orrery/orrery/internal/mcptest"
)

// TestSandboxedServerEverything runs server-everything from the catalog on a global satellite that isolates
// its servers with bubblewrap, at the default limits: the team's endpoint lists and calls its tools, the
// server sees the sandbox's environment and home rather than the satellite's, its home lies in the team's
// directory of the satellite's state, and the control plane learns the isolation from the heartbeat.
func TestSandboxedServerEverything(t *testing.T) {
	t.Parallel()
	// bubblewrap, and slirp4netns and nftables for the sandboxes' network.
	for pkg, program := range map[string]string{"bubblewrap": "bwrap", "slirp4netns": "slirp4netns", "nftables": "/usr/sbin/nft"} {
		has := func() bool { _, err := exec.LookPath(program); return err == nil }
		if err := aptget.Install(t.Context(), nil, pkg, has); err != nil {
			t.Fatalf("%s not found (%v): sandbox tests need bubblewrap, slirp4netns, nftables and user namespaces; install them (e.g. `sudo apt-get install bubblewrap slirp4netns nftables`)", program, err)
		}
	}
	command, args := mcptest.Everything(t)
	// The package's install directory is all the server needs beyond the system; the sandbox shows it
	// read-only, as an operator would show the directory where server packages are installed.
	begin := time.Now()
	te := startTeamEndpointWith(t, []string{
		"ORRERY_SANDBOX=bwrap",
		"ORRERY_DEV=false", // a global satellite with isolation needs no development setup
		"ORRERY_SANDBOX_READ_ONLY=" + mcptest.EverythingDir(t),
	}, "sandboxed", "everything", command, args, false, "everything__echo")
	t.Logf("online through the sandbox %v after the control plane started", time.Since(begin).Round(time.Millisecond))

	ctx := t.Context()
	session, err := connectMCP(ctx, te.endpoint, te.token)
	if err != nil {
		t.Fatal(err)
	}
	defer session.Close()
	res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "everything__echo", Arguments: map[string]any{"message": "from the sandbox"}})
	if err != nil {
		t.Fatal(err)
	}
	if text := res.Content[0].(*mcp.TextContent).Text; res.IsError || !strings.Contains(text, "from the sandbox") {
		t.Fatalf("echo returned %q (error %v)", text, res.IsError)
	}

	res, err = session.CallTool(ctx, &mcp.CallToolParams{Name: "everything__get-env", Arguments: map[string]any{}})
	if err != nil {
		t.Fatal(err)
	}
	var env map[string]string
	if err := json.Unmarshal([]byte(res.Content[0].(*mcp.TextContent).Text), &env); err != nil {
		t.Fatalf("get-env: %v", err)
	}
	if env["HOME"] != "/home/sandbox" || env["USER"] != "sandbox" || env["TMPDIR"] != "/tmp" {
		t.Errorf("the server's HOME %q, USER %q, TMPDIR %q; want the sandbox's", env["HOME"], env["USER"], env["TMPDIR"])
	}
	for name := range env {
		if strings.HasPrefix(name, "ORRERY_") {
			t.Errorf("the satellite's %s reached the server", name)
		}
	}

	home := filepath.Join(te.sat.StateDir, "homes", te.id, "home")
	if info, err := os.Stat(home); err != nil || !info.IsDir() {
		t.Errorf("the team's home %s: %v", home, err)
	}
	var isolation string
	if err := te.conn.QueryRow(ctx, `select system_metrics->>'isolation' from satellites`).Scan(&isolation); err != nil {
		t.Fatal(err)
	}
	if isolation != "ISOLATION_BWRAP" {
		t.Errorf("the control plane stored isolation %q, want ISOLATION_BWRAP", isolation)
	}
}
