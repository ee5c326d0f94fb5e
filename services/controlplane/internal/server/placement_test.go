package server_test

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/protobuf/encoding/prototext"

	adminv1 "github.com/orrery/orrery/gen/orrery/admin/v1"
	"github.com/orrery/orrery/gen/orrery/admin/v1/adminv1connect"
	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/internal/peertoken"
	"github.com/orrery/orrery/services/controlplane/internal/placer"
	"github.com/orrery/orrery/services/controlplane/internal/satelliteapi"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// poolHeartbeat sends a global satellite's heartbeat with its capacity and open sessions.
func (s *satellite) poolHeartbeat(t testing.TB, capacity, openSessions uint32) {
	t.Helper()
	if _, err := s.client.Heartbeat(t.Context(), connect.NewRequest(&satellitev1.HeartbeatRequest{
		Capacity: capacity, OpenSessions: openSessions, InternalUrl: "http://" + s.id + ".internal.test",
		System: &satellitev1.SystemMetrics{CpuPercent: 1},
	})); err != nil {
		t.Fatal(err)
	}
}

// keepBeating has sats send a heartbeat as globalSatellites activated them (a heartbeat that changed what
// placement reads would wait for a recomputation, which under load could hold the next past the grace)
// every 200 ms until the test ends.
func keepBeating(t *testing.T, sats ...*satellite) {
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			for _, s := range sats {
				_, _ = s.client.Heartbeat(t.Context(), connect.NewRequest(&satellitev1.HeartbeatRequest{
					Capacity: 100, InternalUrl: "http://" + s.id + ".internal.test", System: &satellitev1.SystemMetrics{CpuPercent: 1}}))
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
}

// globalSatellites registers n global satellites and activates each with capacity.
func (b *testBundle) globalSatellites(t testing.TB, n int, capacity uint32) []*satellite {
	t.Helper()
	sats := make([]*satellite, n)
	for i := range sats {
		sat, err := b.register(t, 0, b.createToken(t, ""), fmt.Sprintf("global-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		sat.poolHeartbeat(t, capacity, 0)
		sats[i] = sat
	}
	return sats
}

// placedOn lists the satellites a team is placed on, best first, through the admin API.
func (b *testBundle) placedOn(t testing.TB, teamID uuid.UUID) []string {
	t.Helper()
	resp, err := b.admin(0).ListPlacements(t.Context(), connect.NewRequest(&adminv1.ListPlacementsRequest{
		Target: &adminv1.ListPlacementsRequest_TeamId{TeamId: teamID.String()},
	}))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range resp.Msg.Placements {
		out = append(out, p.SatelliteId)
	}
	return out
}

func createTeams(t testing.TB, b *testBundle, n int) []store.Team {
	t.Helper()
	teams := make([]store.Team, n)
	for i := range teams {
		var err error
		if teams[i], err = b.store().CreateTeam(t.Context(), fmt.Sprintf("team-%03d", i), "Team"); err != nil {
			t.Fatal(err)
		}
	}
	return teams
}

func TestPlacementPutsEachTeamOnRSatellitesWeightedByCapacity(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	sats := b.globalSatellites(t, 3, 100)
	big, err := b.register(t, 0, b.createToken(t, ""), "big")
	if err != nil {
		t.Fatal(err)
	}
	big.poolHeartbeat(t, 400, 0)
	teams := createTeams(t, b, 120)
	count := map[string]int{}
	for _, team := range teams {
		placed := b.placedOn(t, team.ID)
		if len(placed) != 2 || placed[0] == placed[1] {
			t.Fatalf("team %s placed on %v, want 2 distinct satellites", team.Slug, placed)
		}
		for _, id := range placed {
			count[id]++
		}
	}
	// The big satellite has 4/7 of the capacity: with two replicas of 120 teams it carries about 137 of 240
	// placements, bounded by the teams it can take at most once (120); each small one about 34.
	if count[big.id] < 90 {
		t.Errorf("the satellite of capacity 400 carries %d placements, the others %d, %d, %d",
			count[big.id], count[sats[0].id], count[sats[1].id], count[sats[2].id])
	}

	// A global admin sets one team's R to 3: it is placed on three satellites at once.
	resp, err := b.admin(0).SetTeamReplicas(t.Context(), connect.NewRequest(&adminv1.SetTeamReplicasRequest{
		TeamId: teams[0].ID.String(), Replicas: 3,
	}))
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Msg.Placements) != 3 {
		t.Fatalf("after R=3 the team is placed on %d satellites", len(resp.Msg.Placements))
	}
	for _, team := range teams[1:] {
		if n := len(b.placedOn(t, team.ID)); n != 2 {
			t.Fatalf("team %s now on %d satellites", team.Slug, n)
		}
	}
}

func TestDrainMovesTeamsAndReportsDrained(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{satellite: satelliteapi.Config{PoolURL: "https://pool.example.test"}})
	sats := b.globalSatellites(t, 3, 100)
	f := seedTeam(t, b, "drainee")
	teams := append(createTeams(t, b, 30), f.team)
	token, _ := issueToken(t, b, f, time.Hour)
	// The victim serves the seeded team, the only one with instances.
	var victim *satellite
	for _, s := range sats {
		if s.id == b.placedOn(t, f.team.ID)[0] {
			victim = s
		}
		s.poll(t, 0)
	}
	served := len(getConfiguration(t, victim, "").Instances)
	if served == 0 {
		t.Fatal("the victim's configuration carries none of the team's instances before the drain")
	}
	victim.poolHeartbeat(t, 100, 2) // two sessions open
	resp, err := b.admin(0).DrainSatellite(t.Context(), connect.NewRequest(&adminv1.DrainSatelliteRequest{Id: victim.id}))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Msg.Satellite.DrainingAt == nil {
		t.Fatal("drained satellite shows no draining_at")
	}
	for _, team := range teams {
		placed := b.placedOn(t, team.ID)
		if len(placed) != 2 || slices.Contains(placed, victim.id) {
			t.Fatalf("team %s placed on %v after draining %s", team.Slug, placed, victim.id)
		}
	}
	events, err := b.store().ListAuditEvents(t.Context(), nil, 1<<62, 500)
	if err != nil {
		t.Fatal(err)
	}
	moved := 0
	for _, e := range events {
		if e.Action == store.ActionTeamPlaced && strings.Contains(e.Details["from"], victim.id) &&
			!strings.Contains(e.Details["to"], victim.id) {
			moved++
		}
	}
	if moved == 0 {
		t.Error("no audit event records a team moved off the drained satellite")
	}
	// While it drains, its configuration still carries the team's instances, so that its open sessions keep
	// their tools, and says it drains.
	stillServes := func(want bool) {
		t.Helper()
		cfg := getConfiguration(t, victim, "")
		if !cfg.Pool.GetDraining() || (len(cfg.Instances) == served) != want || (!want && len(cfg.Instances) != 0) {
			t.Fatalf("draining satellite's configuration: draining %v, %d instances of %d, want the team's: %v",
				cfg.Pool.GetDraining(), len(cfg.Instances), served, want)
		}
	}
	stillServes(true)
	// New sessions go elsewhere: no introspection names it, not even its own, though the token stays active
	// there for the sessions it holds.
	for _, s := range sats {
		got := introspect(t, s, token)
		if !got.Active || slices.ContainsFunc(got.Placement, func(p *satellitev1.Peer) bool { return p.SatelliteId == victim.id }) {
			t.Fatalf("introspection at %s (victim %s): %v", s.id, victim.id, got)
		}
		if s == victim && (len(got.Placement) == 0 || got.ForwardedIdentity == "") {
			t.Fatalf("introspection at the draining satellite keeps new sessions there: %v", got)
		}
	}
	// Open sessions keep it draining; none left, it is drained.
	if resp.Msg.Satellite.DrainedAt != nil {
		t.Fatal("drained at once while it reports open sessions")
	}
	victim.poolHeartbeat(t, 100, 1)
	if sat, _ := b.store().Satellite(t.Context(), uuid.MustParse(victim.id)); sat.DrainedAt != nil {
		t.Fatal("drained while it reports open sessions")
	}
	stillServes(true)
	victim.poll(t, 0)
	victim.poolHeartbeat(t, 100, 0)
	sat, err := b.store().Satellite(t.Context(), uuid.MustParse(victim.id))
	if err != nil || sat.DrainedAt == nil {
		t.Fatalf("not drained after its last session ended: %v", err)
	}
	// Drained, it drops the team, told so by a configure command.
	if !slices.ContainsFunc(victim.poll(t, 0), func(c *satellitev1.Command) bool { return c.GetConfigure() != nil }) {
		t.Error("no configure command tells the drained satellite to drop the team")
	}
	stillServes(false)
	if got := introspect(t, victim, token); slices.ContainsFunc(got.Placement, func(p *satellitev1.Peer) bool { return p.SatelliteId == victim.id }) ||
		(got.Active && got.ForwardedIdentity == "") {
		t.Fatalf("introspection at the drained satellite: %v", got)
	}
	// Undrained, it takes a share of teams again.
	if _, err := b.admin(0).UndrainSatellite(t.Context(), connect.NewRequest(&adminv1.UndrainSatelliteRequest{Id: victim.id})); err != nil {
		t.Fatal(err)
	}
	back := 0
	for _, team := range teams {
		if slices.Contains(b.placedOn(t, team.ID), victim.id) {
			back++
		}
	}
	if back == 0 || back == len(teams) {
		t.Errorf("after undrain %d of %d teams are on the satellite", back, len(teams))
	}
}

func TestDrainTrustsOnlyASessionCountReportedAfterItBegan(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	sats := b.globalSatellites(t, 3, 100) // each last reported no open session
	createTeams(t, b, 10)
	victim := sats[1]
	resp, err := b.admin(0).DrainSatellite(t.Context(), connect.NewRequest(&adminv1.DrainSatelliteRequest{Id: victim.id}))
	if err != nil {
		t.Fatal(err)
	}
	// Its count predates the drain: sessions may have opened since.
	if resp.Msg.Satellite.DrainedAt != nil {
		t.Fatal("drained at once on a session count reported before the drain")
	}
	victim.poolHeartbeat(t, 100, 0)
	if sat, err := b.store().Satellite(t.Context(), uuid.MustParse(victim.id)); err != nil || sat.DrainedAt == nil {
		t.Fatalf("not drained after reporting no session since the drain began: %v", err)
	}
}

func TestOfflineSatelliteLosesItsTeamsAfterGraceAndFewMoveOnReturn(t *testing.T) {
	t.Parallel()
	grace := 5 * time.Second // well past the live satellites' beats, however slow the machine makes them
	b := setup(t, setupOpts{placement: placer.Config{Grace: grace, Interval: 200 * time.Millisecond},
		satellite: satelliteapi.Config{PlacementGrace: grace}})
	sats := b.globalSatellites(t, 4, 100)
	teams := createTeams(t, b, 40)
	gone := sats[1]
	// New teams go to their best satellites regardless of load; a recomputation (here the one after R is
	// set) bounds the load, and moves them before the satellite fails, not after.
	if _, err := b.admin(0).SetTeamReplicas(t.Context(), connect.NewRequest(&adminv1.SetTeamReplicasRequest{
		TeamId: teams[0].ID.String(), Replicas: 2,
	})); err != nil {
		t.Fatal(err)
	}
	before := map[uuid.UUID][]string{}
	for _, team := range teams {
		before[team.ID] = b.placedOn(t, team.ID)
	}
	// The others keep beating; the gone one falls silent.
	keepBeating(t, sats[0], sats[2], sats[3])
	waitFor(t, 20*time.Second, "the silent satellite's teams to move", func() bool {
		for _, team := range teams {
			if slices.Contains(b.placedOn(t, team.ID), gone.id) {
				return false
			}
		}
		return true
	})
	// Only teams that were on it moved, one replica each.
	after := map[uuid.UUID][]string{}
	for _, team := range teams {
		after[team.ID] = b.placedOn(t, team.ID)
		kept := 0
		for _, id := range before[team.ID] {
			if slices.Contains(after[team.ID], id) {
				kept++
			}
		}
		if want := 2 - boolInt(slices.Contains(before[team.ID], gone.id)); kept != want || len(after[team.ID]) != 2 {
			t.Errorf("team %s: %v → %v", team.Slug, before[team.ID], after[team.ID])
		}
	}
	// It returns: it takes back about its share, and nothing else moves.
	gone.poolHeartbeat(t, 100, 0)
	returned, changed := 0, 0
	for _, team := range teams {
		now := b.placedOn(t, team.ID)
		if slices.Contains(now, gone.id) {
			returned++
		}
		if !slices.Equal(now, after[team.ID]) && !slices.Contains(now, gone.id) {
			changed++
		}
	}
	if returned == 0 || returned > 30 || changed != 0 {
		t.Errorf("on return %d teams came back (share about 20), %d others changed", returned, changed)
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestTeamSatelliteTakesPrecedenceAndGlobalFallbackStandsIn(t *testing.T) {
	t.Parallel()
	grace := 3 * time.Second // well past the global satellites' beats, however slow the machine makes them
	b := setup(t, setupOpts{placement: placer.Config{Grace: grace, Interval: 200 * time.Millisecond},
		satellite: satelliteapi.Config{PlacementGrace: grace}})
	globals := b.globalSatellites(t, 2, 100)
	keepBeating(t, globals...)
	f := seedTeam(t, b, "own")
	if n := len(b.placedOn(t, f.team.ID)); n != 2 {
		t.Fatalf("team without satellites of its own is on %d global satellites, want 2", n)
	}
	own := b.activeSatellite(t, f.team.ID.String())
	if placed := b.placedOn(t, f.team.ID); len(placed) != 0 {
		t.Fatalf("team with a live satellite of its own still on %v", placed)
	}
	for _, g := range globals {
		if n := len(getConfiguration(t, g, "").Instances); n != 0 {
			t.Fatalf("a global satellite still gets %d of the team's instances", n)
		}
	}
	// The team's admin lets global satellites stand in; its satellite falls silent past the grace period.
	if _, err := b.store().SetTeamGlobalFallback(t.Context(), f.team.ID, true, store.AuditEvent{Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "global satellites to stand in", func() bool { return len(b.placedOn(t, f.team.ID)) == 2 })
	// The team's satellite comes back: the global ones let go.
	own.heartbeat(t, "")
	if placed := b.placedOn(t, f.team.ID); len(placed) != 0 {
		t.Fatalf("team satellite back, the team still on %v", placed)
	}
}

// TestSecretsReachOnlyPlacedSatellites is the attacker's view: a global satellite not placed for a team
// learns nothing of it, neither instances nor secrets nor commands.
func TestSecretsReachOnlyPlacedSatellites(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	sats := b.globalSatellites(t, 3, 100)
	victim := seedTeam(t, b, "victim")
	if _, err := b.admin(0).SetTeamReplicas(t.Context(), connect.NewRequest(&adminv1.SetTeamReplicasRequest{
		TeamId: victim.team.ID.String(), Replicas: 1,
	})); err != nil {
		t.Fatal(err)
	}
	placed := b.placedOn(t, victim.team.ID)
	if len(placed) != 1 {
		t.Fatalf("victim placed on %v, want one satellite", placed)
	}
	for _, s := range sats {
		s.poll(t, 0)
	}
	// A configure command for the team goes to its satellite alone.
	if _, err := b.store().EnqueueTeamCommand(t.Context(), victim.team.ID, store.NewCommand{TeamID: &victim.team.ID,
		Action: &satellitev1.Command{Action: &satellitev1.Command_Configure{Configure: &satellitev1.ConfigureAction{
			Event: satellitev1.ConfigureEvent_CONFIGURE_EVENT_INSTALLATION_UPDATED}}}}); err != nil {
		t.Fatal(err)
	}
	for _, s := range sats {
		cfg := prototext.Format(getConfiguration(t, s, ""))
		cmds := s.poll(t, 0)
		if s.id == placed[0] {
			if !strings.Contains(cfg, "victim-team-secret") || len(cmds) != 1 {
				t.Fatalf("the placed satellite lacks the team's configuration or command (%d commands)", len(cmds))
			}
			continue
		}
		if strings.Contains(cfg, "victim-team-secret") || strings.Contains(cfg, "alice-secret") ||
			strings.Contains(cfg, victim.team.ID.String()) {
			t.Fatalf("satellite %s, not placed for the victim, got its configuration:\n%s", s.id, cfg)
		}
		if len(cmds) != 0 {
			t.Fatalf("satellite %s, not placed for the victim, got its commands %v", s.id, cmds)
		}
	}
}

func TestIntrospectionAtAnUnplacedSatelliteForwardsASignedIdentity(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{satellite: satelliteapi.Config{PoolURL: "https://pool.example.test"}})
	sats := b.globalSatellites(t, 3, 100)
	f := seedTeam(t, b, "fwd")
	if _, err := b.admin(0).SetTeamReplicas(t.Context(), connect.NewRequest(&adminv1.SetTeamReplicasRequest{
		TeamId: f.team.ID.String(), Replicas: 1,
	})); err != nil {
		t.Fatal(err)
	}
	placed := b.placedOn(t, f.team.ID)
	token, _ := issueToken(t, b, f, time.Hour)
	var home, other *satellite
	for _, s := range sats {
		if s.id == placed[0] {
			home = s
		} else {
			other = s
		}
	}
	if got := introspect(t, home, token); !got.Active || len(got.Placement) != 0 || got.ForwardedIdentity != "" {
		t.Fatalf("at the placed satellite: %v, want active without placement", got)
	}
	got := introspect(t, other, token)
	if !got.Active || len(got.Placement) != 1 || got.Placement[0].SatelliteId != home.id ||
		got.Placement[0].InternalUrl != "http://"+home.id+".internal.test" || got.ForwardedIdentity == "" {
		t.Fatalf("at an unplaced satellite: %v", got)
	}
	cred, err := other.client.GetPeerCredential(t.Context(), connect.NewRequest(&satellitev1.GetPeerCredentialRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	var keys []ed25519.PublicKey
	for _, k := range cred.Msg.VerificationKeys {
		keys = append(keys, k)
	}
	var identity satellitev1.IntrospectTokenResponse
	if err := peertoken.Verify(keys, peertoken.ForwardedIdentity, got.ForwardedIdentity, &identity); err != nil {
		t.Fatalf("forwarded identity does not verify: %v", err)
	}
	if identity.TeamId != f.team.ID.String() || identity.UserId != f.alice.ID.String() || !identity.Active ||
		len(identity.Placement) != 0 || identity.ForwardedIdentity != "" {
		t.Fatalf("forwarded identity %v", &identity)
	}
	if ttl := time.Until(identity.ExpiresAt.AsTime()); ttl > 5*time.Minute || ttl < 4*time.Minute {
		t.Fatalf("forwarded identity lives %v, want about 5 minutes", ttl)
	}
	var pc satellitev1.PeerCredential
	if err := peertoken.Verify(keys, peertoken.PeerCredential, cred.Msg.Credential, &pc); err != nil || pc.SatelliteId != other.id {
		t.Fatalf("peer credential %v: %v", &pc, err)
	}
	// Signed for one purpose, a token is refused for the other.
	if err := peertoken.Verify(keys, peertoken.PeerCredential, got.ForwardedIdentity, &pc); err == nil {
		t.Fatal("a forwarded identity passed as a peer credential")
	}
	// A second replica signs with the same key.
	b.replicas = append(b.replicas, b.startReplica(t, setupOpts{satellite: satelliteapi.Config{PoolURL: "https://pool.example.test"}}))
	again, err := b.connect(1, other.id, other.apiKey).client.GetPeerCredential(t.Context(),
		connect.NewRequest(&satellitev1.GetPeerCredentialRequest{}))
	if err != nil || !slices.EqualFunc(again.Msg.VerificationKeys, cred.Msg.VerificationKeys, slices.Equal) {
		t.Fatalf("another replica's keys differ: %v", err)
	}

	// A team satellite gets no credential, and keeps today's answer for its own team.
	own := b.activeSatellite(t, f.team.ID.String())
	_, err = own.client.GetPeerCredential(t.Context(), connect.NewRequest(&satellitev1.GetPeerCredentialRequest{}))
	if connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Fatalf("team satellite asking for a peer credential: %v, want PermissionDenied", err)
	}
	if got := introspect(t, own, token); !got.Active || len(got.Placement) != 0 || got.ForwardedIdentity != "" {
		t.Fatalf("at the team's own satellite: %v", got)
	}
}

func TestTeamAdminCannotDrainOrSetReplicas(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	sats := b.globalSatellites(t, 1, 100)
	f := seedTeam(t, b, "admins")
	admin, err := b.store().CreateUser(t.Context(), "team-boss", "boss@admins.test", "Boss")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.store().AddMember(t.Context(), f.team.ID, admin.ID, "team_admin"); err != nil {
		t.Fatal(err)
	}
	client := adminv1connect.NewAdminServiceClient(testClient, b.replicas[0].url,
		connect.WithInterceptors(withBearer(b.apiToken(t, admin.ID))))
	_, err = client.DrainSatellite(t.Context(), connect.NewRequest(&adminv1.DrainSatelliteRequest{Id: sats[0].id}))
	if connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Errorf("team admin draining a global satellite: %v", err)
	}
	_, err = client.SetTeamReplicas(t.Context(), connect.NewRequest(&adminv1.SetTeamReplicasRequest{TeamId: f.team.ID.String(), Replicas: 1}))
	if connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Errorf("team admin setting R of their own team: %v", err)
	}
	var ce *connect.Error
	if errors.As(err, &ce) && strings.Contains(ce.Message(), f.team.ID.String()) {
		t.Errorf("refusal names the team: %v", ce)
	}
}
