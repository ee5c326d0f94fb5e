// Package command holds the control plane's one policy for satellite commands: the delivery priority and
// lifetime of each action a command carries. Everything that enqueues commands takes both from here.
package command

import (
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/internal/action"
)

// Kind names a command's action as the field of Command's action oneof does: "configure", "restart".
type Kind string

// The actions a command can carry.
const (
	Configure    Kind = "configure"
	Spawn        Kind = "spawn"
	Kill         Kind = "kill"
	Restart      Kind = "restart"
	HealthCheck  Kind = "health_check"
	Recovery     Kind = "recovery"
	RevokeTokens Kind = "revoke_tokens"
	Redeploy     Kind = "redeploy"
	Update       Kind = "update"
)

// KindOf names cmd's action; it is empty when cmd carries none.
func KindOf(cmd *satellitev1.Command) Kind { return Kind(action.Name(cmd)) }

// Policy is how a command is delivered.
type Policy struct {
	// Priority orders delivery: satellites receive higher priorities first.
	Priority satellitev1.CommandPriority
	// TTL is how long the command stays deliverable; an expired command is never delivered.
	TTL time.Duration
}

// key selects a policy: an action, and for configure commands their event.
type key struct {
	kind  Kind
	event satellitev1.ConfigureEvent
}

const (
	immediate = satellitev1.CommandPriority_COMMAND_PRIORITY_IMMEDIATE
	high      = satellitev1.CommandPriority_COMMAND_PRIORITY_HIGH
	normal    = satellitev1.CommandPriority_COMMAND_PRIORITY_NORMAL
	low       = satellitev1.CommandPriority_COMMAND_PRIORITY_LOW
)

// policies is the policy of every action. Work a user waits for is immediate; removals free resources and
// live longer, so a satellite that is briefly away still cleans up; revocations matter only while satellites
// may still hold a cached introspection result (a minute); credential checks are background work that the
// next check period repeats anyway.
var policies = map[key]Policy{
	{Configure, satellitev1.ConfigureEvent_CONFIGURE_EVENT_INSTALLATION_CREATED}: {immediate, 5 * time.Minute},
	{Configure, satellitev1.ConfigureEvent_CONFIGURE_EVENT_INSTALLATION_UPDATED}: {immediate, 5 * time.Minute},
	{Configure, satellitev1.ConfigureEvent_CONFIGURE_EVENT_INSTALLATION_DELETED}: {high, 10 * time.Minute},
	{Configure, satellitev1.ConfigureEvent_CONFIGURE_EVENT_MEMBER_REMOVED}:       {high, 10 * time.Minute},
	// An emergency stop must reach every satellite at once, and one that is away for a while still gets it
	// on its return through the configuration; the command only makes it sooner.
	{Configure, satellitev1.ConfigureEvent_CONFIGURE_EVENT_EMERGENCY_STOP}: {immediate, 10 * time.Minute},
	{kind: Spawn}:        {high, 5 * time.Minute},
	{kind: Kill}:         {high, 10 * time.Minute},
	{kind: Restart}:      {high, 5 * time.Minute},
	{kind: HealthCheck}:  {low, 15 * time.Minute},
	{kind: Recovery}:     {high, 5 * time.Minute},
	{kind: RevokeTokens}: {immediate, time.Minute},
	{kind: Redeploy}:     {normal, 10 * time.Minute},
	{kind: Update}:       {low, 30 * time.Minute},
}

// PolicyFor returns the policy of cmd's action, and false when cmd carries no action the table knows.
func PolicyFor(cmd *satellitev1.Command) (Policy, bool) {
	k := key{kind: KindOf(cmd)}
	if k.kind == Configure {
		k.event = cmd.GetConfigure().GetEvent()
	}
	p, ok := policies[k]
	return p, ok
}

// ActionField is the field of Command's action oneof named kind, or nil for an unknown kind.
func ActionField(kind Kind) protoreflect.FieldDescriptor {
	f := (&satellitev1.Command{}).ProtoReflect().Descriptor().Fields().ByName(protoreflect.Name(kind))
	if f == nil || f.ContainingOneof() == nil {
		return nil
	}
	return f
}
