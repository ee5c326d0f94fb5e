// Package apikey creates and checks satellite API keys.
//
// A key is "orsat_" + a public key id + "_" + a secret. The id lets the server read exactly one row; the secret
// is stored only as an Argon2id hash. Argon2id is deliberately slow, so a Cache remembers keys that verified
// recently and steady-state requests do no Argon2 work.
package apikey

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
	"golang.org/x/crypto/argon2"
)

const prefix = "orsat_"

// Argon2id parameters: the OWASP recommendation of 19 MiB, 2 passes, 1 lane.
const (
	argonMemoryKiB = 19 * 1024
	argonTime      = 2
	argonThreads   = 1
	argonKeyLen    = 32
	saltLen        = 16
)

// ErrMalformed reports a string that is not an API key.
var ErrMalformed = errors.New("API key is malformed")

// Key is a parsed API key.
type Key struct {
	ID     string
	Secret string
}

// String returns the key as the satellite presents it.
func (k Key) String() string { return prefix + k.ID + "_" + k.Secret }

// New returns a fresh random key.
func New() (Key, error) {
	id := make([]byte, 12)
	secret := make([]byte, 32)
	if _, err := rand.Read(id); err != nil {
		return Key{}, fmt.Errorf("read random: %w", err)
	}
	if _, err := rand.Read(secret); err != nil {
		return Key{}, fmt.Errorf("read random: %w", err)
	}
	return Key{ID: hex.EncodeToString(id), Secret: base64.RawURLEncoding.EncodeToString(secret)}, nil
}

// Parse splits a presented key into its id and secret.
func Parse(s string) (Key, error) {
	rest, ok := strings.CutPrefix(s, prefix)
	if !ok {
		return Key{}, ErrMalformed
	}
	id, secret, ok := strings.Cut(rest, "_")
	if !ok || len(id) != 24 || len(secret) < 32 {
		return Key{}, ErrMalformed
	}
	return Key{ID: id, Secret: secret}, nil
}

// Hash returns the Argon2id hash of the key's secret in the PHC string format.
func Hash(k Key) (string, error) {
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("read random: %w", err)
	}
	sum := argon2.IDKey([]byte(k.Secret), salt, argonTime, argonMemoryKiB, argonThreads, argonKeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemoryKiB, argonTime, argonThreads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(sum)), nil
}

// Verify reports whether k's secret matches an Argon2id hash made by Hash.
func Verify(k Key, encoded string) bool {
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false
	}
	var version int
	var memory, passes uint32
	var threads uint8
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return false
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &memory, &passes, &threads); err != nil {
		return false
	}
	salt, err := base64.RawStdEncoding.DecodeString(parts[4])
	if err != nil {
		return false
	}
	want, err := base64.RawStdEncoding.DecodeString(parts[5])
	if err != nil {
		return false
	}
	got := argon2.IDKey([]byte(k.Secret), salt, passes, memory, threads, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1
}

// Cache remembers keys that verified against a stored hash, so the next request with the same key and the
// same stored hash skips Argon2. Callers still read the key's row on every request, which is what makes a
// revocation take effect at once on every replica.
type Cache struct {
	lru    *expirable.LRU[string, cacheEntry]
	argon2 atomic.Int64
}

type cacheEntry struct {
	secretDigest [sha256.Size]byte
	storedHash   string
}

// NewCache returns a cache of at most size keys, each remembered for ttl.
func NewCache(size int, ttl time.Duration) *Cache {
	return &Cache{lru: expirable.NewLRU[string, cacheEntry](size, nil, ttl)}
}

// Verify reports whether k matches storedHash, running Argon2 only when the cache cannot answer.
func (c *Cache) Verify(k Key, storedHash string) bool {
	digest := sha256.Sum256([]byte(k.Secret))
	if e, ok := c.lru.Get(k.ID); ok && e.storedHash == storedHash &&
		subtle.ConstantTimeCompare(e.secretDigest[:], digest[:]) == 1 {
		return true
	}
	c.argon2.Add(1)
	if !Verify(k, storedHash) {
		return false
	}
	c.lru.Add(k.ID, cacheEntry{secretDigest: digest, storedHash: storedHash})
	return true
}

// Lookup returns the stored hash that k verified against, when the cache remembers it.
func (c *Cache) Lookup(k Key) (storedHash string, ok bool) {
	digest := sha256.Sum256([]byte(k.Secret))
	e, ok := c.lru.Get(k.ID)
	if !ok || subtle.ConstantTimeCompare(e.secretDigest[:], digest[:]) != 1 {
		return "", false
	}
	return e.storedHash, true
}

// Argon2Runs counts the verifications the cache could not answer, each costing one Argon2 hash.
func (c *Cache) Argon2Runs() int64 { return c.argon2.Load() }
