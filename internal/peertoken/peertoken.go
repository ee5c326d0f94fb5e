// Package peertoken signs and verifies the small tokens that travel between the satellites of a pool: a
// satellite's peer credential and the identity it forwards with a request. The control plane signs them with
// Ed25519; satellites only verify. A token is the protobuf encoding of its content and a signature over a
// purpose label and that encoding, each base64url without padding, joined by a dot. The purpose keeps a token
// signed for one use from being accepted for another.
package peertoken

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"
)

// Purpose says what a token is for. It is part of what is signed.
type Purpose string

// The purposes of the pool's tokens.
const (
	// PeerCredential marks a satellitev1.PeerCredential: the satellite that presents it is of the pool.
	PeerCredential Purpose = "orrery peer credential v1"
	// ForwardedIdentity marks a satellitev1.IntrospectTokenResponse: whom a forwarded request acts for.
	ForwardedIdentity Purpose = "orrery forwarded identity v1"
)

// MaxLen bounds a token's length before anything in it is decoded.
const MaxLen = 8192

// ErrInvalid is returned for a token that is malformed, too long, or not signed by one of the keys.
var ErrInvalid = errors.New("invalid peer token")

var encoding = base64.RawURLEncoding

// Sign returns content signed with key for purpose.
func Sign(key ed25519.PrivateKey, purpose Purpose, content proto.Message) (string, error) {
	payload, err := proto.MarshalOptions{Deterministic: true}.Marshal(content)
	if err != nil {
		return "", fmt.Errorf("encode %s: %w", purpose, err)
	}
	signature := ed25519.Sign(key, signed(purpose, payload))
	token := encoding.EncodeToString(payload) + "." + encoding.EncodeToString(signature)
	if len(token) > MaxLen {
		return "", fmt.Errorf("%s: token of %d bytes is longer than %d", purpose, len(token), MaxLen)
	}
	return token, nil
}

// Verify checks that token was signed for purpose by one of keys and decodes its content into content. It
// does not check expiry: the caller reads it from the content.
func Verify(keys []ed25519.PublicKey, purpose Purpose, token string, content proto.Message) error {
	if len(token) > MaxLen {
		return ErrInvalid
	}
	encodedPayload, encodedSignature, ok := strings.Cut(token, ".")
	if !ok {
		return ErrInvalid
	}
	payload, err := encoding.DecodeString(encodedPayload)
	if err != nil {
		return ErrInvalid
	}
	signature, err := encoding.DecodeString(encodedSignature)
	if err != nil || len(signature) != ed25519.SignatureSize {
		return ErrInvalid
	}
	message := signed(purpose, payload)
	for _, key := range keys {
		if len(key) == ed25519.PublicKeySize && ed25519.Verify(key, message, signature) {
			if err := proto.Unmarshal(payload, content); err != nil {
				return ErrInvalid
			}
			return nil
		}
	}
	return ErrInvalid
}

func signed(purpose Purpose, payload []byte) []byte {
	message := make([]byte, 0, len(purpose)+1+len(payload))
	message = append(message, purpose...)
	message = append(message, 0)
	return append(message, payload...)
}
