package identity_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/orrery/orrery/services/satellite/internal/identity"
)

var sample = identity.Identity{
	SatelliteID: "5b0c7e0e-8d8e-4f5a-9c1e-2a3b4c5d6e7f",
	APIKey:      "orsat_abc_secret",
	Type:        "team",
	TeamID:      "6f1c8a52-3c1e-4a8e-9d0f-6a1f2b3c4d5e",
}

func TestSaveAndLoad(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "nested", "state")
	store := identity.NewStore(dir)
	if _, err := store.Load(); !errors.Is(err, identity.ErrNotFound) {
		t.Fatalf("Load before Save = %v, want ErrNotFound", err)
	}
	if err := store.Save(sample); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]os.FileMode{dir: 0o700, store.Path(): 0o600} {
		info, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := info.Mode().Perm(); got != want {
			t.Errorf("%s has mode %#o, want %#o", path, got, want)
		}
	}
	got, err := store.Load()
	if err != nil {
		t.Fatal(err)
	}
	if got != sample {
		t.Errorf("Load = %+v, want %+v", got, sample)
	}

	// Saving again replaces the file whole and leaves no temporary files behind.
	next := sample
	next.APIKey = "orsat_def_secret"
	if err := store.Save(next); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != identity.FileName {
		t.Errorf("state directory holds %v, want only %s", entries, identity.FileName)
	}
	if got, _ := store.Load(); got.APIKey != next.APIKey {
		t.Errorf("Load after a second Save = %+v", got)
	}
}

func TestLoadRefusesOpenPermissions(t *testing.T) {
	t.Parallel()
	for _, mode := range []os.FileMode{0o640, 0o604, 0o620} {
		t.Run(fmt.Sprintf("%#o", mode), func(t *testing.T) {
			t.Parallel()
			store := identity.NewStore(t.TempDir())
			if err := store.Save(sample); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(store.Path(), mode); err != nil {
				t.Fatal(err)
			}
			_, err := store.Load()
			if err == nil || !strings.Contains(err.Error(), "group or others") || !strings.Contains(err.Error(), "chmod 600") {
				t.Fatalf("Load of a %#o file = %v, want a refusal explaining the permissions", mode, err)
			}
		})
	}
}

func TestLoadRejectsBrokenFiles(t *testing.T) {
	t.Parallel()
	for name, content := range map[string]string{
		"not json":   "{",
		"no api key": `{"satellite_id": "x", "type": "global"}`,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			store := identity.NewStore(t.TempDir())
			if err := os.WriteFile(store.Path(), []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := store.Load(); err == nil || errors.Is(err, identity.ErrNotFound) {
				t.Fatalf("Load = %v, want an error naming the problem", err)
			}
		})
	}
}

func TestIdentityKeepsKeyOutOfOutput(t *testing.T) {
	t.Parallel()
	if s := fmt.Sprint(sample) + sample.LogValue().String(); strings.Contains(s, sample.APIKey) {
		t.Errorf("formatted identity reveals the API key: %s", s)
	}
}
