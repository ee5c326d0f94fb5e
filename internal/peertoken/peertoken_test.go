package peertoken_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/internal/peertoken"
)

func newKey(t *testing.T) (ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	public, private, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return public, private
}

func TestSignedTokenVerifies(t *testing.T) {
	t.Parallel()
	oldPublic, _ := newKey(t)
	public, private := newKey(t)
	want := &satellitev1.PeerCredential{SatelliteId: "3f1c", ExpiresAt: timestamppb.New(time.Unix(1_900_000_000, 0))}
	token, err := peertoken.Sign(private, peertoken.PeerCredential, want)
	if err != nil {
		t.Fatal(err)
	}
	var got satellitev1.PeerCredential
	if err := peertoken.Verify([]ed25519.PublicKey{oldPublic, public}, peertoken.PeerCredential, token, &got); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if !proto.Equal(&got, want) {
		t.Fatalf("content = %v, want %v", &got, want)
	}
}

func TestForgedTokensAreRefused(t *testing.T) {
	t.Parallel()
	public, private := newKey(t)
	_, otherPrivate := newKey(t)
	identity := &satellitev1.IntrospectTokenResponse{Active: true, TeamSlug: "acme", UserId: "u1"}
	token, err := peertoken.Sign(private, peertoken.ForwardedIdentity, identity)
	if err != nil {
		t.Fatal(err)
	}
	payload, signature, _ := strings.Cut(token, ".")
	elevated, err := peertoken.Sign(otherPrivate, peertoken.ForwardedIdentity,
		&satellitev1.IntrospectTokenResponse{Active: true, TeamSlug: "other", UserId: "u1"})
	if err != nil {
		t.Fatal(err)
	}
	elevatedPayload, _, _ := strings.Cut(elevated, ".")
	cases := map[string]struct {
		token   string
		purpose peertoken.Purpose
	}{
		"other key":                  {elevated, peertoken.ForwardedIdentity},
		"payload swapped":            {elevatedPayload + "." + signature, peertoken.ForwardedIdentity},
		"signed for another purpose": {token, peertoken.PeerCredential},
		"no signature":               {payload, peertoken.ForwardedIdentity},
		"truncated signature":        {payload + "." + signature[:20], peertoken.ForwardedIdentity},
		"not base64":                 {payload + ".%%%", peertoken.ForwardedIdentity},
		"empty":                      {"", peertoken.ForwardedIdentity},
		"longer than the bound":      {strings.Repeat("A", peertoken.MaxLen+1), peertoken.ForwardedIdentity},
		"signature of another token": {payload + "." + strings.SplitN(elevated, ".", 2)[1], peertoken.ForwardedIdentity},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var got satellitev1.IntrospectTokenResponse
			err := peertoken.Verify([]ed25519.PublicKey{public}, c.purpose, c.token, &got)
			if !errors.Is(err, peertoken.ErrInvalid) {
				t.Fatalf("Verify = %v, want ErrInvalid", err)
			}
		})
	}
}
