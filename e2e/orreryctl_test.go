package e2e_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/orrery/orrery/e2e"
	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	"github.com/orrery/orrery/internal/mcptest"
	"github.com/orrery/orrery/internal/oauthtest"
)

// cliTimeout bounds one orreryctl run; install --wait has its own, shorter, timeout inside it.
const cliTimeout = 2 * time.Minute

// cli runs the built orreryctl with its own configuration directory, as one user on one machine would.
type cli struct {
	bin, home string
	env       []string
}

func newCLI(t *testing.T, env ...string) *cli {
	t.Helper()
	home := t.TempDir()
	c := &cli{bin: e2e.Binary(t, "orreryctl"), home: home}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ORRERY_") && !strings.HasPrefix(kv, "XDG_") && !strings.HasPrefix(kv, "HOME=") {
			c.env = append(c.env, kv)
		}
	}
	c.env = append(c.env, "HOME="+home, "XDG_CONFIG_HOME="+filepath.Join(home, ".config"))
	c.env = append(c.env, env...)
	return c
}

func (c *cli) command(ctx context.Context, stdin string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Env, cmd.Dir = c.env, c.home
	cmd.Stdin = strings.NewReader(stdin)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// run runs orreryctl to its end and returns its stdout, stderr and exit code.
func (c *cli) run(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), cliTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := c.command(ctx, stdin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := cmd.ProcessState.ExitCode()
	if err != nil && code < 0 {
		t.Fatalf("orreryctl %v: %v\n%s", args, err, stderr.String())
	}
	return stdout.String(), stderr.String(), code
}

// ok runs orreryctl and fails the test unless it exits 0.
func (c *cli) ok(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := c.run(t, "", args...)
	if code != 0 {
		t.Fatalf("orreryctl %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// background starts orreryctl and returns it with a channel of its stderr lines.
func (c *cli) background(t *testing.T, args ...string) (*exec.Cmd, <-chan string, *bytes.Buffer) {
	t.Helper()
	cmd := c.command(t.Context(), "", args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 100)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd, lines, &stdout
}

// lineWith waits for a line of lines that contains want and returns it.
func lineWith(t *testing.T, lines <-chan string, want string, timeout time.Duration) string {
	t.Helper()
	deadline := time.After(timeout)
	var seen []string
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("output ended without %q: %q", want, seen)
			}
			if strings.Contains(l, want) {
				return l
			}
			seen = append(seen, l)
		case <-deadline:
			t.Fatalf("no %q within %v: %q", want, timeout, seen)
		}
	}
}

func waitExit(t *testing.T, cmd *exec.Cmd, lines <-chan string) {
	t.Helper()
	var rest []string
	for l := range lines {
		rest = append(rest, l)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("orreryctl %v: %v\n%s", cmd.Args[1:], err, strings.Join(rest, "\n"))
	}
}

func jsonOf(t *testing.T, raw string) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal([]byte(raw), &v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, raw)
	}
	return v
}

