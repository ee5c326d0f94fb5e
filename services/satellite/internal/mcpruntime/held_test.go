package mcpruntime_test

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"google.golang.org/protobuf/proto"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/services/satellite/internal/mcpruntime"
)

const requiresReauth = satellitev1.InstanceStatus_INSTANCE_STATUS_REQUIRES_REAUTH

// TestAccountToConnect runs an installation of a server that authorizes each person for two members:
// Ada connected, Bo has not. Bo's instance is not run; it lists the tools of Ada's and reports that Bo
// must connect. When Ada's account lapses too, her instance stops and keeps listing what it offered; with
// nothing known of the server, an instance lists no tools and its status says so. Bo connecting starts
// his instance.
func TestAccountToConnect(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	const link = "https://cp.example.com/oauth/remote/connect?installation_id=i&team_id=t"
	ada := everything(t, "upstream")
	ada.ServerName = "Upstream"
	bo := proto.Clone(ada).(*satellitev1.Instance)
	bo.Id, bo.UserId, bo.UserSlug = "upstream-platform-bo-"+bo.GetInstallationId(), uuid.NewString(), "bo"
	bo.ConnectAccountUrl = link
	b.apply(t, ada, bo)
	adaInfo := b.waitStatus(t, ada.GetId(), online)

	toolNames := func(tools []*mcp.Tool) []string { return names(tools, func(t *mcp.Tool) string { return t.Name }) }
	boInfo := b.waitFor(t, bo.GetId(), "Ada's tools listed", func(i mcpruntime.InstanceInfo) bool { return len(i.Tools) > 0 })
	if boInfo.Status != requiresReauth || boInfo.ConnectAccountURL != link || boInfo.Available() || boInfo.Pid != 0 ||
		len(boInfo.Prompts)+len(boInfo.Resources) != 0 {
		t.Fatalf("Bo's instance: %v %q available %t pid %d, %d prompts, %d resources", boInfo.Status, boInfo.ConnectAccountURL,
			boInfo.Available(), boInfo.Pid, len(boInfo.Prompts), len(boInfo.Resources))
	}
	if got, want := toolNames(boInfo.Tools), toolNames(adaInfo.Tools); !slices.Equal(got, want) {
		t.Fatalf("Bo's tools = %v, want Ada's %v", got, want)
	}
	statusOf := func(id string) *satellitev1.StatusChanged {
		var last *satellitev1.StatusChanged
		for _, ev := range b.events.of(id) {
			if sc := ev.GetStatusChanged(); sc != nil {
				last = sc
			}
		}
		return last
	}
	b.events.wait(t, bo.GetId(), "Bo's status to say he must connect", func([]*satellitev1.Event) bool {
		sc := statusOf(bo.GetId())
		return sc.GetStatus() == requiresReauth && sc.GetMessage() == "bo must connect their account at Upstream: "+link
	})
	if lc := lifecycles(b.events.of(bo.GetId())); len(lc) != 0 {
		t.Fatalf("Bo's instance has process events %v; it must not run", lc)
	}

	// Ada's account lapses: her instance stops, and she keeps the tools it offered.
	adaLapsed := proto.Clone(ada).(*satellitev1.Instance)
	adaLapsed.ConnectAccountUrl, adaLapsed.ContentHash = link, "h2"
	b.apply(t, adaLapsed, bo)
	lapsed := b.waitStatus(t, ada.GetId(), requiresReauth)
	if got := toolNames(lapsed.Tools); !slices.Equal(got, toolNames(adaInfo.Tools)) || lapsed.Pid != 0 {
		t.Fatalf("Ada's lapsed instance lists %v (pid %d), want what it offered", got, lapsed.Pid)
	}
	// The status follows the instance's removal.
	b.events.wait(t, ada.GetId(), "Ada's status to say she must connect", func([]*satellitev1.Event) bool {
		sc := statusOf(ada.GetId())
		return sc.GetStatus() == requiresReauth && strings.HasPrefix(sc.GetMessage(), "ada must connect their account at Upstream")
	})
	// Bo, who never ran, knows nothing now that no instance of the installation runs.
	if info, _ := b.rt.Instance(bo.GetId()); len(info.Tools) != 0 || !strings.Contains(info.Message, "no tools are listed") {
		t.Fatalf("Bo with no connected member: %d tools, %q", len(info.Tools), info.Message)
	}
	b.events.wait(t, bo.GetId(), "Bo's status to say no tools are known", func([]*satellitev1.Event) bool {
		return strings.Contains(statusOf(bo.GetId()).GetMessage(), "no tools are listed")
	})

	// Bo connects: his instance runs.
	boConnected := proto.Clone(bo).(*satellitev1.Instance)
	boConnected.ConnectAccountUrl, boConnected.ContentHash = "", "h3"
	b.apply(t, adaLapsed, boConnected)
	if info := b.waitStatus(t, bo.GetId(), online); info.ConnectAccountURL != "" {
		t.Fatalf("Bo's connected instance still carries the link %q", info.ConnectAccountURL)
	}
	callEcho(t, b.rt, bo.GetId(), "connected")
}

// TestAccountToConnectAfterRestart restarts the satellite while a member's account lapses: the instance
// is not run again, and it lists the tools its kept catalogue holds from the run before.
func TestAccountToConnectAfterRestart(t *testing.T) {
	t.Parallel()
	catalogs := filepath.Join(t.TempDir(), "catalogs")
	keep := func(c *mcpruntime.Config) { c.CatalogDir = catalogs }
	ada := everything(t, "upstream")
	first := setup(t, keep)
	first.apply(t, ada)
	discovered := first.waitStatus(t, ada.GetId(), online)
	first.stop()

	lapsed := proto.Clone(ada).(*satellitev1.Instance)
	lapsed.ConnectAccountUrl, lapsed.ContentHash = "https://cp.example.com/oauth/remote/connect?x=1", "h2"
	second := setup(t, keep)
	second.apply(t, lapsed)
	info := second.waitStatus(t, ada.GetId(), requiresReauth)
	toolNames := func(tools []*mcp.Tool) []string { return names(tools, func(t *mcp.Tool) string { return t.Name }) }
	if got, want := toolNames(info.Tools), toolNames(discovered.Tools); len(want) == 0 || !slices.Equal(got, want) {
		t.Fatalf("after a restart with the account lapsed: tools %v, want the kept %v", got, want)
	}
	if info.Pid != 0 || len(lifecycles(second.events.of(ada.GetId()))) != 0 {
		t.Fatalf("the lapsed instance ran after the restart: pid %d", info.Pid)
	}
}
