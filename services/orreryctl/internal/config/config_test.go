package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/orrery/orrery/services/orreryctl/internal/config"
)

func TestSaveKeepsTokensPrivate(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "orrery", "config.json")
	f, err := config.Load(path)
	if err != nil || len(f.Contexts) != 0 {
		t.Fatalf("missing file: %+v %v, want an empty configuration", f, err)
	}
	f.Set("prod", &config.Context{URL: "https://cp.example", AccessToken: "orat_x", RefreshToken: "orrt_y", Expiry: time.Now().Add(time.Hour)})
	f.Current = "prod"
	if err := f.Save(path); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{path: 0o600, filepath.Dir(path): 0o700} {
		st, err := os.Stat(p)
		if err != nil || st.Mode().Perm() != want {
			t.Errorf("%s: %v %v, want mode %v", p, err, st.Mode().Perm(), want)
		}
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("left behind: %v", entries)
	}
	g, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	name, c, err := g.Get("")
	if err != nil || name != "prod" || c.RefreshToken != "orrt_y" {
		t.Fatalf("reloaded: %s %+v %v", name, c, err)
	}
	if _, _, err := g.Get("staging"); err == nil || !strings.Contains(err.Error(), "orreryctl login URL --context staging") {
		t.Fatalf("unknown context: %v", err)
	}
}

func TestLoadRefusesACorruptFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := config.Load(path); err == nil || !strings.Contains(err.Error(), "fix or remove it") {
		t.Fatalf("corrupt file: %v", err)
	}
}

func TestNormalizeURL(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"https://cp.example/":     "https://cp.example",
		"http://127.0.0.1:8080":   "http://127.0.0.1:8080",
		" https://cp.example ":    "https://cp.example",
		"cp.example":              "",
		"ftp://cp.example":        "",
		"https://u:p@cp.example":  "",
		"https://cp.example/api":  "",
		"https://cp.example/?x=1": "",
	} {
		got, err := config.NormalizeURL(in)
		if got != want || (want == "") != (err != nil) {
			t.Errorf("NormalizeURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if got := config.NameFor("http://127.0.0.1:8080"); got != "127.0.0.1-8080" {
		t.Errorf("NameFor: %q", got)
	}
}
