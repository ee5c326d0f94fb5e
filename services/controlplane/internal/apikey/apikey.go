// Package apikey creates and checks satellite API keys.
//
// A key is "orsat_" + a public key id + "_" + a secret. The id lets the server read exactly one row; the secret
// is stored only as an Argon2id hash. Argon2id is deliberately slow, so a Cache remembers keys that verified
// recently and steady-state requests do no Argon2 work.
package apikey

import (
	"context"
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

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/orrery/orrery/services/controlplane/internal/password"
)

const prefix = "orsat_"

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

// Hash returns the Argon2id hash of the key's secret. It waits for one of the process's Argon2 slots, as
// password.Hash does.
func Hash(ctx context.Context, k Key) (string, error) { return password.Hash(ctx, k.Secret) }

// Verify reports whether k's secret matches a hash made by Hash. It waits for one of the process's Argon2
// slots and fails, neither matching nor not, as password.Verify does.
func Verify(ctx context.Context, k Key, encoded string) (bool, error) {
	return password.Verify(ctx, k.Secret, encoded)
}

// Cache remembers secrets that verified against a stored hash, so the next request with the same secret
// and the same stored hash skips Argon2. Callers still read the key's row, or check its hash in the statement
// they run, on every request, which is what makes a revocation take effect at once on every replica.
//
// An entry is keyed by the stored hash, not by the key's id: that a secret matches a hash is true whatever
// row holds the hash, and keys that share one (satellites a load test creates in bulk) cost one Argon2 run
// between them. A key in use stays remembered: its entry's lifetime starts again once half of it has passed,
// so a fleet of busy satellites does not come back to Argon2 together every ttl.
type Cache struct {
	lru    *lru.Cache[string, cacheEntry]
	ttl    time.Duration
	now    func() time.Time
	argon2 atomic.Int64
}

type cacheEntry struct {
	secretDigest [sha256.Size]byte
	added        time.Time
}

// NewCache returns a cache of at most size keys, each remembered for ttl after its last use.
func NewCache(size int, ttl time.Duration) *Cache {
	entries, _ := lru.New[string, cacheEntry](max(size, 1)) // fails only for a size below 1
	return &Cache{lru: entries, ttl: ttl, now: time.Now}
}

// Verify reports whether k matches storedHash, running Argon2 only when the cache cannot answer. Its error
// is Verify's: no Argon2 slot freed up in time.
func (c *Cache) Verify(ctx context.Context, k Key, storedHash string) (bool, error) {
	if c.Known(k, storedHash) {
		return true, nil
	}
	c.argon2.Add(1)
	ok, err := Verify(ctx, k, storedHash)
	if !ok || err != nil {
		return false, err
	}
	c.Remember(k, storedHash)
	return true, nil
}

// Remember records that k matches storedHash, for a key whose hash was just made from it.
func (c *Cache) Remember(k Key, storedHash string) {
	c.lru.Add(storedHash, cacheEntry{secretDigest: sha256.Sum256([]byte(k.Secret)), added: c.now()})
}

// Known reports whether the cache remembers k's secret matching storedHash, without running Argon2.
func (c *Cache) Known(k Key, storedHash string) bool {
	e, ok := c.lru.Get(storedHash)
	if !ok {
		return false
	}
	now := c.now()
	if now.Sub(e.added) > c.ttl {
		c.lru.Remove(storedHash)
		return false
	}
	digest := sha256.Sum256([]byte(k.Secret))
	if subtle.ConstantTimeCompare(e.secretDigest[:], digest[:]) != 1 {
		return false
	}
	if now.Sub(e.added) > c.ttl/2 {
		e.added = now
		c.lru.Add(storedHash, e)
	}
	return true
}

// Argon2Runs counts the verifications the cache could not answer, each costing one Argon2 hash.
func (c *Cache) Argon2Runs() int64 { return c.argon2.Load() }
