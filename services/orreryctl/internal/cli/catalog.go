package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"

	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
)

// maxFileBytes bounds a file or stdin orreryctl reads: the control plane accepts at most 8 MiB anyway.
const maxFileBytes = 8 << 20

// readInput reads a file, or stdin for "-".
func (a *App) readInput(name string) ([]byte, error) {
	var r io.Reader
	if name == "-" {
		r = a.In
	} else {
		f, err := os.Open(name)
		if err != nil {
			return nil, usageError{err}
		}
		defer f.Close()
		r = f
	}
	raw, err := io.ReadAll(io.LimitReader(r, maxFileBytes+1))
	if err != nil {
		return nil, err
	}
	if len(raw) > maxFileBytes {
		return nil, usageError{fmt.Errorf("%s is larger than %d bytes", name, maxFileBytes)}
	}
	return raw, nil
}

// catalogEntries lists the templates visible with teamID (global ones, and the team's), every page.
func (s *session) catalogEntries(ctx context.Context, teamID, search string) (*apiv1.ListCatalogEntriesResponse, error) {
	all := &apiv1.ListCatalogEntriesResponse{}
	req := &apiv1.ListCatalogEntriesRequest{TeamId: teamID, Search: search}
	for {
		resp, err := s.catalog().ListCatalogEntries(ctx, connect.NewRequest(req))
		if err != nil {
			return nil, err
		}
		all.Entries = append(all.Entries, resp.Msg.GetEntries()...)
		if resp.Msg.GetNextPageToken() == "" || len(all.Entries) > 10000 {
			return all, nil
		}
		req.PageToken = resp.Msg.GetNextPageToken()
	}
}

// catalogEntry finds a template by slug or id; a team's own template wins over a global one of the same slug.
func (s *session) catalogEntry(ctx context.Context, teamID, ref string) (*apiv1.CatalogEntry, error) {
	resp, err := s.catalogEntries(ctx, teamID, "")
	if err != nil {
		return nil, err
	}
	var found *apiv1.CatalogEntry
	for _, e := range resp.GetEntries() {
		if e.GetId() == ref || e.GetSlug() == ref {
			if found == nil || e.GetTeamId() != "" {
				found = e
			}
		}
	}
	if found == nil {
		return nil, notFound(fmt.Errorf("no catalog entry %q; 'orreryctl catalog list' shows them", ref))
	}
	return found, nil
}

func catalogRow(e *apiv1.CatalogEntry) []string {
	scope := "global"
	if e.GetTeamId() != "" {
		scope = "team"
	}
	target := e.GetSpec().GetUrl()
	if target == "" {
		target = strings.TrimSpace(e.GetSpec().GetCommand() + " " + strings.Join(e.GetSpec().GetArgs(), " "))
	}
	return []string{e.GetSlug(), e.GetSpec().GetName(), enumName(e.GetSpec().GetTransport().String(), "TRANSPORT_"), scope, target}
}

