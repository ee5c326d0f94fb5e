// Package accesstoken makes the bearer tokens MCP clients present to satellites.
//
// A token is "orat_" + 32 random bytes in base64url. It is stored only as its SHA-256: with 256 bits of
// randomness a fast hash cannot be brute-forced, so checking a token needs no slow hash on the hot path.
package accesstoken

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
)

const prefix = "orat_"

// New returns a fresh token.
func New() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("read random: %w", err)
	}
	return prefix + base64.RawURLEncoding.EncodeToString(b), nil
}

// Hash is what the store keeps of a token.
func Hash(token string) []byte {
	sum := sha256.Sum256([]byte(token))
	return sum[:]
}
