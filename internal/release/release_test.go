package release

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

func TestVerify(t *testing.T) {
	t.Parallel()
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	oldPub, _, _ := ed25519.GenerateKey(rand.Reader)
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	sum := strings.Repeat("ab", 32)
	good := Release{Version: "1.2.0", Platform: "linux/amd64", SHA256: sum, Signature: Sign(priv, "1.2.0", "linux/amd64", sum)}
	keys := Keys{oldPub, pub}
	if err := keys.Verify(good); err != nil {
		t.Errorf("a release signed by the second of two keys: %v", err)
	}
	for name, r := range map[string]Release{
		"another key":         {Version: "1.2.0", Platform: "linux/amd64", SHA256: sum, Signature: Sign(other, "1.2.0", "linux/amd64", sum)},
		"version swapped":     {Version: "9.0.0", Platform: "linux/amd64", SHA256: sum, Signature: good.Signature},
		"platform swapped":    {Version: "1.2.0", Platform: "linux/arm64", SHA256: sum, Signature: good.Signature},
		"checksum swapped":    {Version: "1.2.0", Platform: "linux/amd64", SHA256: strings.Repeat("cd", 32), Signature: good.Signature},
		"no signature":        {Version: "1.2.0", Platform: "linux/amd64", SHA256: sum},
		"truncated signature": {Version: "1.2.0", Platform: "linux/amd64", SHA256: sum, Signature: good.Signature[:63]},
	} {
		if err := keys.Verify(r); !errors.Is(err, ErrBadSignature) {
			t.Errorf("%s: %v, want ErrBadSignature", name, err)
		}
	}
	if err := (Keys{}).Verify(good); !errors.Is(err, ErrNoKeys) {
		t.Errorf("no keys: %v, want ErrNoKeys", err)
	}
}

func TestParseKeys(t *testing.T) {
	t.Parallel()
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	pub2, _, _ := ed25519.GenerateKey(rand.Reader)
	keys, err := ParseKeys(base64.StdEncoding.EncodeToString(pub) + ", " + base64.RawURLEncoding.EncodeToString(pub2))
	if err != nil || len(keys) != 2 || !keys[0].Equal(pub) || !keys[1].Equal(pub2) {
		t.Fatalf("ParseKeys: %v %v", keys, err)
	}
	for _, bad := range []string{"not base64!", base64.StdEncoding.EncodeToString(pub[:31])} {
		if _, err := ParseKeys(bad); err == nil {
			t.Errorf("ParseKeys(%q) accepted", bad)
		}
	}
}

func TestCheckVersion(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		current, target string
		downgrade, ok   bool
	}{
		{"1.0.0", "1.1.0", false, true},
		{"v1.0.0", "1.0.1", false, true},
		{"1.1.0", "1.0.0", false, false},
		{"1.1.0", "1.0.0", true, true},
		{"1.10.0", "1.9.0", false, false},
		{"dev", "1.0.0", false, true},
		{"1.0.0", "nightly", false, false},
		{"1.0.0", "nightly", true, true},
	} {
		err := CheckVersion(tc.current, tc.target, tc.downgrade)
		if (err == nil) != tc.ok {
			t.Errorf("CheckVersion(%q, %q, %v) = %v", tc.current, tc.target, tc.downgrade, err)
		}
		if err != nil && !errors.Is(err, ErrDowngrade) {
			t.Errorf("CheckVersion error %v is not ErrDowngrade", err)
		}
	}
	if got := Newest([]string{"1.2.0", "nightly", "1.10.0", "1.9.3"}); got != "1.10.0" {
		t.Errorf("Newest = %q, want 1.10.0", got)
	}
}