func (a *App) catalogCommand() *cobra.Command {
	c := &cobra.Command{Use: "catalog", Short: "Browse and add MCP server templates"}
	var team, search string
	list := &cobra.Command{
		Use:     "list",
		Short:   "List templates: the global ones and, with --team, the team's own",
		Example: "  orreryctl catalog list --team platform --search github",
		Args:    args(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			s, err := a.session(c.Context())
			if err != nil {
				return err
			}
			_, teamID, err := s.optionalTeam(c.Context(), team)
			if err != nil {
				return err
			}
			resp, err := s.catalogEntries(c.Context(), teamID, search)
			if err != nil {
				return err
			}
			var rows [][]string
			for _, e := range resp.GetEntries() {
				rows = append(rows, catalogRow(e))
			}
			return a.show(resp, []string{"SLUG", "NAME", "TRANSPORT", "SCOPE", "RUNS"}, rows)
		},
	}
	a.teamFlag(list, &team, false)
	list.Flags().StringVar(&search, "search", "", "only templates whose name, slug or description contains this")
	c.AddCommand(list)

	var showTeam string
	show := &cobra.Command{
		Use:   "show TEMPLATE",
		Short: "Show a template, with the values it asks for",
		Args:  args(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, argv []string) error {
			s, err := a.session(c.Context())
			if err != nil {
				return err
			}
			_, teamID, err := s.optionalTeam(c.Context(), showTeam)
			if err != nil {
				return err
			}
			e, err := s.catalogEntry(c.Context(), teamID, argv[0])
			if err != nil {
				return err
			}
			if a.output != "table" {
				return writeStructured(a.Out, a.output, e)
			}
			if err := writeTable(a.Out, []string{"SLUG", "NAME", "TRANSPORT", "SCOPE", "RUNS"}, [][]string{catalogRow(e)}); err != nil {
				return err
			}
			if d := e.GetSpec().GetDescription(); d != "" {
				fmt.Fprintf(a.Out, "\n%s\n", d)
			}
			var rows [][]string
			for _, f := range schemaFields(e.GetSpec().GetConfigSchema()) {
				rows = append(rows, []string{f.kind + "." + f.GetName(), enumName(f.GetScope().String(), "CONFIG_SCOPE_"),
					yesNo(f.GetRequired()), yesNo(f.GetSecret()), f.GetDescription()})
			}
			if len(rows) > 0 {
				fmt.Fprintln(a.Out)
				return writeTable(a.Out, []string{"VALUE", "SET BY", "REQUIRED", "SECRET", "DESCRIPTION"}, rows)
			}
			return nil
		},
	}
	a.teamFlag(show, &showTeam, false)
	c.AddCommand(show)

	var createTeam, file string
	create := &cobra.Command{
		Use:   "create SLUG -f SPEC.json",
		Short: "Create a template from a spec file (a CatalogEntrySpec in JSON)",
		Example: `  orreryctl catalog create everything --team platform -f everything.json
  # everything.json:
  # {"name": "Everything", "transport": "TRANSPORT_STDIO", "command": "npx",
  #  "args": ["-y", "@modelcontextprotocol/server-everything"]}`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, argv []string) error {
			raw, err := a.readInput(file)
			if err != nil {
				return err
			}
			spec := &apiv1.CatalogEntrySpec{}
			if err := protojson.Unmarshal(raw, spec); err != nil {
				return usageError{fmt.Errorf("%s is not a template spec: %w", file, err)}
			}
			s, err := a.session(c.Context())
			if err != nil {
				return err
			}
			_, teamID, err := s.optionalTeam(c.Context(), createTeam)
			if err != nil {
				return err
			}
			resp, err := s.catalog().CreateCatalogEntry(c.Context(), connect.NewRequest(&apiv1.CreateCatalogEntryRequest{TeamId: teamID, Slug: argv[0], Spec: spec}))
			if err != nil {
				return err
			}
			return a.show(resp.Msg, []string{"SLUG", "NAME", "TRANSPORT", "SCOPE", "RUNS"}, [][]string{catalogRow(resp.Msg.GetEntry())})
		},
	}
	a.teamFlag(create, &createTeam, false)
	create.Flags().StringVarP(&file, "file", "f", "", "the spec file, or - for stdin")
	_ = create.MarkFlagRequired("file")
	c.AddCommand(create)

	var deployTeam, deployURL, deploySum, deployBuild, deployFile string
	deploy := &cobra.Command{
		Use:   "deploy TEMPLATE --url ARCHIVE_URL | --archive FILE",
		Short: "Build a stdio template's server from a source archive, or redeploy it from a new one",
		Long: `Sets the template's source: an https URL of a .tar.gz or .zip archive (a GitHub archive URL is the
common case) and its SHA-256. Satellites download it, verify it, build it in the server's sandbox
(npm ci and npm run build, a Python venv, go build, or --build) and run the template's command in the
built tree. Running instances move to the new version once it lists its tools; a failed build leaves
the old version serving. Without --sha256 the archive is downloaded here once to compute it.
With --archive, a team template's archive is uploaded to the control plane instead (at most 16 MiB).`,
		Example: `  orreryctl catalog deploy my-server --team platform \
    --url https://github.com/acme/my-server/archive/refs/tags/v1.2.0.tar.gz
  git archive --format=tar.gz HEAD | orreryctl catalog deploy my-server --team platform --archive -`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, argv []string) error {
			if (deployURL == "") == (deployFile == "") {
				return usageError{errors.New("give either --url or --archive")}
			}
			if deployURL != "" && !strings.HasPrefix(deployURL, "https://") {
				return usageError{errors.New("--url must be an https URL")}
			}
			s, err := a.session(c.Context())
			if err != nil {
				return err
			}
			_, teamID, err := s.optionalTeam(c.Context(), deployTeam)
			if err != nil {
				return err
			}
			entry, err := s.catalogEntry(c.Context(), teamID, argv[0])
			if err != nil {
				return err
			}
			source := &satellitev1.Source{Url: deployURL, Sha256: strings.ToLower(deploySum), BuildCommand: deployBuild}
			switch {
			case deployFile != "":
				if entry.GetTeamId() == "" {
					return usageError{errors.New("--archive uploads belong to a team: use --url for a global template")}
				}
				content, err := a.readArchive(deployFile)
				if err != nil {
					return err
				}
				up, err := s.catalog().UploadSourceArchive(c.Context(), connect.NewRequest(&apiv1.UploadSourceArchiveRequest{
					TeamId: entry.GetTeamId(), Content: content,
				}))
				if err != nil {
					return err
				}
				source.Uploaded, source.Sha256 = true, up.Msg.GetSha256()
				fmt.Fprintf(a.Err, "uploaded, sha256 %s\n", source.Sha256)
			case source.Sha256 == "":
				if source.Sha256, err = a.archiveSum(c.Context(), deployURL); err != nil {
					return err
				}
				fmt.Fprintf(a.Err, "sha256 %s\n", source.Sha256)
			}
			spec := entry.GetSpec()
			spec.Source = source
			resp, err := s.catalog().UpdateCatalogEntry(c.Context(), connect.NewRequest(&apiv1.UpdateCatalogEntryRequest{
				TeamId: entry.GetTeamId(), Id: entry.GetId(), Spec: spec,
			}))
			if err != nil {
				return err
			}
			return a.show(resp.Msg, []string{"SLUG", "NAME", "TRANSPORT", "SCOPE", "RUNS"}, [][]string{catalogRow(resp.Msg.GetEntry())})
		},
	}
	a.teamFlag(deploy, &deployTeam, false)
	deploy.Flags().StringVar(&deployURL, "url", "", "the archive's https URL")
	deploy.Flags().StringVar(&deploySum, "sha256", "", "the archive's SHA-256 in hex; empty: download it once to compute it")
	deploy.Flags().StringVar(&deployBuild, "build", "", "a build command run with /bin/sh -c in the tree, in place of the detected build")
	deploy.Flags().StringVar(&deployFile, "archive", "", "an archive file (or - for stdin) to upload for a team template, in place of --url")
	c.AddCommand(deploy)

	var importTeam, slug string
	var userFields []string
	var preferRemote bool
	imp := &cobra.Command{
		Use:   "import FILE|-",
		Short: "Import a template from an MCP registry server.json",
		Example: `  orreryctl catalog import server.json --team platform
  curl -s https://registry.example/servers/x/server.json | orreryctl catalog import - --user-field GITHUB_TOKEN`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, argv []string) error {
			raw, err := a.readInput(argv[0])
			if err != nil {
				return err
			}
			s, err := a.session(c.Context())
			if err != nil {
				return err
			}
			_, teamID, err := s.optionalTeam(c.Context(), importTeam)
			if err != nil {
				return err
			}
			resp, err := s.catalog().ImportServerJson(c.Context(), connect.NewRequest(&apiv1.ImportServerJsonRequest{
				TeamId: teamID, ServerJson: string(raw), Slug: slug, UserFields: userFields, PreferRemote: preferRemote,
			}))
			if err != nil {
				return err
			}
			return a.show(resp.Msg, []string{"SLUG", "NAME", "TRANSPORT", "SCOPE", "RUNS"}, [][]string{catalogRow(resp.Msg.GetEntry())})
		},
	}
	a.teamFlag(imp, &importTeam, false)
	imp.Flags().StringVar(&slug, "slug", "", "the template's slug; default derived from the server's name")
	imp.Flags().StringSliceVar(&userFields, "user-field", nil, "a value each user sets rather than the team (repeatable)")
	imp.Flags().BoolVar(&preferRemote, "prefer-remote", false, "use the server's remote endpoint rather than a package when it has both")
	c.AddCommand(imp)
	return c
}

