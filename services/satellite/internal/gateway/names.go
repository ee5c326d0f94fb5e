package gateway

import (
	"cmp"
	"slices"
	"strconv"

	"github.com/orrery/orrery/internal/toolname"
)

// MaxNameLength is the longest name the gateway gives a tool or prompt; several MCP clients refuse
// longer ones.
const MaxNameLength = toolname.MaxLength

// nameCandidate is a downstream feature that needs a public name.
type nameCandidate struct {
	prefix     string
	name       string
	instanceID string
}

func (c nameCandidate) raw() string { return toolname.Join(c.prefix, c.name) }

// PublicName is the name under which the gateway lists downstream feature name of an instance with the
// given prefix (empty for none), when no other feature competes for it.
func PublicName(prefix, name string) string { return toolname.Public(prefix, name) }

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
			name = toolname.Disambiguated(c.raw(), salt)
		}
		taken[name] = true
		names[i] = name
	}
	return names
}
