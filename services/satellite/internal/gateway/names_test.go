package gateway

import (
	"regexp"
	"slices"
	"strings"
	"testing"
)

var validName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

func TestPublicName(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 80)
	for _, tc := range []struct {
		prefix, name, want string
	}{
		{"github", "create_issue", "github__create_issue"},
		{"fs", "read.file", "fs__read_file"},
		{"fs", "naïve tool/v2", "fs__na_ve_tool_v2"},
		{"srv", long, "srv__" + strings.Repeat("x", 50) + "_" + shortHash("srv__"+long)},
		{"", "create_issue", "create_issue"},
		{"", long, strings.Repeat("x", 55) + "_" + shortHash(long)},
	} {
		got := PublicName(tc.prefix, tc.name)
		if got != tc.want {
			t.Errorf("PublicName(%q, %q) = %q, want %q", tc.prefix, tc.name, got, tc.want)
		}
		if !validName.MatchString(got) {
			t.Errorf("PublicName(%q, %q) = %q is not a valid name", tc.prefix, tc.name, got)
		}
	}
	a, b := PublicName("srv", long+"a"), PublicName("srv", long+"b")
	if a == b || len(a) != MaxNameLength || a != PublicName("srv", long+"a") {
		t.Errorf("truncated names %q and %q must be distinct, stable and 64 long", a, b)
	}
}

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
