package main

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orrery/orrery/internal/pgtest"
	"github.com/orrery/orrery/services/controlplane/internal/secrets"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

func keyring(t *testing.T, spec string) *secrets.Keyring {
	t.Helper()
	k, err := secrets.ParseKeyring(spec)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestImportAndRotateCommands(t *testing.T) {
	t.Parallel()
	pool, err := pgxpool.New(t.Context(), pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	oldKey, _ := secrets.NewKeySpec("old")
	newKey, _ := secrets.NewKeySpec("new")

	doc, err := os.ReadFile("internal/serverjson/testdata/weather.server.json")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	st := store.New(pool, keyring(t, oldKey))
	if err := runCommand(t.Context(), st, []string{"import-server-json", "-slug", "weather", "-"}, bytes.NewReader(doc), &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "created template weather") {
		t.Fatalf("import printed %q", out.String())
	}
	e, err := st.ListCatalogEntries(t.Context(), store.CatalogFilter{Search: "weather", Limit: 10})
	if err != nil || len(e) != 1 || e[0].Command != "npx" {
		t.Fatalf("imported %v, %v", e, err)
	}
	// A template secret to rotate.
	e[0].Env["SHARED"] = store.Setting{Value: "s3cret", Secret: true}
	if _, err := st.UpdateCatalogEntry(t.Context(), e[0], store.SystemAuthor); err != nil {
		t.Fatal(err)
	}

	out.Reset()
	rotated := store.New(pool, keyring(t, newKey+","+oldKey))
	if err := runCommand(t.Context(), rotated, []string{"rotate-secrets"}, nil, &out); err != nil {
		t.Fatal(err)
	}
	if out.String() != "re-encrypted 1 values in 1 rows under key new\n" {
		t.Fatalf("rotation printed %q", out.String())
	}
	var sealed string
	if err := pool.QueryRow(t.Context(), "select env->'SHARED'->>'sealed' from catalog_entries").Scan(&sealed); err != nil {
		t.Fatal(err)
	}
	if plain, err := keyring(t, newKey).Open(sealed); err != nil || plain != "s3cret" {
		t.Fatalf("after rotation the new key alone opens %q, %v", plain, err)
	}
	if err := runCommand(t.Context(), rotated, []string{"launch-rockets"}, nil, &out); err == nil {
		t.Fatal("an unknown command ran")
	}
}
