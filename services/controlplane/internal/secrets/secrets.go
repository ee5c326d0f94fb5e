// Package secrets encrypts installation secrets at rest with AES-256-GCM.
//
// Sealed values carry the id of the key that sealed them ("k1:base64(nonce|ciphertext)"), so keys can rotate:
// a Keyring seals with its current key and opens with any key it holds.
package secrets

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// ErrUnknownKey reports a sealed value whose key the keyring does not hold.
var ErrUnknownKey = errors.New("sealed with a key this control plane does not have")

var keyIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)

// Keyring holds encryption keys by id and seals with the current one.
type Keyring struct {
	current string
	aeads   map[string]cipher.AEAD
	// raw holds each key's bytes, in the order of the spec (current first), for DeriveSigningKeys.
	raw [][]byte
}

// ParseKeyring reads "id:base64key[,id:base64key...]"; the first key is the current one and every key is 32
// bytes of standard base64.
func ParseKeyring(spec string) (*Keyring, error) {
	k := &Keyring{aeads: map[string]cipher.AEAD{}}
	for i, item := range strings.Split(spec, ",") {
		id, encoded, ok := strings.Cut(strings.TrimSpace(item), ":")
		if !ok || !keyIDPattern.MatchString(id) {
			return nil, fmt.Errorf("secret key %d: want id:base64key with an id of letters, digits, _ or -", i+1)
		}
		raw, err := base64.StdEncoding.DecodeString(encoded)
		if err != nil || len(raw) != 32 {
			return nil, fmt.Errorf("secret key %q: want 32 bytes in standard base64", id)
		}
		if err := k.add(id, raw); err != nil {
			return nil, err
		}
		if i == 0 {
			k.current = id
		}
	}
	return k, nil
}

// NewKeySpec returns a keyring spec with one fresh random key named id.
func NewKeySpec(id string) (string, error) {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("read random: %w", err)
	}
	return id + ":" + base64.StdEncoding.EncodeToString(raw), nil
}

func (k *Keyring) add(id string, raw []byte) error {
	if _, dup := k.aeads[id]; dup {
		return fmt.Errorf("secret key %q appears twice", id)
	}
	block, err := aes.NewCipher(raw)
	if err != nil {
		return fmt.Errorf("secret key %q: %w", id, err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return fmt.Errorf("secret key %q: %w", id, err)
	}
	k.aeads[id] = aead
	k.raw = append(k.raw, raw)
	return nil
}

// DeriveSigningKeys derives one Ed25519 key for purpose from each key of the keyring with HKDF-SHA256, the
// current key's first. Every control-plane replica holds the same keyring, so all sign with the same key
// without storing one; the keys derived from older keys verify what was signed before a rotation.
func (k *Keyring) DeriveSigningKeys(purpose string) ([]ed25519.PrivateKey, error) {
	out := make([]ed25519.PrivateKey, 0, len(k.raw))
	for _, raw := range k.raw {
		seed, err := hkdf.Key(sha256.New, raw, nil, "orrery signing key: "+purpose, ed25519.SeedSize)
		if err != nil {
			return nil, fmt.Errorf("derive %s key: %w", purpose, err)
		}
		out = append(out, ed25519.NewKeyFromSeed(seed))
	}
	return out, nil
}

// Seal encrypts plaintext under the current key.
func (k *Keyring) Seal(plaintext string) (string, error) {
	aead := k.aeads[k.current]
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("read random: %w", err)
	}
	sealed := aead.Seal(nonce, nonce, []byte(plaintext), []byte(k.current))
	return k.current + ":" + base64.StdEncoding.EncodeToString(sealed), nil
}

// Open decrypts a value made by Seal with any key of the keyring.
func (k *Keyring) Open(sealed string) (string, error) {
	id, encoded, ok := strings.Cut(sealed, ":")
	if !ok {
		return "", errors.New("sealed value is malformed")
	}
	aead, ok := k.aeads[id]
	if !ok {
		return "", fmt.Errorf("key %q: %w", id, ErrUnknownKey)
	}
	raw, err := base64.StdEncoding.DecodeString(encoded)
	if err != nil || len(raw) < aead.NonceSize() {
		return "", errors.New("sealed value is malformed")
	}
	plain, err := aead.Open(nil, raw[:aead.NonceSize()], raw[aead.NonceSize():], []byte(id))
	if err != nil {
		return "", fmt.Errorf("open sealed value with key %q: %w", id, err)
	}
	return string(plain), nil
}

// Current returns the id of the key that Seal uses.
func (k *Keyring) Current() string { return k.current }

// Stale reports whether a sealed value was sealed with a key other than the current one, so a rotation must
// seal it again.
func (k *Keyring) Stale(sealed string) bool {
	id, _, _ := strings.Cut(sealed, ":")
	return id != k.current
}
