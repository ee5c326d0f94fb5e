// Package release says what a signed satellite release is: the statement a release key signs (version,
// platform and the binary's SHA-256), how satellites verify it against the keys they trust, and how
// versions are ordered. The control plane stores and relays releases but holds no key, so it cannot make
// satellites run a binary the release key did not sign.
package release

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strings"

	"golang.org/x/mod/semver"
)

// Release describes a release as the control plane relays it.
type Release struct {
	// Version is the version the binary reports.
	Version string
	// Platform is the GOOS/GOARCH the binary runs on.
	Platform string
	// SHA256 is the binary's SHA-256 in lowercase hex.
	SHA256 string
	// Signature is the Ed25519 signature of Statement.
	Signature []byte
	// Size is the binary's length in bytes.
	Size int64
}

// Statement is what a release key signs for a release: its version and platform are signed with the
// binary's checksum so that neither can be swapped for another release's (a downgrade passed off as an
// upgrade, or a binary of another architecture).
func Statement(version, platform, sha256Hex string) []byte {
	return fmt.Appendf(nil, "orrery-satellite-release/v1\nversion=%s\nplatform=%s\nsha256=%s\n", version, platform, sha256Hex)
}

// Sign signs a release's statement with key, for publishing tools.
func Sign(key ed25519.PrivateKey, version, platform, sha256Hex string) []byte {
	return ed25519.Sign(key, Statement(version, platform, sha256Hex))
}

// Platform is this binary's GOOS/GOARCH, as releases name it.
func Platform() string { return runtime.GOOS + "/" + runtime.GOARCH }

// Keys are the public release keys a satellite trusts. Several keys allow rotation: publish with the new
// key once every satellite trusts it, then drop the old one.
type Keys []ed25519.PublicKey

// ParseKeys parses a comma-separated list of base64 (standard or URL alphabet, padded or not) Ed25519
// public keys.
func ParseKeys(s string) (Keys, error) {
	var keys Keys
	for field := range strings.SplitSeq(s, ",") {
		field = strings.TrimSpace(field)
		if field == "" {
			continue
		}
		raw, err := decodeBase64(field)
		if err != nil {
			return nil, fmt.Errorf("release key %q is not base64: %w", field, err)
		}
		if len(raw) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("release key %q is %d bytes long, want an Ed25519 public key of %d", field, len(raw), ed25519.PublicKeySize)
		}
		keys = append(keys, ed25519.PublicKey(raw))
	}
	return keys, nil
}

func decodeBase64(s string) ([]byte, error) {
	s = strings.TrimRight(s, "=")
	if strings.ContainsAny(s, "-_") {
		return base64.RawURLEncoding.DecodeString(s)
	}
	return base64.RawStdEncoding.DecodeString(s)
}

// Errors of Check and Verify; the command's failure message carries them.
var (
	ErrNoKeys       = errors.New("no release keys are configured (ORRERY_RELEASE_PUBLIC_KEYS), so no release can be trusted")
	ErrBadSignature = errors.New("release signature does not verify with any configured release key")
	ErrChecksum     = errors.New("downloaded binary does not match the release's SHA-256")
	ErrDowngrade    = errors.New("release is older than the running version; send allow_downgrade to install it anyway")
	ErrPlatform     = errors.New("release is for another platform")
)

// Verify reports whether sig is a signature of the release's statement by one of the keys.
func (k Keys) Verify(r Release) error {
	if len(k) == 0 {
		return ErrNoKeys
	}
	msg := Statement(r.Version, r.Platform, r.SHA256)
	for _, key := range k {
		if ed25519.Verify(key, msg, r.Signature) {
			return nil
		}
	}
	return ErrBadSignature
}

// CheckVersion refuses to go from current to target when target is older, unless allowDowngrade. Versions
// are compared as semantic versions, with or without a leading "v". A running version that is not one
// (a development build) may be replaced by anything; a target that is not one cannot be ordered and
// needs allowDowngrade.
func CheckVersion(current, target string, allowDowngrade bool) error {
	if allowDowngrade {
		return nil
	}
	cur, tgt := canonical(current), canonical(target)
	switch {
	case !semver.IsValid(cur):
		return nil
	case !semver.IsValid(tgt):
		return fmt.Errorf("release version %q cannot be ordered against %q: %w", target, current, ErrDowngrade)
	case semver.Compare(tgt, cur) < 0:
		return fmt.Errorf("%s is older than %s: %w", target, current, ErrDowngrade)
	}
	return nil
}

func canonical(v string) string {
	if !strings.HasPrefix(v, "v") {
		v = "v" + v
	}
	return v
}

// Newest returns the newest of versions by semantic-version order, preferring any valid version over an
// invalid one; "" when versions is empty.
func Newest(versions []string) string {
	best := ""
	for _, v := range versions {
		switch {
		case best == "":
			best = v
		case !semver.IsValid(canonical(best)) && semver.IsValid(canonical(v)):
			best = v
		case semver.IsValid(canonical(v)) && semver.Compare(canonical(v), canonical(best)) > 0:
			best = v
		}
	}
	return best
}
