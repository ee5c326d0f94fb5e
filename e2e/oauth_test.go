package e2e_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"golang.org/x/oauth2"

	"github.com/orrery/orrery/e2e"
	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	"github.com/orrery/orrery/internal/mcptest"
	"github.com/orrery/orrery/internal/oauthtest"
)

// memberPassword is the password giveMemberPassword sets.
const memberPassword = "correct horse battery staple"

// memberEmail is the address of the member seedTeam creates.
func memberEmail(te *teamEndpoint) string { return te.slug + "-dev@e2e.test" }

// giveMemberPassword lets te's seeded member sign in with memberPassword: it copies the hash of that
// password from a user created with it through the API.
func giveMemberPassword(t *testing.T, te *teamEndpoint) {
	t.Helper()
	donor := te.slug + "-password-donor@e2e.test"
	if _, err := te.cp.Users().CreateUser(t.Context(), connect.NewRequest(&apiv1.CreateUserRequest{
		Email: donor, Password: memberPassword, GlobalRole: apiv1.GlobalRole_GLOBAL_ROLE_USER,
	})); err != nil {
		t.Fatal(err)
	}
	if _, err := te.conn.Exec(t.Context(), `update users set password_hash =
		(select password_hash from users where email = $1) where slug = $2`, donor, te.slug+"-dev"); err != nil {
		t.Fatal(err)
	}
}

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

	giveMemberPassword(t, red)

	client := startNodeClient(t, "testdata/oauth-client.mjs", red.endpoint, "http://127.0.0.1:43119/callback")
	var redirect struct {
		Authorize string `json:"authorize"`
	}
	client.next(t, &redirect)
	q, err := oauthtest.NewBrowser().Authorize(ctx, redirect.Authorize, memberEmail(red), memberPassword)
	if err != nil {
		t.Fatalf("authorize at %s: %v", redirect.Authorize, err)
	}
	if q.Get("code") == "" || q.Get("iss") != red.cp.URL {
		t.Fatalf("authorization response %v, want a code and iss %s", q, red.cp.URL)
	}
	client.say(t, q.Get("code"))

	var result struct {
		Tools []string `json:"tools"`
		Echo  string   `json:"echo"`
	}
	client.next(t, &result)
	client.wait(t)
	if !slices.Contains(result.Tools, "everything__echo") || !strings.Contains(result.Echo, "hello through OAuth") {
		t.Fatalf("client listed %v and echoed %q", result.Tools, result.Echo)
	}

	// A token with mcp:read alone lists the tools but cannot call them: the satellite enforces scopes.
	cfg := &oauth2.Config{
		ClientID: registerPublicClient(t, red.cp.URL, "http://127.0.0.1:43120/callback"), RedirectURL: "http://127.0.0.1:43120/callback",
		Scopes:   []string{"mcp:read"},
		Endpoint: oauth2.Endpoint{AuthURL: red.cp.URL + "/oauth/authorize", TokenURL: red.cp.URL + "/oauth/token", AuthStyle: oauth2.AuthStyleInParams},
	}
	verifier := oauth2.GenerateVerifier()
	q, err = oauthtest.NewBrowser().Authorize(ctx, cfg.AuthCodeURL("state-0123456789", oauth2.S256ChallengeOption(verifier),
		oauth2.SetAuthURLParam("resource", red.endpoint)), memberEmail(red), memberPassword)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := cfg.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	session, err := connectMCP(ctx, red.endpoint, tok.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	defer session.Close()
	if _, err := session.ListTools(ctx, nil); err != nil {
		t.Fatalf("list tools with mcp:read: %v", err)
	}
	if _, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "everything__echo", Arguments: map[string]any{"message": "x"}}); err == nil ||
		!strings.Contains(err.Error(), "Forbidden") {
		t.Fatalf("call a tool with mcp:read alone: %v, want the endpoint's 403", err)
	}

	// Revoked (RFC 7009), the token stops working at the satellite within moments, although the satellite
	// had cached it as active for up to a minute: the control plane tells it.
	resp, err := http.PostForm(red.cp.URL+"/oauth/revoke", url.Values{"token": {tok.AccessToken}, "client_id": {cfg.ClientID}})
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke: status %d", resp.StatusCode)
	}
	e2e.WaitFor(t, 10*time.Second, "the satellite to refuse the revoked token", func() error {
		s, err := connectMCP(ctx, red.endpoint, tok.AccessToken)
		if err == nil {
			_ = s.Close()
			return errors.New("still accepted")
		}
		if !strings.Contains(err.Error(), "Unauthorized") {
			t.Fatalf("connect with the revoked token: %v, want the endpoint's 401", err)
		}
		return nil
	})
}

// nodeClient is a Node.js MCP client script on the TypeScript SDK that the test talks to line by line: it
// prints one JSON object per step and reads the test's answers from stdin.
type nodeClient struct {
	cmd    *exec.Cmd
	stdin  io.Writer
	lines  *bufio.Scanner
	stderr *bytes.Buffer
}

