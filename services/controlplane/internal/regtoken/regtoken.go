// Package regtoken signs and verifies satellite registration tokens.
//
// A token is "orreg_" + base64url(JSON claims) + "." + base64url(HMAC-SHA256(key, everything before the dot)).
// The signature lets the control plane reject forged or altered tokens before touching the database; the
// database row named by the claims' id makes a token single-use and revocable.
package regtoken

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
)

const prefix = "orreg_"

// MinKeyLen is the shortest signing key accepted, in bytes.
const MinKeyLen = 32

// Errors returned by Verify.
var (
	ErrMalformed = errors.New("registration token is malformed")
	ErrSignature = errors.New("registration token signature is invalid")
	ErrExpired   = errors.New("registration token has expired")
)

// Scope says which kind of satellite a token registers.
type Scope string

// Scopes.
const (
	ScopeGlobal Scope = "global"
	ScopeTeam   Scope = "team"
)

// Claims is what a token asserts.
type Claims struct {
	ID        uuid.UUID  `json:"id"`
	Scope     Scope      `json:"scope"`
	TeamID    *uuid.UUID `json:"team,omitempty"`
	ExpiresAt time.Time  `json:"exp"`
}

// Signer signs and verifies tokens with one HMAC key.
type Signer struct {
	key []byte
}

// NewSigner returns a Signer for key, which must be at least MinKeyLen bytes.
func NewSigner(key []byte) (*Signer, error) {
	if len(key) < MinKeyLen {
		return nil, fmt.Errorf("registration token signing key has %d bytes, want at least %d", len(key), MinKeyLen)
	}
	return &Signer{key: key}, nil
}

// Sign returns the token for c.
func (s *Signer) Sign(c Claims) (string, error) {
	payload, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("encode claims: %w", err)
	}
	body := prefix + base64.RawURLEncoding.EncodeToString(payload)
	return body + "." + base64.RawURLEncoding.EncodeToString(s.mac(body)), nil
}

// Verify checks token's signature and expiry at now and returns its claims.
func (s *Signer) Verify(token string, now time.Time) (Claims, error) {
	body, sig, ok := strings.Cut(token, ".")
	if !ok || !strings.HasPrefix(body, prefix) {
		return Claims{}, ErrMalformed
	}
	gotMAC, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil {
		return Claims{}, ErrMalformed
	}
	if !hmac.Equal(gotMAC, s.mac(body)) {
		return Claims{}, ErrSignature
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(body, prefix))
	if err != nil {
		return Claims{}, ErrMalformed
	}
	var c Claims
	if err := json.Unmarshal(payload, &c); err != nil {
		return Claims{}, ErrMalformed
	}
	if !now.Before(c.ExpiresAt) {
		return c, ErrExpired
	}
	return c, nil
}

func (s *Signer) mac(body string) []byte {
	h := hmac.New(sha256.New, s.key)
	h.Write([]byte(body))
	return h.Sum(nil)
}
