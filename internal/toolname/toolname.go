// Package toolname gives the names under which a team endpoint lists its servers' tools and prompts:
// the installation's prefix and the server's name joined by "__", cut to what MCP clients accept. The
// satellite lists tools under these names and the control plane shows them, so both use this package.
package toolname

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// MaxLength is the longest public name; several MCP clients refuse longer ones.
const MaxLength = 64

// hashLength is how many hex digits of a hash end a shortened or disambiguated name.
const hashLength = 8

// separator joins a prefix and a downstream name.
const separator = "__"

// Join joins prefix and name, or returns name alone when there is no prefix.
func Join(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + separator + name
}

// Public is the name under which a downstream feature name of an instance with the given prefix (empty
// for none) is listed, when no other feature competes for it: characters outside [A-Za-z0-9_-] become
// "_", and a name longer than MaxLength is cut and ends in a hash of the whole.
func Public(prefix, name string) string {
	raw := Join(prefix, name)
	s := sanitize(raw)
	if len(s) <= MaxLength {
		return s
	}
	return withSuffix(s, shortHash(raw))
}

// Disambiguated is the public name of raw, a joined name whose Public name another feature took: cut to
// fit, ending in a hash of salt and raw.
func Disambiguated(raw, salt string) string {
	return withSuffix(sanitize(raw), shortHash(salt, raw))
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

// withSuffix cuts name so that "_" and suffix fit in MaxLength, and appends them.
func withSuffix(name, suffix string) string {
	keep := MaxLength - 1 - len(suffix)
	if len(name) > keep {
		name = name[:keep]
	}
	return name + "_" + suffix
}
