package regtoken_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/orrery/orrery/services/controlplane/internal/regtoken"
)

func TestSignVerify(t *testing.T) {
	t.Parallel()
	signer, err := regtoken.NewSigner([]byte(strings.Repeat("k", 32)))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	team := uuid.New()
	claims := regtoken.Claims{ID: uuid.New(), Scope: regtoken.ScopeTeam, TeamID: &team, ExpiresAt: now.Add(time.Hour)}
	token, err := signer.Sign(claims)
	if err != nil {
		t.Fatal(err)
	}
	got, err := signer.Verify(token, now)
	if err != nil || got.ID != claims.ID || *got.TeamID != team || got.Scope != regtoken.ScopeTeam {
		t.Fatalf("Verify = %+v, %v", got, err)
	}
	if _, err := signer.Verify(token, now.Add(time.Hour)); !errors.Is(err, regtoken.ErrExpired) {
		t.Errorf("at expiry: %v, want ErrExpired", err)
	}

	body, sig, _ := strings.Cut(token, ".")
	other, _ := regtoken.NewSigner([]byte(strings.Repeat("x", 32)))
	forged, _ := other.Sign(claims)
	for name, tc := range map[string]struct {
		token string
		want  error
	}{
		"other key":        {forged, regtoken.ErrSignature},
		"altered claims":   {body + "e30." + sig, regtoken.ErrSignature},
		"no signature":     {body, regtoken.ErrMalformed},
		"wrong prefix":     {"x" + token, regtoken.ErrMalformed},
		"signature base64": {body + ".!!!", regtoken.ErrMalformed},
	} {
		if _, err := signer.Verify(tc.token, now); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
}

func TestShortKeyIsRefused(t *testing.T) {
	t.Parallel()
	if _, err := regtoken.NewSigner([]byte("short")); err == nil {
		t.Fatal("a 5-byte signing key was accepted")
	}
}
