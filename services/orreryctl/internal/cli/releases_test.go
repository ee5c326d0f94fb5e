package cli

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/orrery/orrery/internal/release"
)

// TestReleaseKeygenAndSign makes a release key and signs a binary with it: the signature verifies with the
// printed public key for the statement satellites check, and with no other version.
func TestReleaseKeygenAndSign(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keyFile, binary := filepath.Join(dir, "release.key"), filepath.Join(dir, "satellite")
	if err := os.WriteFile(binary, []byte("a satellite binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	a, out, errOut := testApp("")
	if code := a.Main(t.Context(), []string{"satellites", "releases", "keygen", "--key", keyFile}); code != 0 {
		t.Fatalf("keygen: %d %s", code, errOut)
	}
	keys, err := release.ParseKeys(strings.TrimSpace(out.String()))
	if err != nil || len(keys) != 1 {
		t.Fatalf("keygen printed %q: %v", out, err)
	}
	if info, err := os.Stat(keyFile); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("private key file: %v %v, want mode 0600", info.Mode(), err)
	}

	a, out, errOut = testApp("")
	if code := a.Main(t.Context(), []string{"satellites", "releases", "sign", binary, "--version", "1.5.0",
		"--platform", "linux/amd64", "--key", keyFile}); code != 0 {
		t.Fatalf("sign: %d %s", code, errOut)
	}
	sig, err := base64.StdEncoding.DecodeString(strings.TrimSpace(out.String()))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("a satellite binary"))
	r := release.Release{Version: "1.5.0", Platform: "linux/amd64", SHA256: hex.EncodeToString(sum[:]), Signature: sig}
	if err := keys.Verify(r); err != nil {
		t.Errorf("signature does not verify: %v", err)
	}
	r.Version = "1.6.0"
	if err := keys.Verify(r); err == nil {
		t.Error("signature verifies for another version")
	}
	// keygen never overwrites a key.
	a, _, _ = testApp("")
	if code := a.Main(t.Context(), []string{"satellites", "releases", "keygen", "--key", keyFile}); code == 0 {
		t.Error("keygen overwrote an existing key file")
	}
}
