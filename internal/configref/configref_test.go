package configref

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func reference() Reference {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.String("listen", "127.0.0.1:80", "address to serve on (ORRERY_LISTEN)")
	fs.String("name", "", "the name | with a pipe (ORRERY_NAME; default: from the host name)")
	fs.Bool("dev", false, "development mode (ORRERY_DEV=true)")
	fs.Duration("grace", time.Second, "no variable for this one")
	return Reference{Program: "demo", Summary: "Demo.", Flags: fs, Env: []Env{{Name: "ORRERY_KEY", Usage: "a secret"}}}
}

func TestMarkdown(t *testing.T) {
	t.Parallel()
	got := reference().Markdown()
	for _, want := range []string{
		"| `-listen` | `ORRERY_LISTEN` | `127.0.0.1:80` | address to serve on |\n",
		"| `-name` | `ORRERY_NAME` | from the host name | the name \\| with a pipe |\n",
		"| `-dev` | `ORRERY_DEV=true` |  | development mode |\n",
		"| `-grace` |  | `1s` | no variable for this one |\n",
		"| `ORRERY_KEY` | a secret |\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("Markdown lacks %q:\n%s", want, got)
		}
	}
}

func TestCheck(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	page := filepath.Join(dir, "page.md")
	source := filepath.Join(dir, "config.go")
	write := func(path, content string) {
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(page, "# Intro\n<!-- begin demo -->\nold\n<!-- end demo -->\n# After\n")
	write(source, `getenv("ORRERY_LISTEN"); getenv("ORRERY_KEY")`)
	r := reference()
	if err := Check(r, page, false, source); err == nil || !strings.Contains(err.Error(), "stale") {
		t.Fatalf("Check of a stale page = %v, want stale", err)
	}
	if err := Check(r, page, true, source); err != nil {
		t.Fatal(err)
	}
	if err := Check(r, page, false, source); err != nil {
		t.Fatalf("Check after update: %v", err)
	}
	updated, _ := os.ReadFile(page)
	if !strings.HasPrefix(string(updated), "# Intro\n<!-- begin demo -->\n## demo\n") || !strings.HasSuffix(string(updated), "<!-- end demo -->\n# After\n") {
		t.Errorf("update touched more than the section:\n%s", updated)
	}

	write(source, `getenv("ORRERY_LISTEN"); getenv("ORRERY_FORGOTTEN")`)
	if err := Check(r, page, false, source); err == nil || !strings.Contains(err.Error(), "ORRERY_FORGOTTEN") {
		t.Errorf("Check with an undocumented variable = %v, want it named", err)
	}
	write(page, "no markers\n")
	write(source, "")
	if err := Check(r, page, true, source); err == nil || !strings.Contains(err.Error(), "<!-- begin demo -->") {
		t.Errorf("Check of a page without the section = %v, want the markers named", err)
	}
}
