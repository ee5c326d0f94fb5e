package policy

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/interpreter"
)

// Call is one tool call as policies see it.
type Call struct {
	UserID, UserEmail string
	// UserRole is "admin" or "member".
	UserRole             string
	TeamID, TeamSlug     string
	ServerSlug           string
	InstallationID       string
	ToolName, PublicName string
	// Args is the call's arguments as the client sent them; decoded only if an expression reads args.
	Args json.RawMessage

	// act holds the variables once bound; a Call is evaluated by one goroutine at a time.
	act *activation
}

// Set is the compiled policies that apply to one team: its own and the global ones. It is immutable and
// safe for concurrent use.
type Set struct {
	gates   []*Policy // allow and deny, global first, then by name
	redacts []*Policy
	limits  []*Policy
	// broken are policies that did not compile here; every call is refused while one of them is an
	// allow or deny policy, since what it should enforce is unknown.
	broken []brokenPolicy
}

type brokenPolicy struct {
	def Definition
	err error
}

// Len is how many policies the set holds, compiled or not.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return len(s.gates) + len(s.redacts) + len(s.limits) + len(s.broken)
}

// NewSet compiles defs into the set of teamID: the definitions of other teams are left out, whatever
// the caller passes. It returns the errors of the definitions that did not compile, which stay in the set
// as refusing every call when they are allow or deny policies.
func NewSet(teamID string, defs []Definition) (*Set, []error) {
	b, errs := NewBook(defs)
	return b.Set(teamID), errs
}

// Book is the compiled policies of every team of a configuration, each compiled once.
type Book struct {
	teams  map[string]*Set
	global *Set
}

// NewBook compiles defs, global and of any team. It returns the errors of the definitions that did not
// compile, which stay in the book as refusing every call of their scope when they are allow or deny
// policies.
func NewBook(defs []Definition) (*Book, []error) {
	b := &Book{teams: map[string]*Set{}, global: &Set{}}
	var errs []error
	for _, d := range defs {
		s := b.global
		if d.TeamID != "" {
			if s = b.teams[d.TeamID]; s == nil {
				s = &Set{}
				b.teams[d.TeamID] = s
			}
		}
		p, err := Compile(d)
		if err != nil {
			errs = append(errs, fmt.Errorf("policy %q of team %q: %w", d.Name, d.TeamID, err))
			if d.Kind == KindAllow || d.Kind == KindDeny || d.Kind == "" {
				s.broken = append(s.broken, brokenPolicy{def: d, err: err})
			}
			continue
		}
		s.add(p)
	}
	// Each team's set holds the global policies too, so a call walks one list.
	for _, s := range b.teams {
		s.merge(b.global)
	}
	b.global.sort()
	return b, errs
}

// Set returns the policies that apply to teamID: its own and the global ones. A nil Book has none.
func (b *Book) Set(teamID string) *Set {
	if b == nil {
		return nil
	}
	if s, ok := b.teams[teamID]; ok {
		return s
	}
	return b.global
}

func (s *Set) add(p *Policy) {
	switch p.Kind {
	case KindAllow, KindDeny:
		s.gates = append(s.gates, p)
	case KindRedact:
		s.redacts = append(s.redacts, p)
	case KindRateLimit:
		s.limits = append(s.limits, p)
	}
}

func (s *Set) merge(global *Set) {
	s.gates = append(s.gates, global.gates...)
	s.redacts = append(s.redacts, global.redacts...)
	s.limits = append(s.limits, global.limits...)
	s.broken = append(s.broken, global.broken...)
	s.sort()
}

func (s *Set) sort() {
	order := func(a, b *Policy) int {
		// Global policies first: an organisation's rule is the one a refused caller should hear about.
		return cmp.Or(cmp.Compare(min(len(a.TeamID), 1), min(len(b.TeamID), 1)), cmp.Compare(a.Name, b.Name))
	}
	slices.SortFunc(s.gates, order)
	slices.SortFunc(s.redacts, order)
	slices.SortFunc(s.limits, order)
	slices.SortFunc(s.broken, func(a, b brokenPolicy) int {
		return cmp.Or(cmp.Compare(min(len(a.def.TeamID), 1), min(len(b.def.TeamID), 1)), cmp.Compare(a.def.Name, b.def.Name))
	})
}

// Denial says why a call is refused.
type Denial struct {
	// Policy is the name of the policy that refused the call.
	Policy string
	// Global is true for a global policy.
	Global bool
	// Reason is "denied", "not_allowed", "rate_limited" or "error".
	Reason string
	// Detail is the evaluation error of reason "error"; it names no data of the call.
	Detail string
}

