// Package placement decides which global satellites serve each team: weighted rendezvous hashing with
// bounded loads, sticky to the previous placement so that a change of membership moves only the teams it
// must.
//
// Plain weighted rendezvous hashing moves the fewest teams but balances poorly: with ~200 placements per
// satellite the fullest of 1,000 satellites carries 1.2 to 1.3 times the mean. Place bounds every
// satellite's load at ⌈(1+ε)·its weighted share⌉ and, like consistent hashing with bounded loads, walks a
// team down its ranking past satellites already at their bound. Run from scratch in a fixed order, that
// walk cascades: one failed satellite shifts the bound of every later team. Place therefore starts from the
// previous placement: a team keeps every satellite it had that is still eligible and under its bound, and
// only the missing replicas walk the ranking. A satellite that joins (or returns) takes over the replicas of
// the teams that rank it in their top R, which is what rendezvous hashing would move to it.
package placement

import (
	"cmp"
	"encoding/binary"
	"math"
	"slices"
)

// Satellite is a global satellite that may be given teams.
type Satellite struct {
	// ID identifies the satellite; its bytes enter the hash.
	ID [16]byte
	// Weight is the satellite's capacity relative to the others; zero counts as 100.
	Weight uint32
}

// Team is a team to place.
type Team struct {
	// ID identifies the team; its bytes enter the hash.
	ID [16]byte
	// Load is what the team costs a satellite that serves it, in instances; zero counts as one, since a
	// team without instances still holds sessions.
	Load uint32
	// Replicas is how many satellites serve the team (R); zero counts as DefaultReplicas.
	Replicas int
	// Previous lists the satellites that served the team before, in placement order.
	Previous [][16]byte
}

// DefaultReplicas is R when a team sets none.
const DefaultReplicas = 2

// keepSlack is how much further than Slack a satellite may carry teams it already has.
const keepSlack = 0.01

// DefaultSlack is ε when Options sets none: no satellite carries more than 1.08 times its weighted share,
// plus one team.
const DefaultSlack = 0.08

// Options tune Place. The zero value means the defaults.
type Options struct {
	// Slack is ε, how far above its weighted share of the load a satellite may go. Default DefaultSlack.
	Slack float64
}

