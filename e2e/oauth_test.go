package e2e_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	"github.com/orrery/orrery/internal/mcptest"
	"github.com/orrery/orrery/internal/oauthtest"
)

// TestOAuthColdStartWithTypeScriptSDK connects the official TypeScript SDK's OAuth client to a team
// endpoint knowing nothing but its URL: the endpoint's 401 leads it to the protected-resource metadata and
// the control plane's authorization server, where it registers and sends the user to authorize; the test
// plays the user on the login and consent pages; the client then exchanges the code, lists the team's tools
// and calls one.
func TestOAuthColdStartWithTypeScriptSDK(t *testing.T) {
	t.Parallel()
	command, args := mcptest.Everything(t)
	red := startTeamEndpoint(t, "red", "everything", command, args, false, "everything__echo")
	ctx := t.Context()

	// The seeded member gets a password: the hash of one set through the API for another user.
	const password = "correct horse battery staple"
	if _, err := red.cp.Users().CreateUser(ctx, connect.NewRequest(&apiv1.CreateUserRequest{
		Email: "password-donor@e2e.test", Password: password, GlobalRole: apiv1.GlobalRole_GLOBAL_ROLE_USER,
	})); err != nil {
		t.Fatal(err)
	}
	if _, err := red.conn.Exec(ctx, `update users set password_hash =
		(select password_hash from users where email = 'password-donor@e2e.test') where slug = 'red-dev'`); err != nil {
		t.Fatal(err)
	}

	node, sdkDir := mcptest.TypeScriptSDK(t)
	script, err := filepath.Abs("testdata/oauth-client.mjs")
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(runCtx, node, script, sdkDir, red.endpoint, "http://127.0.0.1:43119/callback")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(stdout)
	next := func(v any) {
		t.Helper()
		if !lines.Scan() {
			_ = cmd.Wait()
			t.Fatalf("the client stopped early: %v\nstderr:\n%s", lines.Err(), stderr.Bytes())
		}
		if err := json.Unmarshal(lines.Bytes(), v); err != nil {
			t.Fatalf("client printed %q: %v", lines.Bytes(), err)
		}
	}

	var redirect struct {
		Authorize string `json:"authorize"`
	}
	next(&redirect)
	q, err := oauthtest.NewBrowser().Authorize(ctx, redirect.Authorize, "red-dev@e2e.test", password)
	if err != nil {
		t.Fatalf("authorize at %s: %v", redirect.Authorize, err)
	}
	if q.Get("code") == "" || q.Get("iss") != red.cp.URL {
		t.Fatalf("authorization response %v, want a code and iss %s", q, red.cp.URL)
	}
	if _, err := io.WriteString(stdin, q.Get("code")+"\n"); err != nil {
		t.Fatal(err)
	}

	var result struct {
		Tools []string `json:"tools"`
		Echo  string   `json:"echo"`
	}
	next(&result)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("client: %v\nstderr:\n%s", err, stderr.Bytes())
	}
	if !slices.Contains(result.Tools, "everything__echo") || !strings.Contains(result.Echo, "hello through OAuth") {
		t.Fatalf("client listed %v and echoed %q", result.Tools, result.Echo)
	}
}
