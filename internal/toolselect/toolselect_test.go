package toolselect

import (
	"errors"
	"path"
	"strings"
	"testing"
)

func TestSelection(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name                    string
		sel                     Selection
		tool                    string
		selected, hidden, offer bool
	}{
		{"empty offers all", Selection{}, "echo", true, false, true},
		{"allow by glob", Selection{Allow: []string{"get-*"}}, "get-sum", true, false, true},
		{"allow leaves out the rest", Selection{Allow: []string{"get-*"}}, "echo", false, false, false},
		{"deny wins over allow", Selection{Allow: []string{"*"}, Deny: []string{"echo"}}, "echo", false, false, false},
		{"deny by class", Selection{Deny: []string{"[a-f]*"}}, "echo", false, false, false},
		{"hidden by the user", Selection{Hidden: []string{"ec?o"}}, "echo", true, true, false},
		{"plain name is exact", Selection{Deny: []string{"echo"}}, "echoes", true, false, true},
		{"malformed matches nothing", Selection{Deny: []string{"[a-"}}, "a", true, false, true},
	} {
		if got := tc.sel.Selected(tc.tool); got != tc.selected {
			t.Errorf("%s: Selected(%q) = %t", tc.name, tc.tool, got)
		}
		if got := tc.sel.IsHidden(tc.tool); got != tc.hidden {
			t.Errorf("%s: IsHidden(%q) = %t", tc.name, tc.tool, got)
		}
		if got := tc.sel.Offers(tc.tool); got != tc.offer {
			t.Errorf("%s: Offers(%q) = %t", tc.name, tc.tool, got)
		}
	}
	s := Selection{Descriptions: map[string]string{"echo": "Repeat a message."}}
	if got := s.Description("echo", "Echoes back"); got != "Repeat a message." {
		t.Errorf("override = %q", got)
	}
	if got := s.Description("add", "Adds"); got != "Adds" {
		t.Errorf("server description = %q", got)
	}
}

func TestCheckPatterns(t *testing.T) {
	t.Parallel()
	if err := CheckPatterns("allow", []string{"echo", "get-*", `a\*`, "[a-z]?"}); err != nil {
		t.Errorf("valid patterns refused: %v", err)
	}
	err := CheckPatterns("deny", []string{"ok", "[a-"})
	if !errors.Is(err, path.ErrBadPattern) || !strings.Contains(err.Error(), `deny[1] "[a-"`) {
		t.Errorf("err = %v, want the field, index and pattern", err)
	}
}