// Place returns, for each team in the order of teams, the satellites that serve it, best first. A team gets
// min(R, len(satellites)) satellites. Place is a pure function of its arguments.
func Place(satellites []Satellite, teams []Team, opts Options) [][][16]byte {
	out := make([][][16]byte, len(teams))
	if len(satellites) == 0 {
		return out
	}
	slack := opts.Slack
	if slack <= 0 {
		slack = DefaultSlack
	}
	sats := slices.Clone(satellites)
	slices.SortFunc(sats, func(a, b Satellite) int { return cmp.Compare(string(a.ID[:]), string(b.ID[:])) })
	index := make(map[[16]byte]int, len(sats))
	var totalWeight float64
	for i, s := range sats {
		index[s.ID] = i
		totalWeight += weight(s)
	}
	var totalLoad float64
	for _, t := range teams {
		totalLoad += float64(load(t)) * float64(min(replicas(t), len(sats)))
	}
	// A team keeps a satellite it had up to a slightly higher bound than a newcomer gets, so that a bound
	// shrinking a little (one satellite joins) does not shed teams that fit a moment ago.
	bound, keepBound := make([]float64, len(sats)), make([]float64, len(sats))
	for i, s := range sats {
		bound[i] = math.Ceil((1 + slack) * totalLoad * weight(s) / totalWeight)
		keepBound[i] = math.Ceil((1 + slack + keepSlack) * totalLoad * weight(s) / totalWeight)
	}
	// A satellite is new when no team had it: it joined or came back, and takes its rendezvous share.
	known := make([]bool, len(sats))
	for _, t := range teams {
		for _, p := range t.Previous {
			if i, ok := index[p]; ok {
				known[i] = true
			}
		}
	}
	var newSats []int
	for i, k := range known {
		if !k {
			newSats = append(newSats, i)
		}
	}
	hashes := make([]uint64, len(sats))
	for i, s := range sats {
		hashes[i] = idHash(s.ID)
	}
	loads := make([]float64, len(sats))
	// Teams in hash order, so the bound falls on no team for its name or position in the input.
	teamHashes := make([]uint64, len(teams))
	order := make([]int, len(teams))
	for i, t := range teams {
		teamHashes[i] = idHash(t.ID)
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return cmp.Compare(teamHashes[a], teamHashes[b]) })
	score := func(ti, si int) float64 { return rendezvous(hashes[si], teamHashes[ti], weight(sats[si])) }
	byScore := func(ti int) func(a, b int) int {
		return func(a, b int) int { return cmp.Compare(score(ti, b), score(ti, a)) }
	}
	scratch := make([]float64, len(sats))

	// Pass 1: keep what is still eligible, let new satellites take their rendezvous share, stay under bounds.
	chosen := make([]int, 0, 8)
	for _, ti := range order {
		t := teams[ti]
		r := min(replicas(t), len(sats))
		chosen = chosen[:0]
		for _, p := range t.Previous {
			if si, ok := index[p]; ok && !slices.Contains(chosen, si) {
				chosen = append(chosen, si)
			}
		}
		// A new satellite that outranks one the team keeps takes its place, as in plain rendezvous hashing;
		// comparing with the kept ones alone keeps a join linear in the teams.
		// A team with fewer than R kept, or a fleet mostly new, takes the new ones among its top R.
		switch {
		case len(newSats) == 0:
		case len(chosen) < r || len(newSats) > len(sats)/8:
			for _, si := range top(sats, hashes, teamHashes[ti], r, scratch) {
				if !known[si] && !slices.Contains(chosen, si) {
					chosen = append(chosen, si)
				}
			}
		default:
			worst := math.Inf(1)
			for _, si := range chosen {
				worst = min(worst, score(ti, si))
			}
			for _, si := range newSats {
				if score(ti, si) > worst {
					chosen = append(chosen, si)
				}
			}
		}
		// The new satellites in the top R displace the lowest-ranked kept ones.
		slices.SortFunc(chosen, byScore(ti))
		if len(chosen) > r {
			chosen = chosen[:r]
		}
		l := float64(load(t))
		out[ti] = make([][16]byte, 0, r)
		for _, si := range chosen {
			limit := bound[si]
			if known[si] {
				limit = keepBound[si]
			}
			if loads[si]+l <= limit {
				loads[si] += l
				out[ti] = append(out[ti], sats[si].ID)
			}
		}
	}
	// Pass 2: fill the missing replicas down each team's ranking, past satellites at their bound.
	for _, ti := range order {
		t := teams[ti]
		r := min(replicas(t), len(sats))
		if len(out[ti]) == r {
			continue
		}
		l := float64(load(t))
		have := func(si int) bool { return slices.Contains(out[ti], sats[si].ID) }
		for _, k := range []int{r + 16, len(sats)} {
			for _, si := range top(sats, hashes, teamHashes[ti], min(k, len(sats)), scratch) {
				if len(out[ti]) == r {
					break
				}
				if !have(si) && loads[si]+l <= bound[si] {
					loads[si] += l
					out[ti] = append(out[ti], sats[si].ID)
				}
			}
			if len(out[ti]) == r {
				break
			}
		}
		// A team too large for any bound goes where it weighs least.
		for len(out[ti]) < r {
			best := -1
			for si := range sats {
				if !have(si) && (best < 0 || (loads[si]+l)/weight(sats[si]) < (loads[best]+l)/weight(sats[best])) {
					best = si
				}
			}
			loads[best] += l
			out[ti] = append(out[ti], sats[best].ID)
		}
		// Placement order is ranking order, so the first satellite is the team's best.
		slices.SortFunc(out[ti], func(a, b [16]byte) int { return byScore(ti)(index[a], index[b]) })
	}
	return out
}

// top returns the indexes of the k best-ranked satellites for the team, best first.
func top(sats []Satellite, hashes []uint64, team uint64, k int, scores []float64) []int {
	best := make([]int, 0, k+1)
	for i, s := range sats {
		scores[i] = rendezvous(hashes[i], team, weight(s))
		if len(best) == k && scores[i] <= scores[best[k-1]] {
			continue
		}
		at, _ := slices.BinarySearchFunc(best, scores[i], func(j int, v float64) int { return cmp.Compare(v, scores[j]) })
		best = slices.Insert(best, at, i)
		if len(best) > k {
			best = best[:k]
		}
	}
	return best
}

// rendezvous is the weighted rendezvous score −weight/ln(u), with u the pair's hash mapped into (0,1): each
// satellite is a team's best with probability proportional to its weight.
func rendezvous(satellite, team uint64, w float64) float64 {
	u := (float64(mix(satellite^team)>>11) + 0.5) / (1 << 53)
	return -w / math.Log(u)
}

// idHash hashes an id with a fixed function, so every control-plane replica computes the same placement.
func idHash(id [16]byte) uint64 {
	return mix(binary.LittleEndian.Uint64(id[:8]) ^ mix(binary.LittleEndian.Uint64(id[8:])))
}

// mix is SplitMix64's finaliser: a fixed, well-spread 64-bit mixing function.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

func weight(s Satellite) float64 {
	if s.Weight == 0 {
		return 100
	}
	return float64(s.Weight)
}

func load(t Team) uint32 { return max(t.Load, 1) }

func replicas(t Team) int {
	if t.Replicas <= 0 {
		return DefaultReplicas
	}
	return t.Replicas
}