// field is a config field with the kind of value it configures.
type field struct {
	*apiv1.ConfigField
	kind string // env, headers, query_params or args
}

func schemaFields(s *apiv1.ConfigSchema) []field {
	var out []field
	for _, f := range s.GetEnv() {
		out = append(out, field{f, "env"})
	}
	for _, f := range s.GetHeaders() {
		out = append(out, field{f, "headers"})
	}
	for _, f := range s.GetQueryParams() {
		out = append(out, field{f, "query_params"})
	}
	for _, f := range s.GetArgs() {
		out = append(out, field{f, "args"})
	}
	return out
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return ""
}

// maxArchiveBytes bounds what archiveSum downloads, as satellites bound what they fetch.
const maxArchiveBytes = 100 << 20

// archiveSum downloads url and returns its SHA-256 in hex.
func (a *App) archiveSum(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", usageError{fmt.Errorf("--url: %w", err)}
	}
	resp, err := a.HTTPClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("download the archive: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("download the archive: %s", resp.Status)
	}
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(resp.Body, maxArchiveBytes+1))
	if err != nil {
		return "", fmt.Errorf("download the archive: %w", err)
	}
	if n > maxArchiveBytes {
		return "", fmt.Errorf("the archive is larger than %d MiB, more than satellites fetch", maxArchiveBytes>>20)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// readArchive reads an archive file, or stdin for "-", of at most 16 MiB: what the control plane takes.
func (a *App) readArchive(name string) ([]byte, error) {
	const limit = 16 << 20
	var r io.Reader = a.In
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, usageError{err}
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if len(b) > limit {
		return nil, usageError{fmt.Errorf("%s is larger than 16 MiB, more than the control plane keeps: publish it at an https URL", name)}
	}
	return b, nil
}
