package gateway

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Links of the control plane's connect page as the configuration would carry them. Real links name the
// team and installation only; these differ per member so that the test sees whose instance answered.
const (
	annLink = "https://cp.example.com/oauth/remote/connect?installation_id=inst-remote&team_id=acme&for=ann"
	bobLink = "https://cp.example.com/oauth/remote/connect?installation_id=inst-remote&team_id=acme&for=bob"
)

// putAwaiting adds an instance of installation inst-remote for user that waits for the user to connect
// their account: it has no session (a call that reached the backend would fail), only the tools given.
func (b *fakeBackend) putAwaiting(id, user, link string, tools []*mcp.Tool) {
	b.mu.Lock()
	b.insts[id] = &fakeInstance{broken: true, inst: Instance{
		ID: id, InstallationID: "inst-remote", TeamID: teamAcme, UserID: user, ServerSlug: "remote",
		ServerName: "Remote Tracker", Prefix: "remote", Status: "requires_reauth", RequestLoggingEnabled: true,
		Tools: tools, ConnectAccountURL: link,
		// What the runtime never gives an awaiting instance, and the gateway must not offer if it did.
		Prompts: []*mcp.Prompt{{Name: "leaked"}},
	}}
	b.mu.Unlock()
	b.signal()
}

// TestConnectAccount has members of a team use a remote server that authorizes each person: Ann
// connected, so her calls reach the server; Bob has not, so he sees the server's tools (those the
// satellite knows from Ann's instance) and his calls answer with his link to connect, without reaching
// any server. With no tools known he sees none, and a call by name still gets the link. Once he connects,
// his calls go through.
func TestConnectAccount(t *testing.T) {
	t.Parallel()
	for _, era := range eras {
		t.Run(era.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, setupOptions{})
			remote := newDownstream("remote", "search_issues", "create_issue")
			b.backend.add(t, Instance{ID: "remote-ann", InstallationID: "inst-remote", TeamID: teamAcme, UserID: userAnn,
				ServerSlug: "remote", Prefix: "remote", Online: true, Status: "online"}, remote.server)
			b.backend.mu.Lock()
			known := b.backend.insts["remote-ann"].inst.Tools
			b.backend.mu.Unlock()
			b.backend.putAwaiting("remote-bob", userBob, bobLink, known)

			o := era.opts
			o.listChanged = make(chan struct{}, 1)
			ann := b.connect(t, "ann", "acme", clientOptions{version: era.opts.version, sse: era.opts.sse})
			bob := b.connect(t, "bob", "acme", o)
			cid := b.connect(t, "cid", "globex", clientOptions{version: era.opts.version, sse: era.opts.sse})

			if got := toolNames(t, bob); !slices.Contains(got, "remote__search_issues") || !slices.Contains(got, "remote__create_issue") {
				t.Fatalf("Bob's tools before connecting = %v, want the remote server's", got)
			}
			if prompts, err := bob.ListPrompts(t.Context(), nil); err != nil || len(prompts.Prompts) != 0 {
				t.Fatalf("Bob's prompts before connecting = %v %v, want none", prompts, err)
			}
			res, err := bob.CallTool(t.Context(), &mcp.CallToolParams{Name: "remote__search_issues", Arguments: map[string]any{"q": "x"}})
			if err != nil {
				t.Fatal(err)
			}
			text := callText(t, res)
			if !res.IsError || !strings.Contains(text, "connect your account at Remote Tracker: "+bobLink) {
				t.Fatalf("Bob's call before connecting answered %v %q, want a tool error with his link", res.IsError, text)
			}
			if strings.Contains(text, annLink) || strings.Contains(text, userAnn) || strings.Contains(text, "remote-ann") {
				t.Fatalf("Bob's answer names Ann's instance: %q", text)
			}
			// The refusal is in Bob's request logs, as his, and nothing of it reached a server.
			var bobLogs int
			for _, ev := range b.events.requestLogs() {
				rl := ev.GetRequestLog()
				if ev.GetInstanceId() == "remote-bob" && rl.GetUserId() == userBob && !rl.GetSuccess() {
					bobLogs++
				}
				if ev.GetInstanceId() == "remote-ann" {
					t.Fatalf("a request log of Ann's instance from Bob's call: %v", ev)
				}
			}
			if bobLogs != 1 {
				t.Fatalf("%d failed request logs of Bob's call, want 1", bobLogs)
			}

			// Ann, connected, calls her own instance.
			res, err = ann.CallTool(t.Context(), &mcp.CallToolParams{Name: "remote__search_issues", Arguments: map[string]any{"q": "ann"}})
			if err != nil || res.IsError || callText(t, res) != `{"q":"ann"}` {
				t.Fatalf("Ann's call = %v %v, want it served by her instance", res, err)
			}
			// Ann's account lapses too: her calls carry her link, not Bob's.
			b.backend.update("remote-ann", func(inst *Instance) { inst.Online, inst.ConnectAccountURL = false, annLink })
			waitFor(t, func() bool {
				res, err := ann.CallTool(t.Context(), &mcp.CallToolParams{Name: "remote__search_issues", Arguments: map[string]any{}})
				return err == nil && res.IsError && len(res.Content) == 1 && strings.Contains(callText(t, res), annLink)
			}, "Ann's call to carry her link")
			b.backend.update("remote-ann", func(inst *Instance) { inst.Online, inst.ConnectAccountURL = true, "" })

			// Another team's member knows nothing of it, by list or by name.
			if got := toolNames(t, cid); slices.ContainsFunc(got, func(n string) bool { return strings.HasPrefix(n, "remote__") }) {
				t.Fatalf("Cid of another team lists %v", got)
			}
			if res, err := cid.CallTool(t.Context(), &mcp.CallToolParams{Name: "remote__search_issues", Arguments: map[string]any{}}); err == nil &&
				strings.Contains(callText(t, res), "connect") {
				t.Fatalf("Cid of another team got %q", callText(t, res))
			}

			// With no tools known, Bob sees none, and a call by a name he kept still gets his link.
			b.backend.update("remote-bob", func(inst *Instance) { inst.Tools = nil })
			waitFor(t, func() bool { return !slices.Contains(toolNames(t, bob), "remote__search_issues") }, "Bob's tools to go")
			res, err = bob.CallTool(t.Context(), &mcp.CallToolParams{Name: "remote__search_issues", Arguments: map[string]any{}})
			if err != nil || !res.IsError || !strings.Contains(callText(t, res), bobLink) {
				t.Fatalf("Bob's call by name with no tools known = %v %v, want his link", res, err)
			}
			drain(o.listChanged)

			// Bob connects: his instance runs with his credential and his calls go through.
			b.backend.mu.Lock()
			delete(b.backend.insts, "remote-bob")
			b.backend.mu.Unlock()
			b.backend.add(t, Instance{ID: "remote-bob", InstallationID: "inst-remote", TeamID: teamAcme, UserID: userBob,
				ServerSlug: "remote", Prefix: "remote", Online: true, Status: "online", RequestLoggingEnabled: true}, remote.server)
			select {
			case <-o.listChanged:
			case <-time.After(5 * time.Second):
				t.Fatal("no tools/list_changed after Bob connected")
			}
			waitFor(t, func() bool { return slices.Contains(toolNames(t, bob), "remote__search_issues") }, "Bob's tools to come back")
			res, err = bob.CallTool(t.Context(), &mcp.CallToolParams{Name: "remote__search_issues", Arguments: map[string]any{"q": "bob"}})
			if err != nil || res.IsError || callText(t, res) != `{"q":"bob"}` {
				t.Fatalf("Bob's call after connecting = %v %v", res, err)
			}
		})
	}
}

// waitFor polls cond, which the gateway makes true once it has synced a change, for a few seconds.
func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("waited in vain for %s", what)
		}
	}
}

func drain(ch chan struct{}) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}
