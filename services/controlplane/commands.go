package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/google/uuid"

	"github.com/orrery/orrery/services/controlplane/internal/serverjson"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

const commandUsage = `  rotate-secrets
        re-encrypt every stored secret under the first key of ORRERY_SECRET_KEYS, beside running replicas
        (every replica must already hold that key; the old one may be dropped afterwards)
  import-server-json [-team-id ID] [-slug SLUG] [-user-field NAME]... [-prefer-remote] FILE|-
        create a catalog template from an MCP registry server.json document, read from FILE or stdin
`

// runCommand runs a maintenance command against the database instead of serving.
func runCommand(ctx context.Context, st *store.Store, args []string, stdin io.Reader, stdout io.Writer) error {
	switch args[0] {
	case "rotate-secrets":
		if len(args) > 1 {
			return errors.New("rotate-secrets takes no arguments")
		}
		r, err := st.RotateSecrets(ctx)
		if err != nil {
			return err
		}
		if err := st.Audit(ctx, store.AuditEvent{Actor: "system", Action: "secrets.rotated", Target: r.KeyID, Details: map[string]string{
			"rows": fmt.Sprint(r.Rows), "values": fmt.Sprint(r.Values),
		}}); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "re-encrypted %d values in %d rows under key %s\n", r.Values, r.Rows, r.KeyID)
		return nil
	case "import-server-json":
		return importServerJSON(ctx, st, args[1:], stdin, stdout)
	}
	return fmt.Errorf("unknown command %q; commands:\n%s", args[0], commandUsage)
}

// stringList is a flag that may be repeated.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

func importServerJSON(ctx context.Context, st *store.Store, args []string, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("import-server-json", flag.ContinueOnError)
	teamID := fs.String("team-id", "", "make the template private to this team; empty makes it global")
	var opts serverjson.Options
	fs.StringVar(&opts.Slug, "slug", "", "slug of the template; default: made from the server's name")
	fs.Var((*stringList)(&opts.UserFields), "user-field", "an input each user sets rather than the team (repeatable)")
	fs.BoolVar(&opts.PreferRemote, "prefer-remote", false, "use the document's remote rather than its package")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("import-server-json: name one file, or - for stdin")
	}
	var data []byte
	var err error
	if fs.Arg(0) == "-" {
		data, err = io.ReadAll(io.LimitReader(stdin, 1<<20+1))
	} else {
		data, err = os.ReadFile(fs.Arg(0))
	}
	if err != nil {
		return fmt.Errorf("read server.json: %w", err)
	}
	e, err := serverjson.Parse(data, opts)
	if err != nil {
		return err
	}
	if *teamID != "" {
		id, err := uuid.Parse(*teamID)
		if err != nil {
			return fmt.Errorf("-team-id: %w", err)
		}
		e.TeamID = &id
	}
	out, err := st.CreateCatalogEntry(ctx, e, store.SystemAuthor)
	if err != nil {
		return fmt.Errorf("create template: %w", err)
	}
	if err := st.Audit(ctx, store.AuditEvent{Actor: "system", TeamID: e.TeamID, Action: "catalog.created", Target: out.ID.String(),
		Details: map[string]string{"slug": out.Slug, "source": "server.json"}}); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "created template %s (%s, %s)\n", out.Slug, out.ID, out.Transport)
	return nil
}
