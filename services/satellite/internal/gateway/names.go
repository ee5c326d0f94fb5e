package gateway

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strconv"
	"strings"
)

// MaxNameLength is the longest name the gateway gives a tool or prompt; several MCP clients refuse
// longer ones.
const MaxNameLength = 64

// hashLength is how many hex digits of a hash end a shortened or disambiguated name.
const hashLength = 8

// separator joins a server slug and a downstream name.
const separator = "__"

// nameCandidate is a downstream feature that needs a public name.
type nameCandidate struct {
	prefix     string
	name       string
	instanceID string
}

func (c nameCandidate) raw() string { return prefixed(c.prefix, c.name) }

// prefixed joins prefix and name, or returns name alone when there is no prefix.
func prefixed(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + separator + name
}

// sanitize replaces every character outside [A-Za-z0-9_-] by "_".
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '-':
			return r
		}
		return '_'
	}, s)
}

func shortHash(parts ...string) string {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(h[:])[:hashLength]
}

// withSuffix cuts name so that "_" and suffix fit in MaxNameLength, and appends them.
func withSuffix(name, suffix string) string {
	keep := MaxNameLength - 1 - len(suffix)
	if len(name) > keep {
		name = name[:keep]
	}
	return name + "_" + suffix
}

// PublicName is the name under which the gateway lists downstream feature name of an instance with the
// given prefix (empty for none), when no other feature competes for it.
func PublicName(prefix, name string) string {
	raw := prefixed(prefix, name)
	s := sanitize(raw)
	if len(s) <= MaxNameLength {
		return s
	}
	return withSuffix(s, shortHash(raw))
}

// assignNames gives each candidate a distinct public name, deterministically: candidates are taken in
// (raw name, instance id) order, and one whose PublicName is taken gets a suffix hashed from its
// instance id and raw name instead. The result is indexed like cands.
func assignNames(cands []nameCandidate) []string {
	order := make([]int, len(cands))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		return cmp.Or(cmp.Compare(cands[a].raw(), cands[b].raw()), cmp.Compare(cands[a].instanceID, cands[b].instanceID))
	})
	names := make([]string, len(cands))
	taken := make(map[string]bool, len(cands))
	for _, i := range order {
		c := cands[i]
		name := PublicName(c.prefix, c.name)
		for n := 0; taken[name]; n++ {
			// The counter only matters if two hashes collide too.
			salt := c.instanceID
			if n > 0 {
				salt += "#" + strconv.Itoa(n)
			}
			name = withSuffix(sanitize(c.raw()), shortHash(salt, c.raw()))
		}
		taken[name] = true
		names[i] = name
	}
	return names
}