// Reasons of a Denial.
const (
	ReasonDenied      = "denied"
	ReasonNotAllowed  = "not_allowed"
	ReasonRateLimited = "rate_limited"
	ReasonError       = "error"
)

// Message is what the caller is told.
func (d *Denial) Message() string {
	switch d.Reason {
	case ReasonRateLimited:
		return fmt.Sprintf("call refused: rate limit of policy %q reached; try again in a minute", d.Policy)
	case ReasonError:
		return fmt.Sprintf("call refused: policy %q could not be evaluated (%s)", d.Policy, d.Detail)
	}
	return fmt.Sprintf("call refused by policy %q", d.Policy)
}

// Check applies the allow, deny and rate_limit policies to call, in that order, so that a refused call
// does not use up a rate. It returns nil when the call may go ahead. limiter keeps the rates; nil limits
// nothing.
func (s *Set) Check(ctx context.Context, call *Call, limiter *Limiter) *Denial {
	if s == nil {
		return nil
	}
	if len(s.broken) > 0 {
		b := s.broken[0]
		return &Denial{Policy: b.def.Name, Global: b.def.TeamID == "", Reason: ReasonError,
			Detail: "it does not compile on this satellite"}
	}
	act := newActivation(call)
	for _, p := range s.gates {
		ok, err := p.eval(ctx, act)
		switch {
		case err != nil:
			return &Denial{Policy: p.Name, Global: p.TeamID == "", Reason: ReasonError, Detail: err.Error()}
		case p.Kind == KindDeny && ok:
			return &Denial{Policy: p.Name, Global: p.TeamID == "", Reason: ReasonDenied}
		case p.Kind == KindAllow && !ok:
			return &Denial{Policy: p.Name, Global: p.TeamID == "", Reason: ReasonNotAllowed}
		}
	}
	var limited []*Policy
	for _, p := range s.limits {
		ok, err := p.eval(ctx, act)
		if err != nil {
			return &Denial{Policy: p.Name, Global: p.TeamID == "", Reason: ReasonError, Detail: err.Error()}
		}
		if ok {
			limited = append(limited, p)
		}
	}
	return limiter.take(call, limited)
}

// Redactions returns the redact policies whose condition call meets, for Redact. A condition that fails
// counts as met: hiding too much from a log is the safe mistake.
func (s *Set) Redactions(ctx context.Context, call *Call) []*Policy {
	if s == nil || len(s.redacts) == 0 {
		return nil
	}
	act := newActivation(call)
	var out []*Policy
	for _, p := range s.redacts {
		if ok, err := p.eval(ctx, act); ok || err != nil {
			out = append(out, p)
		}
	}
	return out
}

func (p *Policy) eval(ctx context.Context, act *activation) (bool, error) {
	out, _, err := p.program.Eval(act)
	if err != nil {
		return false, err
	}
	b, ok := out.(types.Bool)
	if !ok {
		return false, fmt.Errorf("expression gave %s, not a bool", out.Type())
	}
	return bool(b), nil
}

// activation binds a call's variables, decoding its arguments only when an expression reads them. It
// is kept on the Call, so that Check and Redactions share one decoding.
type activation struct {
	call                     *Call
	user, team, server, tool map[string]string
	args                     map[string]any
	argsDecoded              bool
}

func newActivation(c *Call) *activation {
	if c.act != nil {
		return c.act
	}
	c.act = &activation{
		call:   c,
		user:   map[string]string{"id": c.UserID, "email": c.UserEmail, "role": c.UserRole},
		team:   map[string]string{"id": c.TeamID, "slug": c.TeamSlug},
		server: map[string]string{"slug": c.ServerSlug, "installation_id": c.InstallationID},
		tool:   map[string]string{"name": c.ToolName, "public_name": c.PublicName},
	}
	return c.act
}

// ResolveName implements interpreter.Activation.
func (a *activation) ResolveName(name string) (any, bool) {
	switch name {
	case "user":
		return a.user, true
	case "team":
		return a.team, true
	case "server":
		return a.server, true
	case "tool":
		return a.tool, true
	case "args":
		if !a.argsDecoded {
			a.argsDecoded = true
			// Arguments that are not a JSON object (the SDK refuses those before a tool sees them) read
			// as none.
			if len(a.call.Args) == 0 || json.Unmarshal(a.call.Args, &a.args) != nil || a.args == nil {
				a.args = map[string]any{}
			}
		}
		return a.args, true
	}
	return nil, false
}

// Parent implements interpreter.Activation.
func (a *activation) Parent() interpreter.Activation { return nil }
