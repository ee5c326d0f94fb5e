// Package bearer makes the random bearer tokens of the control plane: MCP access tokens, personal API tokens
// and browser sessions.
//
// A token is a prefix that says its kind + 32 random bytes in base64url. It is stored only as its SHA-256:
// with 256 bits of randomness a fast hash cannot be brute-forced, so checking a token needs no slow hash on
// the hot path.
package bearer

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
)

// Token kinds, as prefixes that make a leaked token recognisable.
const (
	AccessToken = "orat_"  // an MCP client's access token for a team endpoint
	APIToken    = "orpat_" // a user's personal API token
	Session     = "orses_" // a browser session
)

// New returns a fresh token of the given kind.
func New(kind string) (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("read random: %w", err)
	}
	return kind + base64.RawURLEncoding.EncodeToString(b), nil
}

// Hash is what the store keeps of a token.
func Hash(token string) []byte {
	sum := sha256.Sum256([]byte(token))
	return sum[:]
}
