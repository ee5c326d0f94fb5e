package policy

import (
	"encoding/json"
	"strconv"
)

// Roots of redaction paths.
const (
	RootArgs   = "args"
	RootResult = "result"
)

// Redact returns body, the JSON of a call's arguments (root RootArgs) or result (RootResult), with the
// fields the policies' paths name under root and every match of their patterns in its strings replaced by
// "[redacted]". A body that is not JSON has only the patterns applied. With nothing to redact, body is
// returned as it is.
func Redact(policies []*Policy, root string, body []byte) []byte {
	if len(policies) == 0 || len(body) == 0 {
		return body
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		s := string(body)
		for _, p := range policies {
			for _, re := range p.patterns {
				s = re.ReplaceAllLiteralString(s, redactedPlaceholder)
			}
		}
		return []byte(s)
	}
	for _, p := range policies {
		for _, pt := range p.paths {
			if pt.root == root {
				v = redactPath(v, pt.segments)
			}
		}
		if len(p.patterns) > 0 {
			v = redactPatterns(v, p)
		}
	}
	out, err := json.Marshal(v)
	if err != nil {
		// Decoded JSON always encodes again; should it not, log nothing rather than the original.
		return []byte(strconv.Quote(redactedPlaceholder))
	}
	return out
}

// redactPath replaces what segments name in v.
func redactPath(v any, segments []string) any {
	if len(segments) == 0 {
		return redactedPlaceholder
	}
	seg, rest := segments[0], segments[1:]
	if seg == "**" {
		// Here, or at any depth below.
		v = redactPath(v, rest)
		return eachChild(v, func(c any) any { return redactPath(c, segments) })
	}
	switch x := v.(type) {
	case map[string]any:
		if seg == "*" {
			for k, c := range x {
				x[k] = redactPath(c, rest)
			}
		} else if c, ok := x[seg]; ok {
			x[seg] = redactPath(c, rest)
		}
	case []any:
		if seg == "*" {
			for i, c := range x {
				x[i] = redactPath(c, rest)
			}
		} else if i, err := strconv.Atoi(seg); err == nil && i >= 0 && i < len(x) {
			x[i] = redactPath(x[i], rest)
		}
	}
	return v
}

func eachChild(v any, f func(any) any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, c := range x {
			x[k] = f(c)
		}
	case []any:
		for i, c := range x {
			x[i] = f(c)
		}
	}
	return v
}

// redactPatterns replaces the matches of p's patterns in every string of v.
func redactPatterns(v any, p *Policy) any {
	if s, ok := v.(string); ok {
		for _, re := range p.patterns {
			s = re.ReplaceAllLiteralString(s, redactedPlaceholder)
		}
		return s
	}
	return eachChild(v, func(c any) any { return redactPatterns(c, p) })
}
