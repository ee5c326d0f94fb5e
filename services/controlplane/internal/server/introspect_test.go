package server_test

import (
	"encoding/hex"
	"slices"
	"testing"
	"time"

	"connectrpc.com/connect"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/services/controlplane/internal/bearer"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// issueToken stores an access token for a member of f's team and returns it.
func issueToken(t *testing.T, b *testBundle, f teamFixture, expiresIn time.Duration) (string, store.AccessToken) {
	t.Helper()
	token, err := bearer.New(bearer.AccessToken)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := b.store().CreateAccessToken(t.Context(), store.AccessToken{
		TokenHash: bearer.Hash(token), TeamID: f.team.ID, UserID: f.alice.ID, ClientID: "vscode",
		Audience: "https://sat.example.test/teams/" + f.team.Slug + "/mcp", Scopes: []string{"mcp:read", "mcp:tools:execute"},
		ExpiresAt: time.Now().Add(expiresIn),
	})
	if err != nil {
		t.Fatal(err)
	}
	return token, rec
}

func introspect(t *testing.T, s *satellite, token string) *satellitev1.IntrospectTokenResponse {
	t.Helper()
	resp, err := s.client.IntrospectToken(t.Context(), connect.NewRequest(&satellitev1.IntrospectTokenRequest{Token: token}))
	if err != nil {
		t.Fatal(err)
	}
	return resp.Msg
}

func TestIntrospectionIsScopedToTheSatellitesTeams(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	red := seedTeam(t, b, "red")
	blue := seedTeam(t, b, "blue")
	redToken, _ := issueToken(t, b, red, time.Hour)
	blueToken, blueRec := issueToken(t, b, blue, time.Hour)
	expired, _ := issueToken(t, b, red, -time.Minute)
	redSat := b.activeSatellite(t, red.team.ID.String())
	global := b.activeSatellite(t, "")

	got := introspect(t, redSat, redToken)
	if !got.Active || got.TeamSlug != "red" || got.UserSlug != red.alice.Slug || len(got.Scopes) != 2 ||
		got.Audience != "https://sat.example.test/teams/red/mcp" {
		t.Fatalf("red token at red's satellite: %v", got)
	}
	if got := introspect(t, redSat, blueToken); got.Active || got.TeamId != "" {
		t.Fatalf("blue token at red's satellite: %v, want inactive and empty", got)
	}
	if got := introspect(t, global, blueToken); !got.Active || got.TeamSlug != "blue" {
		t.Fatalf("blue token at a global satellite: %v", got)
	}
	for name, token := range map[string]string{"expired": expired, "unknown": "orat_not-a-real-token"} {
		if got := introspect(t, global, token); got.Active {
			t.Errorf("%s token reported active", name)
		}
	}
	if err := b.store().RevokeAccessToken(t.Context(), blueRec.ID); err != nil {
		t.Fatal(err)
	}
	if got := introspect(t, global, blueToken); got.Active {
		t.Fatal("revoked token reported active")
	}
}

// revokedHashes returns the token hashes of the revoke_tokens commands waiting for s.
func revokedHashes(t *testing.T, s *satellite) []string {
	t.Helper()
	var out []string
	for _, cmd := range s.poll(t, 0) {
		out = append(out, cmd.GetRevokeTokens().GetTokenHashes()...)
	}
	slices.Sort(out)
	return out
}

// TestRevocationReachesTheTeamsSatellites revokes access tokens directly and by removing a member: each
// satellite serving the team is told the revoked tokens' hashes at once, other teams' satellites are told
// nothing, and a token revoked already is not announced again.
func TestRevocationReachesTheTeamsSatellites(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	red := seedTeam(t, b, "red")
	blue := seedTeam(t, b, "blue")
	_, first := issueToken(t, b, red, time.Hour)
	_, second := issueToken(t, b, red, time.Hour)
	redSat := b.activeSatellite(t, red.team.ID.String())
	blueSat := b.activeSatellite(t, blue.team.ID.String())
	global := b.activeSatellite(t, "")
	for _, s := range []*satellite{redSat, blueSat, global} {
		s.poll(t, 0) // what registration queued
	}

	if err := b.store().RevokeAccessToken(t.Context(), first.ID); err != nil {
		t.Fatal(err)
	}
	want := []string{hex.EncodeToString(first.TokenHash)}
	if got := revokedHashes(t, redSat); !slices.Equal(got, want) {
		t.Errorf("red's satellite was told %v, want %v", got, want)
	}
	// Red and blue have satellites of their own: the global satellite serves neither.
	for name, s := range map[string]*satellite{"blue's satellite": blueSat, "the global satellite": global} {
		if got := revokedHashes(t, s); len(got) != 0 {
			t.Errorf("%s was told of red's tokens: %v", name, got)
		}
	}
	if err := b.store().RevokeAccessToken(t.Context(), first.ID); err != nil {
		t.Fatal(err)
	}
	if got := revokedHashes(t, redSat); len(got) != 0 {
		t.Errorf("revoking again announced %v", got)
	}

	if err := b.store().RemoveMember(t.Context(), red.team.ID, red.alice.ID); err != nil {
		t.Fatal(err)
	}
	if got, want := revokedHashes(t, redSat), []string{hex.EncodeToString(second.TokenHash)}; !slices.Equal(got, want) {
		t.Errorf("after alice left red, its satellite was told %v, want %v", got, want)
	}
}

// TestMassRevocationIsAnnouncedInBoundedCommands removes a member who holds more access tokens than one
// revoke_tokens command may carry: the removal still succeeds, and the team's satellite is told every hash,
// spread over commands of at most 1000.
func TestMassRevocationIsAnnouncedInBoundedCommands(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	red := seedTeam(t, b, "hoarder")
	sat := b.activeSatellite(t, red.team.ID.String())
	sat.poll(t, 0)
	const tokens = 2500
	if _, err := b.pool(t).Exec(t.Context(), `insert into access_tokens (token_hash, team_id, user_id, audience, expires_at)
		select sha256(('hoard-' || n)::bytea), $1, $2, 'https://sat.example.test/teams/hoarder/mcp', now() + interval '1 hour'
		from generate_series(1, $3::int) n`, red.team.ID, red.alice.ID, tokens); err != nil {
		t.Fatal(err)
	}
	if err := b.store().RemoveMember(t.Context(), red.team.ID, red.alice.ID); err != nil {
		t.Fatalf("removing a member with %d tokens: %v", tokens, err)
	}
	seen := map[string]bool{}
	for _, cmd := range sat.poll(t, 0) {
		hashes := cmd.GetRevokeTokens().GetTokenHashes()
		if len(hashes) > 1000 {
			t.Errorf("one command carries %d hashes", len(hashes))
		}
		for _, h := range hashes {
			seen[h] = true
		}
	}
	if len(seen) != tokens {
		t.Errorf("the satellite was told %d distinct hashes, want %d", len(seen), tokens)
	}
}
