package secrets_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/orrery/orrery/services/controlplane/internal/secrets"
)

func TestSealOpenAndRotate(t *testing.T) {
	t.Parallel()
	oldSpec, _ := secrets.NewKeySpec("old")
	newSpec, _ := secrets.NewKeySpec("new")
	old, err := secrets.ParseKeyring(oldSpec)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := old.Seal("hunter2")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(sealed, "hunter2") || !strings.HasPrefix(sealed, "old:") {
		t.Fatalf("sealed value %q", sealed)
	}
	rotated, err := secrets.ParseKeyring(newSpec + "," + oldSpec)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := rotated.Open(sealed); err != nil || got != "hunter2" {
		t.Fatalf("open after rotation: %q, %v", got, err)
	}
	resealed, _ := rotated.Seal("hunter2")
	if !strings.HasPrefix(resealed, "new:") {
		t.Fatalf("rotated keyring sealed with %q, want the new key", resealed)
	}
	if _, err := old.Open(resealed); !errors.Is(err, secrets.ErrUnknownKey) {
		t.Fatalf("old keyring opening new value: %v, want ErrUnknownKey", err)
	}
	tampered := sealed[:len(sealed)-2] + "AA"
	if _, err := old.Open(tampered); err == nil {
		t.Fatal("tampered value opened")
	}
}

func TestParseKeyringRejectsBadSpecs(t *testing.T) {
	t.Parallel()
	for _, spec := range []string{"", "k1", "k1:short", "bad id:" + strings.Repeat("A", 44), "k1:AAAA,k1:AAAA"} {
		if _, err := secrets.ParseKeyring(spec); err == nil {
			t.Errorf("ParseKeyring(%q) accepted", spec)
		}
	}
}
