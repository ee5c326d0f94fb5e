package policy

import (
	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
)

var kinds = map[satellitev1.PolicyKind]Kind{
	satellitev1.PolicyKind_POLICY_KIND_ALLOW:      KindAllow,
	satellitev1.PolicyKind_POLICY_KIND_DENY:       KindDeny,
	satellitev1.PolicyKind_POLICY_KIND_REDACT:     KindRedact,
	satellitev1.PolicyKind_POLICY_KIND_RATE_LIMIT: KindRateLimit,
}

var rateKeys = map[satellitev1.RateLimitKey]RateKey{
	satellitev1.RateLimitKey_RATE_LIMIT_KEY_USER:      RatePerUser,
	satellitev1.RateLimitKey_RATE_LIMIT_KEY_USER_TOOL: RatePerUserAndTool,
}

// KindFromProto is the kind k names; "" for none.
func KindFromProto(k satellitev1.PolicyKind) Kind { return kinds[k] }

// KindToProto is the protobuf enum of k; unspecified for none.
func KindToProto(k Kind) satellitev1.PolicyKind { return keyOf(kinds, k) }

// RateKeyFromProto is the rate key k names; "" for none.
func RateKeyFromProto(k satellitev1.RateLimitKey) RateKey { return rateKeys[k] }

// RateKeyToProto is the protobuf enum of k; unspecified for none.
func RateKeyToProto(k RateKey) satellitev1.RateLimitKey { return keyOf(rateKeys, k) }

// keyOf is the key of v in m, or the zero key (an enum's unspecified value).
func keyOf[K, V comparable](m map[K]V, v V) K {
	for k, mv := range m {
		if mv == v {
			return k
		}
	}
	var zero K
	return zero
}

// FromProto is the definition a satellite's configuration carries.
func FromProto(p *satellitev1.Policy) Definition {
	return Definition{
		ID: p.GetId(), TeamID: p.GetTeamId(), Name: p.GetName(), Kind: KindFromProto(p.GetKind()),
		Expression: p.GetExpression(), RedactPaths: p.GetRedactPaths(), RedactPatterns: p.GetRedactPatterns(),
		CallsPerMinute: int(p.GetCallsPerMinute()), RateKey: RateKeyFromProto(p.GetRateLimitKey()),
	}
}

// ToProto is d as a satellite's configuration carries it.
func ToProto(d Definition) *satellitev1.Policy {
	return &satellitev1.Policy{
		Id: d.ID, TeamId: d.TeamID, Name: d.Name, Kind: KindToProto(d.Kind), Expression: d.Expression,
		RedactPaths: d.RedactPaths, RedactPatterns: d.RedactPatterns, CallsPerMinute: uint32(d.CallsPerMinute),
		RateLimitKey: RateKeyToProto(d.RateKey),
	}
}
