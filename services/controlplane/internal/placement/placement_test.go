package placement

import (
	"encoding/binary"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func id(prefix byte, n int) [16]byte {
	var b [16]byte
	b[0] = prefix
	binary.BigEndian.PutUint64(b[8:], uint64(n))
	return b
}

// fleet returns n satellites of equal weight and m teams whose loads follow a skewed distribution of
// instances (most teams small, a few large).
func fleet(n, m int, seed uint64) ([]Satellite, []Team) {
	rng := rand.New(rand.NewPCG(seed, seed))
	sats := make([]Satellite, n)
	for i := range sats {
		sats[i] = Satellite{ID: id('s', i), Weight: 100}
	}
	teams := make([]Team, m)
	for i := range teams {
		teams[i] = Team{ID: id('t', i), Load: uint32(1 + rng.ExpFloat64()*4)}
	}
	return sats, teams
}

// withPrevious returns teams carrying placement as their previous placement.
func withPrevious(teams []Team, placement [][][16]byte) []Team {
	out := slices.Clone(teams)
	for i := range out {
		out[i].Previous = placement[i]
	}
	return out
}

// balance is max/mean of load per unit of weight over the satellites.
func balance(sats []Satellite, teams []Team, placement [][][16]byte) float64 {
	loads := map[[16]byte]float64{}
	for i, p := range placement {
		for _, s := range p {
			loads[s] += float64(load(teams[i]))
		}
	}
	var total, weights, peak float64
	for _, s := range sats {
		total += loads[s.ID]
		weights += weight(s)
		peak = max(peak, loads[s.ID]/weight(s))
	}
	return peak / (total / weights)
}

// moved counts team replicas placed on a satellite in after that were not on it in before.
func moved(before, after [][][16]byte) int {
	n := 0
	for i := range after {
		for _, s := range after[i] {
			if !slices.Contains(before[i], s) {
				n++
			}
		}
	}
	return n
}

func TestPlaceGivesEachTeamRDistinctSatellites(t *testing.T) {
	t.Parallel()
	sats, teams := fleet(7, 500, 1)
	teams[0].Replicas = 3
	teams[1].Replicas = 9 // more than there are satellites
	got := Place(sats, teams, Options{})
	for i, p := range got {
		want := min(replicas(teams[i]), len(sats))
		if len(p) != want {
			t.Fatalf("team %d has %d satellites, want %d", i, len(p), want)
		}
		seen := map[[16]byte]bool{}
		for _, s := range p {
			if seen[s] {
				t.Fatalf("team %d placed twice on one satellite", i)
			}
			seen[s] = true
		}
	}
	if again := Place(sats, teams, Options{}); !slices.EqualFunc(got, again, slices.Equal) {
		t.Fatal("Place is not deterministic")
	}
}

func TestPlaceBoundsLoadAndMovesOnlyWhatItMust(t *testing.T) {
	t.Parallel()
	sats, teams := fleet(50, 5000, 2)
	first := Place(sats, teams, Options{})
	if b := balance(sats, teams, first); b > 1+DefaultSlack+0.05 {
		t.Errorf("balance %.3f, want at most %.3f", b, 1+DefaultSlack+0.05)
	}
	// Stable: recomputing with nothing changed moves nothing.
	if n := moved(first, Place(sats, withPrevious(teams, first), Options{})); n != 0 {
		t.Errorf("recomputation without a change moved %d replicas", n)
	}
	// One satellite fails: exactly its replicas move.
	failed := sats[17].ID
	var orphans int
	for _, p := range first {
		if slices.Contains(p, failed) {
			orphans++
		}
	}
	after := Place(slices.Delete(slices.Clone(sats), 17, 18), withPrevious(teams, first), Options{})
	if n := moved(first, after); n != orphans {
		t.Errorf("failure moved %d replicas, want the failed satellite's %d", n, orphans)
	}
	// It returns: it takes about its share back, and the balance holds.
	back := Place(sats, withPrevious(teams, after), Options{})
	share := 2 * len(teams) / len(sats)
	if n := moved(after, back); n < share/2 || n > 2*share {
		t.Errorf("return moved %d replicas, want about %d", n, share)
	}
	if b := balance(sats, teams, back); b > 1+DefaultSlack+0.05 {
		t.Errorf("balance after return %.3f", b)
	}
}

func TestPlaceWeighsByCapacity(t *testing.T) {
	t.Parallel()
	sats, teams := fleet(10, 4000, 3)
	sats[0].Weight = 300
	got := Place(sats, teams, Options{})
	count := map[[16]byte]int{}
	for _, p := range got {
		for _, s := range p {
			count[s]++
		}
	}
	if ratio := float64(count[sats[0].ID]) / float64(count[sats[1].ID]); ratio < 2.2 || ratio > 3.8 {
		t.Errorf("a satellite of weight 300 got %.2f times the teams of one of weight 100", ratio)
	}
}

// BenchmarkSimulation places 100,000 teams on 1,000 satellites and reports the balance (max/mean instances
// per unit of capacity), the replicas moved when one satellite fails and when one joins, and the time of a
// recomputation. Run with: go test -run '^$' -bench Simulation -benchtime 1x ./services/controlplane/internal/placement
func BenchmarkSimulation(b *testing.B) {
	sats, teams := fleet(1000, 100_000, 4)
	for b.Loop() {
		start := time.Now()
		first := Place(sats, teams, Options{})
		initial := time.Since(start)
		var orphans int
		for _, p := range first {
			if slices.Contains(p, sats[500].ID) {
				orphans++
			}
		}
		prev := withPrevious(teams, first)
		start = time.Now()
		survivors := slices.Delete(slices.Clone(sats), 500, 501)
		failed := Place(survivors, prev, Options{})
		recompute := time.Since(start)
		withNew := append(slices.Clone(sats), Satellite{ID: id('s', 1000), Weight: 100})
		start = time.Now()
		joined := Place(withNew, prev, Options{})
		joinTime := time.Since(start)
		placements := 0
		for _, p := range first {
			placements += len(p)
		}
		plain := Place(sats, teams, Options{Slack: 1e9})
		b.ReportMetric(balance(sats, teams, first), "max/mean")
		b.ReportMetric(balance(sats, teams, plain), "max/mean-unbounded")
		b.ReportMetric(balance(survivors, teams, failed), "max/mean-after-failure")
		b.ReportMetric(float64(moved(first, failed)), "moved-on-failure")
		b.ReportMetric(float64(orphans), "replicas-of-failed")
		b.ReportMetric(float64(moved(first, joined)), "moved-on-join")
		b.ReportMetric(float64(placements)/1000, "ideal-moves")
		b.ReportMetric(initial.Seconds(), "s-initial")
		b.ReportMetric(recompute.Seconds(), "s-recompute-failure")
		b.ReportMetric(joinTime.Seconds(), "s-recompute-join")
		b.ReportMetric(balance(withNew, teams, joined), "max/mean-after-join")
	}
}
