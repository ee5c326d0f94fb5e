package gateway

import (
	"regexp"
	"slices"
	"testing"
)

var validName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

func TestAssignNames(t *testing.T) {
	t.Parallel()
	cands := []nameCandidate{
		{prefix: "fs", name: "read_file", instanceID: "i2"},
		{prefix: "fs", name: "read.file", instanceID: "i1"},
		{prefix: "fs", name: "read_file", instanceID: "i1"},
	}
	names := assignNames(cands)
	if len(names) != 3 {
		t.Fatal(names)
	}
	// "fs__read.file" sorts before "fs__read_file", so it keeps the plain name.
	if names[1] != "fs__read_file" {
		t.Errorf("names = %v", names)
	}
	seen := map[string]bool{}
	for _, n := range names {
		if seen[n] || !validName.MatchString(n) {
			t.Errorf("names = %v: duplicate or invalid %q", names, n)
		}
		seen[n] = true
	}
	// The order of the input does not matter.
	rev := slices.Clone(cands)
	slices.Reverse(rev)
	again := assignNames(rev)
	slices.Reverse(again)
	if !slices.Equal(names, again) {
		t.Errorf("names depend on input order: %v vs %v", names, again)
	}
}
