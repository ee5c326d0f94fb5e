// Package toolselect decides which of an MCP server's tools a team endpoint offers a user: the team's allow
// and deny lists, the user's hidden tools, and descriptions the team replaced. The control plane checks and
// shows selections with it and the satellite enforces them with it, so both read patterns the same way.
//
// Patterns match a tool's name on its server with the syntax of path.Match: "*" any run of characters
// other than "/", "?" one such character, "[a-z]" a class, "\\" escapes the next character.
package toolselect

import (
	"fmt"
	"path"
)

// Selection is what decides the tools of one instance.
type Selection struct {
	// Allow, when not empty, offers only the tools that match one of its patterns.
	Allow []string
	// Deny leaves out the tools that match one of its patterns, even allowed ones.
	Deny []string
	// Hidden leaves out the tools that match one of its patterns: the user's own choice.
	Hidden []string
	// Descriptions replace the servers' descriptions, by tool name.
	Descriptions map[string]string
}

// Selected reports whether the team's lists offer the tool name, the user's hidden tools aside.
func (s Selection) Selected(name string) bool {
	return (len(s.Allow) == 0 || matchAny(s.Allow, name)) && !matchAny(s.Deny, name)
}

// IsHidden reports whether the user hid the tool name.
func (s Selection) IsHidden(name string) bool { return matchAny(s.Hidden, name) }

// Offers reports whether the tool name is offered to the user: selected by the team and not hidden.
func (s Selection) Offers(name string) bool { return s.Selected(name) && !s.IsHidden(name) }

// Description is the description clients see of the tool name whose server describes it as server.
func (s Selection) Description(name, server string) string {
	if d, ok := s.Descriptions[name]; ok {
		return d
	}
	return server
}

// matchAny reports whether a pattern matches name. A malformed pattern matches nothing; CheckPatterns
// keeps them from being stored.
func matchAny(patterns []string, name string) bool {
	for _, p := range patterns {
		if ok, _ := path.Match(p, name); ok {
			return true
		}
	}
	return false
}

// CheckPatterns returns an error naming the first malformed pattern of field, such as
// `deny[2] "[a-": syntax error in pattern`.
func CheckPatterns(field string, patterns []string) error {
	for i, p := range patterns {
		if _, err := path.Match(p, ""); err != nil {
			return fmt.Errorf("%s[%d] %q: %w", field, i, p, err)
		}
	}
	return nil
}