// TestOrreryctl drives the built orreryctl against a real control plane and satellite the way a new user
// would: sign in with the device grant, create a team, install server-everything and wait for it, read its
// logs as they come, and write each MCP client's configuration; then sign in again through the browser
// flow, and get clear refusals for bad input.
func TestOrreryctl(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	command, cmdArgs := mcptest.Everything(t)
	cp := startControlPlane(t)
	sat := e2e.StartSatellite(t, cp, e2e.SatelliteConfig{RegistrationToken: cp.RegistrationToken(t)})
	waitActive(t, cp, sat.URL)

	const email, password = "ada@example.test", "a long enough password"
	if _, err := cp.Users().CreateUser(ctx, connect.NewRequest(&apiv1.CreateUserRequest{
		Email: email, Name: "Ada", Password: password, GlobalRole: apiv1.GlobalRole_GLOBAL_ROLE_USER,
	})); err != nil {
		t.Fatal(err)
	}
	// The operator adds the global template as a script would: with the admin's API token in the environment.
	admin := newCLI(t, "ORRERY_TOKEN="+cp.AdminToken, "ORRERY_URL="+cp.URL)
	spec, _ := json.Marshal(map[string]any{"name": "Everything", "transport": "TRANSPORT_STDIO", "command": command, "args": cmdArgs})
	specFile := filepath.Join(admin.home, "everything.json")
	if err := os.WriteFile(specFile, spec, 0o600); err != nil {
		t.Fatal(err)
	}
	admin.ok(t, "catalog", "create", "everything", "-f", specFile)

	ada := newCLI(t)
	t.Run("login with the device grant", func(t *testing.T) {
		cmd, lines, _ := ada.background(t, "login", cp.URL, "--device", "--no-browser", "--context", "dev")
		link := lineWith(t, lines, "/oauth/device?user_code=", 30*time.Second)
		link = link[strings.Index(link, "http"):]
		page, err := oauthtest.NewBrowser().DeviceDecision(ctx, link, email, password, true)
		if err != nil {
			t.Fatalf("approve on the verification page: %v", err)
		}
		if !strings.Contains(page.Body, "Signed in") {
			t.Fatalf("verification page after approval: %s", page.Body)
		}
		lineWith(t, lines, "Signed in to "+cp.URL+" as "+email, 30*time.Second)
		waitExit(t, cmd, lines)

		path := filepath.Join(ada.home, ".config", "orrery", "config.json")
		st, err := os.Stat(path)
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("configuration file %s: %v, mode %v; want 0600", path, err, st.Mode())
		}
		var cfg struct {
			Current  string `json:"current_context"`
			Contexts map[string]struct {
				URL          string `json:"url"`
				AccessToken  string `json:"access_token"`
				RefreshToken string `json:"refresh_token"`
			} `json:"contexts"`
		}
		raw, _ := os.ReadFile(path)
		if err := json.Unmarshal(raw, &cfg); err != nil || cfg.Current != "dev" || cfg.Contexts["dev"].URL != cp.URL ||
			!strings.HasPrefix(cfg.Contexts["dev"].AccessToken, "orat_") || cfg.Contexts["dev"].RefreshToken == "" {
			t.Fatalf("configuration after login: %v %s", err, raw)
		}
		me := jsonOf(t, ada.ok(t, "whoami", "-o", "json"))
		if me["user"].(map[string]any)["email"] != email {
			t.Fatalf("whoami: %v", me)
		}
	})

	ada.ok(t, "teams", "create", "cli", "--name", "CLI team")
	var teams struct{ Teams []struct{ Slug string } }
	if err := json.Unmarshal([]byte(ada.ok(t, "teams", "list", "-o", "json")), &teams); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(ada.ok(t, "teams", "list"), "cli") {
		t.Fatalf("teams list: %+v", teams)
	}
	if out := ada.ok(t, "teams", "list", "-o", "yaml"); !strings.Contains(out, "slug: cli") {
		t.Fatalf("teams list -o yaml:\n%s", out)
	}

	t.Run("install and wait until online", func(t *testing.T) {
		_, errOut, code := ada.run(t, "", "install", "everything", "--team", "cli", "--wait", "--timeout", "90s")
		if code != 0 || !strings.Contains(errOut, "everything is online in cli") {
			t.Fatalf("install --wait: exit %d\n%s", code, errOut)
		}
		var list struct {
			Instances []struct {
				ID     string `json:"id"`
				Status string `json:"status"`
			}
		}
		if err := json.Unmarshal([]byte(ada.ok(t, "instances", "list", "--team", "cli", "-o", "json")), &list); err != nil ||
			len(list.Instances) != 1 || list.Instances[0].Status != "INSTANCE_STATUS_ONLINE" {
			t.Fatalf("instances list: %+v %v", list, err)
		}
		if out := ada.ok(t, "instances", "status", list.Instances[0].ID, "--team", "cli"); !strings.Contains(out, "online") {
			t.Fatalf("instances status:\n%s", out)
		}
	})

	t.Run("follow logs", func(t *testing.T) {
		cmd := ada.command(t.Context(), "", "logs", "everything", "--team", "cli", "--follow", "-o", "json")
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		lines := make(chan string, 100)
		go func() {
			defer close(lines)
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				lines <- sc.Text()
			}
		}()
		line := lineWith(t, lines, "Starting default (STDIO) server", 60*time.Second)
		if l := jsonOf(t, line); !strings.HasPrefix(l["instance_id"].(string), "everything-cli-") {
			t.Fatalf("log line: %v", l)
		}
		// Without --follow, the newest lines come at once.
		start := time.Now()
		if out := ada.ok(t, "logs", "everything", "--team", "cli"); !strings.Contains(out, "Starting default (STDIO) server") || time.Since(start) > 10*time.Second {
			t.Fatalf("logs after %v:\n%s", time.Since(start), out)
		}
		// A follower keeps running until stopped.
		select {
		case _, open := <-lines:
			if !open {
				t.Fatalf("logs --follow ended by itself: %v", cmd.Wait())
			}
		case <-time.After(500 * time.Millisecond):
		}
	})

	t.Run("follow requests and restart", func(t *testing.T) {
		cmd := ada.command(t.Context(), "", "requests", "everything", "--team", "cli", "--follow", "-o", "json")
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		lines := make(chan string, 100)
		go func() {
			defer close(lines)
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				lines <- sc.Text()
			}
		}()

		// A tool call through the team endpoint, with an access token minted in the database as an MCP client
		// would hold it, shows up in the followed request log.
		me := jsonOf(t, ada.ok(t, "whoami", "-o", "json"))
		userID := me["user"].(map[string]any)["id"].(string)
		var teamID string
		for _, m := range me["memberships"].([]any) {
			if m.(map[string]any)["team_slug"] == "cli" {
				teamID = m.(map[string]any)["team_id"].(string)
			}
		}
		conn, err := pgx.Connect(ctx, cp.DatabaseURL)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.WithoutCancel(ctx))
		endpoint := sat.URL + "/teams/cli/mcp"
		token := "orat_e2e_cli_" + userID
		hash := sha256.Sum256([]byte(token))
		if _, err := conn.Exec(ctx, `insert into access_tokens (token_hash, team_id, user_id, client_id, audience, scopes, expires_at)
			values ($1, $2, $3, 'e2e', $4, '{mcp:read,mcp:tools:execute}', now() + interval '1 hour')`, hash[:], teamID, userID, endpoint); err != nil {
			t.Fatal(err)
		}
		session, err := connectMCP(ctx, endpoint, token)
		if err != nil {
			t.Fatal(err)
		}
		defer session.Close()
		if res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "everything__echo", Arguments: map[string]any{"message": "from e2e"}}); err != nil || res.IsError {
			t.Fatalf("call echo: %v %v", res, err)
		}
		if l := jsonOf(t, lineWith(t, lines, `"echo"`, 60*time.Second)); l["tool_name"] != "echo" || l["success"] != true {
			t.Fatalf("request log line: %v", l)
		}

		if out := ada.ok(t, "requests", "everything", "--team", "cli"); !strings.Contains(out, "echo") || !strings.Contains(out, "ok") {
			t.Fatalf("requests:\n%s", out)
		}

		var list struct {
			Instances []struct {
				ID string `json:"id"`
			}
		}
		if err := json.Unmarshal([]byte(ada.ok(t, "instances", "list", "--team", "cli", "-o", "json")), &list); err != nil || len(list.Instances) != 1 {
			t.Fatalf("instances list: %+v %v", list, err)
		}
		if _, errOut, code := ada.run(t, "", "instances", "restart", list.Instances[0].ID, "--team", "cli"); code != 0 || !strings.Contains(errOut, "queued") {
			t.Fatalf("restart: exit %d, %q", code, errOut)
		}
		if _, errOut, code := ada.run(t, "", "instances", "restart", "everything-cli-nobody-00000000-0000-0000-0000-000000000000", "--team", "cli"); code != 5 {
			t.Fatalf("restart of an unknown instance: exit %d, %q", code, errOut)
		}
	})

	t.Run("connect", func(t *testing.T) {
		endpoint := sat.URL + "/teams/cli/mcp"
		vscode := jsonOf(t, ada.ok(t, "connect", "vscode", "--team", "cli"))
		if s := vscode["servers"].(map[string]any)["orrery-cli"].(map[string]any); s["type"] != "http" || s["url"] != endpoint {
			t.Fatalf("vscode: %v", vscode)
		}
		claude := jsonOf(t, ada.ok(t, "connect", "claude", "--team", "cli"))
		if s := claude["mcpServers"].(map[string]any)["orrery-cli"].(map[string]any); s["type"] != "http" || s["url"] != endpoint {
			t.Fatalf("claude: %v", claude)
		}
		cursor := jsonOf(t, ada.ok(t, "connect", "cursor", "--team", "cli"))
		if s := cursor["mcpServers"].(map[string]any)["orrery-cli"].(map[string]any); s["url"] != endpoint {
			t.Fatalf("cursor: %v", cursor)
		}
		plain := jsonOf(t, ada.ok(t, "connect", "json", "--team", "cli"))
		if plain["url"] != endpoint || plain["team"] != "cli" {
			t.Fatalf("json: %v", plain)
		}
		// --write merges into the project file and keeps what else is there.
		existing := filepath.Join(ada.home, ".vscode", "mcp.json")
		if err := os.MkdirAll(filepath.Dir(existing), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(existing, []byte(`{"servers": {"mine": {"type": "stdio", "command": "x"}}, "inputs": []}`), 0o644); err != nil {
			t.Fatal(err)
		}
		ada.ok(t, "connect", "vscode", "--team", "cli", "--write")
		raw, _ := os.ReadFile(existing)
		merged := jsonOf(t, string(raw))
		servers := merged["servers"].(map[string]any)
		if servers["mine"] == nil || servers["orrery-cli"].(map[string]any)["url"] != endpoint || merged["inputs"] == nil {
			t.Fatalf("merged .vscode/mcp.json: %s", raw)
		}
	})

	t.Run("the rest of the API", func(t *testing.T) {
		weather, err := filepath.Abs(filepath.Join("..", "services", "controlplane", "internal", "serverjson", "testdata", "weather.server.json"))
		if err != nil {
			t.Fatal(err)
		}
		imported := jsonOf(t, ada.ok(t, "catalog", "import", weather, "--team", "cli", "-o", "json"))
		slug := imported["entry"].(map[string]any)["slug"].(string)
		if out := ada.ok(t, "catalog", "list", "--team", "cli"); !strings.Contains(out, slug) || !strings.Contains(out, "everything") {
			t.Fatalf("catalog list:\n%s", out)
		}
		if out := ada.ok(t, "catalog", "show", slug, "--team", "cli"); !strings.Contains(out, "REQUIRED") {
			t.Fatalf("catalog show:\n%s", out)
		}
		if out := ada.ok(t, "installations", "list", "--team", "cli", "-o", "yaml"); !strings.Contains(out, "server_slug: everything") {
			t.Fatalf("installations list -o yaml:\n%s", out)
		}
		ada.ok(t, "installations", "show", "everything", "--team", "cli", "-o", "json")
		if out := ada.ok(t, "tools", "list", "everything", "--team", "cli"); !strings.Contains(out, "everything__echo") || !strings.Contains(out, "TOKENS") {
			t.Fatalf("tools list:\n%s", out)
		}
		if _, errOut, code := ada.run(t, "", "tools", "select", "everything", "--team", "cli", "--deny", "[a-"); code == 0 || !strings.Contains(errOut, `selection.deny[0] "[a-"`) {
			t.Fatalf("tools select with a malformed pattern: exit %d, %q", code, errOut)
		}
		ada.ok(t, "tools", "select", "everything", "--team", "cli", "--deny", "get-env", "--describe", "echo=Say it again")
		ada.ok(t, "tools", "hide", "everything", "--team", "cli", "get-sum")
		listed := ada.ok(t, "tools", "list", "everything", "--team", "cli")
		for _, want := range []string{"everything__get-env  no (team)", "everything__get-sum  no (hidden)", "Say it again"} {
			if !strings.Contains(strings.Join(strings.Fields(listed), " "), strings.Join(strings.Fields(want), " ")) {
				t.Fatalf("tools list after select and hide lacks %q:\n%s", want, listed)
			}
		}
		ada.ok(t, "tools", "select", "everything", "--team", "cli")
		ada.ok(t, "tools", "hide", "everything", "--team", "cli")
		ada.ok(t, "config", "show", "everything", "--team", "cli")
		if out := ada.ok(t, "teams", "members", "cli"); !strings.Contains(out, email) {
			t.Fatalf("teams members:\n%s", out)
		}
		ada.ok(t, "teams", "invite", "cli", "bob@example.test", "--role", "admin")
		if _, errOut, code := ada.run(t, "", "teams", "invite", "cli", "bob@example.test", "--role", "owner"); code != 2 {
			t.Fatalf("invite with an unknown role: exit %d, %q", code, errOut)
		}
		client := jsonOf(t, ada.ok(t, "oauth", "clients", "create", "ci-agent", "--team", "cli", "-o", "json"))
		clientID := client["client"].(map[string]any)["client_id"].(string)
		if client["client_secret"] == "" || !strings.Contains(ada.ok(t, "oauth", "clients", "list", "--team", "cli"), clientID) {
			t.Fatalf("oauth clients: %v", client)
		}
		if _, errOut, code := ada.run(t, "", "audit"); code != 4 || !strings.Contains(errOut, "not allowed") {
			t.Fatalf("the global audit log as a user: exit %d, %q", code, errOut)
		}

		var sats struct {
			Satellites []struct {
				Status string `json:"status"`
				URL    string `json:"url"`
			} `json:"satellites"`
		}
		if err := json.Unmarshal([]byte(admin.ok(t, "satellites", "list", "-o", "json")), &sats); err != nil ||
			len(sats.Satellites) != 1 || sats.Satellites[0].URL != sat.URL {
			t.Fatalf("satellites list: %+v %v", sats, err)
		}
		if tok := jsonOf(t, admin.ok(t, "satellites", "tokens", "create", "edge", "--ttl", "1h", "-o", "json")); tok["token"] == "" {
			t.Fatalf("registration token: %v", tok)
		}
		if out := admin.ok(t, "audit", "--limit", "50"); !strings.Contains(out, "oauth.device_approve") {
			t.Fatalf("audit log:\n%s", out)
		}
	})

	t.Run("placement and drain", func(t *testing.T) {
		var placed struct {
			Placements []struct {
				SatelliteID string `json:"satellite_id"`
			} `json:"placements"`
			Replicas int `json:"replicas"`
		}
		if err := json.Unmarshal([]byte(admin.ok(t, "satellites", "placements", "--team", "cli", "--replicas", "3", "-o", "json")), &placed); err != nil ||
			len(placed.Placements) != 1 || placed.Replicas != 3 {
			t.Fatalf("placements of cli with three replicas asked: %+v %v", placed, err)
		}
		id := placed.Placements[0].SatelliteID
		if out := admin.ok(t, "satellites", "placements", "--satellite", id); !strings.Contains(out, "cli") {
			t.Fatalf("teams placed on the satellite:\n%s", out)
		}
		if _, errOut, code := admin.run(t, "", "satellites", "placements", "--team", "cli", "--satellite", id); code != 2 {
			t.Fatalf("placements of a team and a satellite at once: exit %d, %q", code, errOut)
		}
		if _, errOut, code := admin.run(t, "", "satellites", "drain", "no-such-satellite"); code == 0 || !strings.Contains(errOut, `no global satellite named "no-such-satellite"`) {
			t.Fatalf("drain of an unknown satellite: exit %d, %q", code, errOut)
		}
		if _, errOut, code := ada.run(t, "", "satellites", "drain", id); code != 4 {
			t.Fatalf("drain by a user who is no global admin: exit %d, %q", code, errOut)
		}
		if _, errOut, code := admin.run(t, "", "satellites", "drain", id); code != 0 || !strings.Contains(errOut, "is draining") {
			t.Fatalf("drain: exit %d, %q", code, errOut)
		}
		if out := admin.ok(t, "satellites", "list"); !strings.Contains(out, "drain") {
			t.Fatalf("satellites list while draining:\n%s", out)
		}
		admin.ok(t, "satellites", "undrain", id)
		if out := admin.ok(t, "satellites", "list"); strings.Contains(out, "drain") {
			t.Fatalf("satellites list after undrain:\n%s", out)
		}
		admin.ok(t, "satellites", "placements", "--team", "cli", "--replicas", "0")
	})

	t.Run("login through the browser", func(t *testing.T) {
		cmd, lines, _ := ada.background(t, "login", cp.URL, "--no-browser", "--context", "browser")
		authURL := lineWith(t, lines, cp.URL+"/oauth/authorize?", 30*time.Second)
		authURL = authURL[strings.Index(authURL, "http"):]
		if u, _ := url.Parse(authURL); u.Query().Get("code_challenge_method") != "S256" || u.Query().Get("resource") != cp.URL {
			t.Fatalf("authorization URL without PKCE or resource: %s", authURL)
		}
		br := oauthtest.NewBrowser()
		p, err := br.SignIn(ctx, authURL, email, password)
		if err != nil || !oauthtest.IsConsent(p) {
			t.Fatalf("sign in: %v %d %s", err, p.Status, p.Body)
		}
		csrf, err := oauthtest.CSRF(p.Body)
		if err != nil {
			t.Fatal(err)
		}
		p, err = br.Do(ctx, http.MethodPost, authURL, url.Values{"csrf": {csrf}, "action": {"approve"}})
		if err != nil || !strings.HasPrefix(p.Location, "http://127.0.0.1:") {
			t.Fatalf("approve: %v %d %s", err, p.Status, p.Location)
		}
		// The browser follows the redirect to orreryctl's loopback listener.
		resp, err := http.Get(p.Location)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		lineWith(t, lines, "Signed in to "+cp.URL+" as "+email+` (context "browser")`, 30*time.Second)
		waitExit(t, cmd, lines)
		if out := ada.ok(t, "contexts", "list"); !strings.Contains(out, "*        browser") && !strings.Contains(out, "* ") {
			t.Fatalf("contexts list:\n%s", out)
		}
		ada.ok(t, "teams", "show", "cli", "--context", "dev")

		// Logging out revokes the sign-in, so a copy of the token left elsewhere stops working too.
		var cfg struct {
			Contexts map[string]struct {
				AccessToken string `json:"access_token"`
			} `json:"contexts"`
		}
		raw, _ := os.ReadFile(filepath.Join(ada.home, ".config", "orrery", "config.json"))
		if err := json.Unmarshal(raw, &cfg); err != nil {
			t.Fatal(err)
		}
		copied := cfg.Contexts["browser"].AccessToken
		if _, errOut, code := ada.run(t, "", "logout"); code != 0 || !strings.Contains(errOut, "revoked the sign-in") {
			t.Fatalf("logout: exit %d, %q", code, errOut)
		}
		if _, errOut, code := newCLI(t, "ORRERY_TOKEN="+copied, "ORRERY_URL="+cp.URL).run(t, "", "teams", "list"); code != 3 {
			t.Fatalf("a copy of the token after logout: exit %d, %q", code, errOut)
		}
		ada.ok(t, "contexts", "use", "dev")
	})

	t.Run("bad input", func(t *testing.T) {
		// Another user's team is as unknown to ada as one that does not exist.
		admin.ok(t, "teams", "create", "secret")
		var adminTeams struct {
			Teams []struct {
				ID   string `json:"id"`
				Slug string `json:"slug"`
			} `json:"teams"`
		}
		if err := json.Unmarshal([]byte(admin.ok(t, "teams", "list", "-o", "json")), &adminTeams); err != nil {
			t.Fatal(err)
		}
		secretID := ""
		for _, tm := range adminTeams.Teams {
			if tm.Slug == "secret" {
				secretID = tm.ID
			}
		}
		for _, tc := range []struct {
			name string
			cli  *cli
			args []string
			code int
			want string
		}{
			{"unknown team", ada, []string{"instances", "list", "--team", "nope"}, 5, `no team "nope" among yours`},
			{"another user's team", ada, []string{"connect", "json", "--team", "secret", "--context", "dev"}, 5, `no team "secret" among yours`},
			{"another user's team by id", ada, []string{"installations", "list", "--team", secretID, "--context", "dev"}, 5, "among yours"},
			{"wrong flag", ada, []string{"teams", "list", "--colour"}, 2, "unknown flag: --colour"},
			{"missing team", ada, []string{"install", "everything"}, 2, `required flag(s) "team" not set`},
			{"unknown output", ada, []string{"teams", "list", "-o", "xml"}, 2, "unknown output format"},
			{"unknown template", ada, []string{"install", "nothing", "--team", "cli"}, 5, `no catalog entry "nothing"`},
			{"revoked token", newCLI(t, "ORRERY_TOKEN=orpat_not-a-token", "ORRERY_URL="+cp.URL), []string{"teams", "list"}, 3, "orreryctl login"},
			{"never signed in", newCLI(t), []string{"teams", "list"}, 3, "not signed in"},
		} {
			_, errOut, code := tc.cli.run(t, "", tc.args...)
			if code != tc.code || !strings.Contains(errOut, tc.want) {
				t.Errorf("%s: exit %d, stderr %q; want exit %d with %q", tc.name, code, errOut, tc.code, tc.want)
			}
		}
	})

	t.Run("uninstall", func(t *testing.T) {
		if _, errOut, code := ada.run(t, "", "uninstall", "everything", "--team", "cli"); code != 2 || !strings.Contains(errOut, "--yes") {
			t.Fatalf("uninstall without confirmation: exit %d, %q", code, errOut)
		}
		ada.ok(t, "uninstall", "everything", "--team", "cli", "--yes")
		if out := ada.ok(t, "installations", "list", "--team", "cli"); strings.Contains(out, "everything") {
			t.Fatalf("installations after uninstall:\n%s", out)
		}
	})

	t.Run("expired sign-in", func(t *testing.T) {
		path := filepath.Join(ada.home, ".config", "orrery", "config.json")
		// expire marks the dev context's access token expired, with refreshToken beside it unless empty, and
		// returns the context as saved.
		expire := func(refreshToken string) map[string]any {
			raw, _ := os.ReadFile(path)
			var doc map[string]any
			if err := json.Unmarshal(raw, &doc); err != nil {
				t.Fatal(err)
			}
			dev := doc["contexts"].(map[string]any)["dev"].(map[string]any)
			dev["expiry"] = time.Now().Add(-time.Hour).Format(time.RFC3339)
			if refreshToken != "" {
				dev["refresh_token"] = refreshToken
			}
			raw, _ = json.Marshal(doc)
			if err := os.WriteFile(path, raw, 0o600); err != nil {
				t.Fatal(err)
			}
			return dev
		}
		// An expired access token is refreshed, and the rotated refresh token saved.
		before := expire("")
		ada.ok(t, "teams", "list", "--context", "dev")
		raw, _ := os.ReadFile(path)
		after := jsonOf(t, string(raw))["contexts"].(map[string]any)["dev"].(map[string]any)
		if after["access_token"] == before["access_token"] || after["refresh_token"] == before["refresh_token"] {
			t.Fatalf("refresh: the tokens stayed as they were: %v", after)
		}
		// A sign-in whose access token has expired and whose refresh token is gone is refused with what to do.
		expire("orrt_revoked")
		_, errOut, code := ada.run(t, "", "teams", "list", "--context", "dev")
		if code != 3 || !strings.Contains(errOut, "orreryctl login "+cp.URL) {
			t.Fatalf("expired sign-in: exit %d, %q", code, errOut)
		}
	})
}