// startNodeClient runs script (under testdata/) with the SDK's directory and args, for at most three minutes.
func startNodeClient(t *testing.T, script string, args ...string) *nodeClient {
	t.Helper()
	node, sdkDir := mcptest.TypeScriptSDK(t)
	script, err := filepath.Abs(script)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	c := &nodeClient{cmd: exec.CommandContext(ctx, node, append([]string{script, sdkDir}, args...)...), stderr: &bytes.Buffer{}}
	c.cmd.Stderr = c.stderr
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = c.cmd.Wait()
	})
	c.lines = bufio.NewScanner(stdout)
	return c
}

// next reads the client's next line into v.
func (c *nodeClient) next(t *testing.T, v any) {
	t.Helper()
	if !c.lines.Scan() {
		_ = c.cmd.Wait()
		t.Fatalf("the client stopped early: %v\nstderr:\n%s", c.lines.Err(), c.stderr.Bytes())
	}
	if err := json.Unmarshal(c.lines.Bytes(), v); err != nil {
		t.Fatalf("client printed %q: %v", c.lines.Bytes(), err)
	}
}

// say writes line to the client's stdin.
func (c *nodeClient) say(t *testing.T, line string) {
	t.Helper()
	if _, err := io.WriteString(c.stdin, line+"\n"); err != nil {
		t.Fatal(err)
	}
}

// wait waits for the client to exit and fails the test unless it succeeded.
func (c *nodeClient) wait(t *testing.T) {
	t.Helper()
	if err := c.cmd.Wait(); err != nil {
		t.Fatalf("client: %v\nstderr:\n%s", err, c.stderr.Bytes())
	}
}

// registerPublicClient registers a client with the control plane at cpURL and returns its id.
func registerPublicClient(t *testing.T, cpURL, redirect string) string {
	t.Helper()
	raw, _ := json.Marshal(map[string]any{"client_name": "e2e", "redirect_uris": []string{redirect}})
	resp, err := http.Post(cpURL+"/oauth/register", "application/json", bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var client struct {
		ClientID string `json:"client_id"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&client); err != nil || client.ClientID == "" {
		t.Fatalf("register: %d %v", resp.StatusCode, err)
	}
	return client.ClientID
}

// TestAuthorizationServerConformance runs the official MCP conformance suite's authorization-server
// scenarios (metadata, and the authorization code grant with PKCE and a resource) against the control
// plane, playing the user on the login and consent pages when the suite asks for a browser. Every scenario
// must pass.
//
//	ORRERY_CONFORMANCE=1 go test -count=1 -run '^TestAuthorizationServerConformance$' -v ./e2e/
func TestAuthorizationServerConformance(t *testing.T) {
	if os.Getenv(conformanceEnv) == "" {
		t.Skipf("set %s=1 to run the MCP conformance suite (installs Node 22 and the suite from npm once)", conformanceEnv)
	}
	t.Parallel()
	command, args := mcptest.Everything(t)
	red := startTeamEndpoint(t, "red", "everything", command, args, false, "everything__echo")
	giveMemberPassword(t, red)
	ctx := t.Context()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close() // the suite listens on it for the redirect; another process taking it is unlikely
	redirect := fmt.Sprintf("http://127.0.0.1:%d/callback", port)
	clientID := registerPublicClient(t, red.cp.URL, redirect)

	node, suite := mcptest.ConformanceAt(t, mcptest.ConformancePreviewVersion)
	out := t.TempDir()
	runCtx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(runCtx, node, slices.Concat(suite, []string{"authorization", "--url", red.cp.URL,
		"--client-id", clientID, "--resource", red.endpoint, "--port", fmt.Sprint(port), "-o", out})...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	// Stdout is read here line by line; stderr is written by exec's own goroutine, so it needs a buffer of its own.
	var output, stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(stdout)
	for lines.Scan() {
		line := lines.Text()
		output.WriteString(line + "\n")
		if !strings.HasPrefix(line, red.cp.URL+"/oauth/authorize?") {
			continue
		}
		q, err := oauthtest.NewBrowser().Authorize(ctx, line, memberEmail(red), memberPassword)
		if err != nil {
			t.Errorf("authorize at %s: %v", line, err)
			break
		}
		// The browser follows the redirect to the suite's callback server.
		resp, err := http.Get(redirect + "?" + q.Encode())
		if err != nil {
			t.Errorf("deliver the code to the suite: %v", err)
			break
		}
		resp.Body.Close()
	}
	_ = cmd.Wait() // non-zero when a scenario fails; the results on disk are what counts

	entries, err := os.ReadDir(out)
	if err != nil || len(entries) == 0 {
		t.Fatalf("the suite wrote no results (%v):\n%s%s", err, output.Bytes(), stderr.Bytes())
	}
	for _, e := range entries {
		r := readChecks(t, e.Name(), filepath.Join(out, e.Name(), "checks.json"))
		t.Logf("%-60s %d passed, %d failed", e.Name(), r.passes, r.fails)
		if !r.passed() {
			t.Errorf("%s failed: %s", e.Name(), r.failure)
		}
	}
	if t.Failed() {
		t.Logf("suite output:\n%s%s", output.Bytes(), stderr.Bytes())
	}
}
