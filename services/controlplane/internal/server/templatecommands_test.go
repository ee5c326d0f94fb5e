package server_test

import (
	"strings"
	"testing"

	"connectrpc.com/connect"

	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/services/controlplane/internal/catalogapi"
)

// A team admin, which any signed-in user is of their personal team, cannot make shared satellites run a
// program of their choosing through a team template.
func TestTeamTemplateCommandsAreOperatorPolicy(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	p := seedProduct(t, b)
	ctx := t.Context()
	teamID := p.team.ID.String()
	stdio := func(command string) *apiv1.CatalogEntrySpec {
		return &apiv1.CatalogEntrySpec{Name: "Tool", Transport: apiv1.Transport_TRANSPORT_STDIO, Command: command}
	}
	teamSlugs := func() []string {
		resp := of(p.admin.catalog.ListCatalogEntries(ctx, connect.NewRequest(&apiv1.ListCatalogEntriesRequest{TeamId: teamID}))).
			must(t, "list").Msg
		var slugs []string
		for _, e := range resp.Entries {
			slugs = append(slugs, e.Slug)
		}
		return slugs
	}

	for _, command := range []string{"/bin/sh", "sh", "npx ", "/usr/bin/../../bin/sh"} {
		_, err := p.admin.catalog.CreateCatalogEntry(ctx, connect.NewRequest(&apiv1.CreateCatalogEntryRequest{
			TeamId: teamID, Slug: "shell", Spec: stdio(command),
		}))
		wantCode(t, "team template running "+command, err, connect.CodeInvalidArgument, "npx, uvx")
		wantCode(t, "team template running "+command, err, connect.CodeInvalidArgument, command)
	}
	if slugs := teamSlugs(); len(slugs) != 0 {
		t.Fatalf("refused templates were stored: %v", slugs)
	}

	accepted := of(p.admin.catalog.CreateCatalogEntry(ctx, connect.NewRequest(&apiv1.CreateCatalogEntryRequest{
		TeamId: teamID, Slug: "tool", Spec: stdio("npx"),
	}))).must(t, "team template running npx").Msg.Entry
	_, err := p.admin.catalog.UpdateCatalogEntry(ctx, connect.NewRequest(&apiv1.UpdateCatalogEntryRequest{
		TeamId: teamID, Id: accepted.Id, Spec: stdio("/bin/sh"),
	}))
	wantCode(t, "updating a team template to /bin/sh", err, connect.CodeInvalidArgument, "/bin/sh")
	stored := of(p.admin.catalog.GetCatalogEntry(ctx, connect.NewRequest(&apiv1.GetCatalogEntryRequest{
		TeamId: teamID, Id: accepted.Id,
	}))).must(t, "get").Msg.Entry
	if stored.Spec.Command != "npx" {
		t.Fatalf("refused update changed the command to %q", stored.Spec.Command)
	}

	// server.json import writes team templates the same way, whether the command comes from the
	// package's registry or from its runtime hint.
	for command, pkg := range map[string]string{
		"docker":  `{"registryType": "oci", "identifier": "example/oci-mcp", "transport": {"type": "stdio"}}`,
		"/bin/sh": `{"registryType": "npm", "identifier": "x", "runtimeHint": "/bin/sh", "transport": {"type": "stdio"}}`,
	} {
		_, err = p.admin.catalog.ImportServerJson(ctx, connect.NewRequest(&apiv1.ImportServerJsonRequest{
			TeamId: teamID, Slug: "imported", ServerJson: `{"name": "io.example/x", "version": "1.0.0", "packages": [` + pkg + `]}`,
		}))
		wantCode(t, "importing a team template that runs "+command, err, connect.CodeInvalidArgument, command)
	}
	if slugs := teamSlugs(); len(slugs) != 1 {
		t.Fatalf("team templates after refused imports: %v", slugs)
	}

	// Remote team templates and global templates are not the policy's business.
	of(p.admin.catalog.CreateCatalogEntry(ctx, connect.NewRequest(&apiv1.CreateCatalogEntryRequest{
		TeamId: teamID, Slug: "remote", Spec: &apiv1.CatalogEntrySpec{
			Name: "Remote", Transport: apiv1.Transport_TRANSPORT_HTTP, Url: "https://mcp.acme.test/mcp",
		},
	}))).must(t, "remote team template")
	of(p.root.catalog.CreateCatalogEntry(ctx, connect.NewRequest(&apiv1.CreateCatalogEntryRequest{
		Slug: "global-shell", Spec: stdio("/bin/sh"),
	}))).must(t, "global template running /bin/sh")
}

func TestTeamTemplateCommandsConfigured(t *testing.T) {
	t.Parallel()
	dirs, err := catalogapi.NewCommandPolicy([]string{"/opt/mcp/"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		policy  *catalogapi.CommandPolicy
		command string
		want    connect.Code
	}{
		{"a directory allows what is under it", &dirs, "/opt/mcp/tool", 0},
		{"a directory does not allow climbing out", &dirs, "/opt/mcp/../../bin/sh", connect.CodeInvalidArgument},
		{"a directory does not allow the default names", &dirs, "npx", connect.CodeInvalidArgument},
		{"no restriction", &catalogapi.CommandPolicy{}, "/bin/sh", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, setupOpts{templateCommands: tc.policy})
			p := seedProduct(t, b)
			_, err := p.admin.catalog.CreateCatalogEntry(t.Context(), connect.NewRequest(&apiv1.CreateCatalogEntryRequest{
				TeamId: p.team.ID.String(), Slug: "tool",
				Spec: &apiv1.CatalogEntrySpec{Name: "Tool", Transport: apiv1.Transport_TRANSPORT_STDIO, Command: tc.command},
			}))
			if connect.CodeOf(err) != tc.want && (tc.want != 0 || err != nil) {
				t.Fatalf("%s: got %v, want code %v", tc.command, err, tc.want)
			}
		})
	}
}

// TestTeamSourceTemplateRunsItsOwnProgram: a team template built from source may run a program of its
// built tree, but not a host program outside the policy, nor climb out of its tree.
func TestTeamSourceTemplateRunsItsOwnProgram(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	p := seedProduct(t, b)
	teamID := p.team.ID.String()
	source := &satellitev1.Source{Url: "https://example.test/server.tar.gz", Sha256: strings.Repeat("0", 64)}
	spec := func(command string, src *satellitev1.Source) *apiv1.CatalogEntrySpec {
		return &apiv1.CatalogEntrySpec{Name: "Own", Transport: apiv1.Transport_TRANSPORT_STDIO, Command: command, Source: src}
	}
	of(p.admin.catalog.CreateCatalogEntry(t.Context(), connect.NewRequest(&apiv1.CreateCatalogEntryRequest{
		TeamId: teamID, Slug: "own", Spec: spec("bin/server", source),
	}))).must(t, "a source template running its own program")
	for _, tc := range []struct {
		command string
		src     *satellitev1.Source
	}{
		{"bin/server", nil},      // no tree: a path of the host
		{"../../bin/sh", source}, // out of the tree
		{"/bin/sh", source},      // a host program
		{"sh", source},           // a host program, by name
		{"bin/../../sh", source}, // out of the tree, spelled otherwise
	} {
		_, err := p.admin.catalog.CreateCatalogEntry(t.Context(), connect.NewRequest(&apiv1.CreateCatalogEntryRequest{
			TeamId: teamID, Slug: "refused", Spec: spec(tc.command, tc.src),
		}))
		wantCode(t, "team template running "+tc.command, err, connect.CodeInvalidArgument, tc.command)
	}
}
