// Package policy compiles and evaluates the policies that satellites apply to every tool call: CEL
// expressions (cel.dev/cel-go) set globally or per team. The control plane compiles a policy when it is
// saved, so a bad expression is refused with its position; satellites compile the policies of their
// configuration once when it arrives and evaluate the kept programs on every call.
//
// An expression sees these variables:
//
//	user.id, user.email, user.role      the caller; role is "admin" or "member" of the team
//	team.id, team.slug                  the team whose endpoint is called
//	server.slug, server.installation_id the installation the tool belongs to (its template's slug)
//	tool.name, tool.public_name         the tool's own name, and the prefixed name the client called
//	args                                the call's arguments, a map (empty when there are none)
//
// Kinds:
//
//	allow       the call goes ahead only if the expression is true
//	deny        the call is refused if the expression is true
//	redact      where the expression is true, the request log of the call has the named argument and
//	            result fields and every match of the patterns replaced by "[redacted]"
//	rate_limit  where the expression is true, calls are limited per minute per user, or per user and tool
//
// An expression that fails while it is evaluated (a missing key, the cost limit) counts against the
// call for allow and deny policies: a policy that cannot be checked does not let a call through. Write
// has(args.repo) before args.repo where a tool may lack the argument.
package policy

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/checker"
)

// Kind says what a policy does.
type Kind string

// Kinds of policies.
const (
	KindAllow     Kind = "allow"
	KindDeny      Kind = "deny"
	KindRedact    Kind = "redact"
	KindRateLimit Kind = "rate_limit"
)

// RateKey says what a rate_limit policy counts calls of.
type RateKey string

// Keys of rate_limit policies.
const (
	// RatePerUser counts each user's calls that match the policy together.
	RatePerUser RateKey = "user"
	// RatePerUserAndTool counts each user's calls of each tool apart.
	RatePerUserAndTool RateKey = "user_tool"
)

// Bounds of a policy, the same at the control plane, which refuses what exceeds them, and at the
// satellite, which never trusts its configuration to be within them.
const (
	MaxNameBytes       = 63
	MaxExpressionBytes = 2048
	// MaxPerScope is how many policies the global scope, and each team, may hold.
	MaxPerScope         = 50
	MaxRedactPaths      = 32
	MaxRedactPatterns   = 16
	MaxPathBytes        = 256
	MaxPatternBytes     = 256
	MaxCallsPerMinute   = 100_000
	maxRecursionDepth   = 32
	redactedPlaceholder = "[redacted]"
)

// CostLimit bounds the work of one evaluation in CEL's cost units (about one per operation, more per
// element of a list or string handled), so a hostile expression over large arguments ends with an error
// rather than burn the satellite's CPU. It applies to expressions whose worst case CEL cannot bound below
// maxUntrackedCost when it compiles them (comprehensions such as all() or exists() over arguments);
// counting the cost of every step doubles the price of an evaluation, so the others run without it.
const CostLimit = 10_000

// maxUntrackedCost is the worst-case cost, estimated at compile time, up to which an expression runs
// without counting: about a millisecond, such as a string function over a 4 MiB argument.
const maxUntrackedCost = 1_000_000

// maxCallBytes bounds, for the cost estimate, every size CEL cannot know: nothing in a call is larger than
// the request body that carried it (4 MiB by default at the gateway).
const maxCallBytes = 4 << 20

// callSizes estimates every unknown size as at most maxCallBytes.
type callSizes struct{}

func (callSizes) EstimateSize(checker.AstNode) *checker.SizeEstimate {
	return &checker.SizeEstimate{Min: 0, Max: maxCallBytes}
}

func (callSizes) EstimateCallCost(string, string, *checker.AstNode, []checker.AstNode) *checker.CallEstimate {
	return nil
}

// Definition is a policy as stored and delivered to satellites.
type Definition struct {
	ID string
	// TeamID is empty for a global policy.
	TeamID     string
	Name       string
	Kind       Kind
	Expression string
	// RedactPaths and RedactPatterns belong to redact policies: JSON paths rooted at args or result,
	// such as "args.password", "$.result.content[*].text" or "args..token", and RE2 patterns.
	RedactPaths    []string
	RedactPatterns []string
	// CallsPerMinute and RateKey belong to rate_limit policies.
	CallsPerMinute int
	RateKey        RateKey
}

// ErrInvalid reports a definition outside the rules; errors of Validate and Compile wrap it.
var ErrInvalid = errors.New("invalid policy")

// ExpressionError is a CEL expression that does not compile, with the position of its first error.
type ExpressionError struct {
	// Line and Column are 1-based.
	Line, Column int
	Message      string
	// Detail is CEL's full report, every error with a marked copy of its line.
	Detail string
}

func (e *ExpressionError) Error() string {
	return fmt.Sprintf("expression does not compile: line %d, column %d: %s", e.Line, e.Column, e.Message)
}

// Unwrap makes an ExpressionError an ErrInvalid.
func (e *ExpressionError) Unwrap() error { return ErrInvalid }

var namePattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9_-]*[a-z0-9])?$`)

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}

// validateShape checks everything but the expression's meaning.
func validateShape(d Definition) error {
	if len(d.Name) > MaxNameBytes || !namePattern.MatchString(d.Name) {
		return invalid("name must be 1 to %d lowercase letters, digits, '-' or '_', starting and ending with a letter or digit", MaxNameBytes)
	}
	if d.Expression == "" || len(d.Expression) > MaxExpressionBytes || !utf8.ValidString(d.Expression) {
		return invalid("expression must be 1 to %d bytes of UTF-8", MaxExpressionBytes)
	}
	switch d.Kind {
	case KindAllow, KindDeny:
	case KindRedact:
		if len(d.RedactPaths)+len(d.RedactPatterns) == 0 {
			return invalid("a redact policy needs at least one path or pattern")
		}
	case KindRateLimit:
		if d.CallsPerMinute < 1 || d.CallsPerMinute > MaxCallsPerMinute {
			return invalid("calls per minute must be 1 to %d", MaxCallsPerMinute)
		}
		if d.RateKey != RatePerUser && d.RateKey != RatePerUserAndTool {
			return invalid("rate key must be %q or %q", RatePerUser, RatePerUserAndTool)
		}
	default:
		return invalid("kind must be allow, deny, redact or rate_limit")
	}
	if d.Kind != KindRedact && len(d.RedactPaths)+len(d.RedactPatterns) > 0 {
		return invalid("only redact policies have paths and patterns")
	}
	if d.Kind != KindRateLimit && (d.CallsPerMinute != 0 || d.RateKey != "") {
		return invalid("only rate_limit policies have a rate")
	}
	if len(d.RedactPaths) > MaxRedactPaths || len(d.RedactPatterns) > MaxRedactPatterns {
		return invalid("at most %d paths and %d patterns", MaxRedactPaths, MaxRedactPatterns)
	}
	return nil
}

// Policy is a compiled policy, ready to evaluate.
type Policy struct {
	Definition
	program cel.Program
	// costLimited says whether evaluations count their cost against CostLimit.
	costLimited bool
	paths       []path
	patterns    []*regexp.Regexp
}

// Compile checks d and compiles its expression, which must yield a bool. An expression that does not
// compile is an *ExpressionError.
func Compile(d Definition) (*Policy, error) {
	if err := validateShape(d); err != nil {
		return nil, err
	}
	p := &Policy{Definition: d}
	for _, raw := range d.RedactPaths {
		pt, err := parsePath(raw)
		if err != nil {
			return nil, err
		}
		p.paths = append(p.paths, pt)
	}
	for _, raw := range d.RedactPatterns {
		if raw == "" || len(raw) > MaxPatternBytes {
			return nil, invalid("a pattern must be 1 to %d bytes", MaxPatternBytes)
		}
		re, err := regexp.Compile(raw)
		if err != nil {
			return nil, invalid("pattern %q: %v", raw, err)
		}
		p.patterns = append(p.patterns, re)
	}
	ast, issues := env.Compile(d.Expression)
	if err := issues.Err(); err != nil {
		first := issues.Errors()[0]
		return nil, &ExpressionError{Line: first.Location.Line(), Column: first.Location.Column() + 1,
			Message: first.Message, Detail: err.Error()}
	}
	if !ast.OutputType().IsExactType(cel.BoolType) {
		return nil, &ExpressionError{Line: 1, Column: 1,
			Message: fmt.Sprintf("expression must be a bool, not %s", ast.OutputType())}
	}
	opts := []cel.ProgramOption{cel.EvalOptions(cel.OptOptimize)}
	if est, err := env.EstimateCost(ast, callSizes{}); err != nil || est.Max > maxUntrackedCost {
		opts = append(opts, cel.CostLimit(CostLimit))
		p.costLimited = true
	}
	prg, err := env.Program(ast, opts...)
	if err != nil {
		return nil, invalid("expression: %v", err)
	}
	p.program = prg
	return p, nil
}

// Validate reports whether d would compile, with the error Compile would give.
func Validate(d Definition) error {
	_, err := Compile(d)
	return err
}

// env declares the variables of every expression. Maps of strings keep the common fields typed, so a
// misspelt field such as user.rol is still only found at evaluation; args is dynamic like JSON.
var env = mustEnv()

func mustEnv() *cel.Env {
	strings := cel.MapType(cel.StringType, cel.StringType)
	e, err := cel.NewEnv(
		cel.Variable("user", strings),
		cel.Variable("team", strings),
		cel.Variable("server", strings),
		cel.Variable("tool", strings),
		cel.Variable("args", cel.MapType(cel.StringType, cel.DynType)),
		cel.ParserExpressionSizeLimit(MaxExpressionBytes),
		cel.ParserRecursionLimit(maxRecursionDepth),
		cel.CrossTypeNumericComparisons(true),
	)
	if err != nil {
		// The declarations above are constant; a failure is a programming error caught by every test.
		panic(fmt.Sprintf("policy: CEL environment: %v", err))
	}
	return e
}

// path is a parsed redaction path: a root ("args" or "result") and segments, where "*" matches every key
// or element and "**" any number of levels.
type path struct {
	root     string
	segments []string
}

// parsePath accepts "args.a.b", "$.args.a[*].b", "result.content[0].text" and "args..token".
func parsePath(raw string) (path, error) {
	if raw == "" || len(raw) > MaxPathBytes {
		return path{}, invalid("a path must be 1 to %d bytes", MaxPathBytes)
	}
	s := strings.TrimPrefix(raw, "$.")
	s = strings.ReplaceAll(s, "[*]", ".*")
	s = strings.ReplaceAll(s, "..", ".**.")
	s = strings.NewReplacer("[", ".", "]", "").Replace(s)
	parts := strings.Split(s, ".")
	if parts[0] != "args" && parts[0] != "result" {
		return path{}, invalid("path %q must start with args or result", raw)
	}
	if len(parts) < 2 {
		return path{}, invalid("path %q names no field", raw)
	}
	stars := 0
	for _, p := range parts[1:] {
		if p == "" {
			return path{}, invalid("path %q has an empty segment", raw)
		}
		if p == "**" {
			stars++
		}
	}
	// Each ** walks the whole subtree for the rest of the path: two would make redaction's work grow with
	// the arguments' depth to a power.
	if stars > 1 {
		return path{}, invalid("path %q may use .. or ** once", raw)
	}
	return path{root: parts[0], segments: parts[1:]}, nil
}
