package command_test

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/services/controlplane/internal/command"
)

// withAction returns a Command carrying an empty message of the action field f.
func withAction(f protoreflect.FieldDescriptor) *satellitev1.Command {
	cmd := &satellitev1.Command{}
	m := cmd.ProtoReflect()
	m.Set(f, protoreflect.ValueOfMessage(m.NewField(f).Message()))
	return cmd
}

var update = flag.Bool("update", false, "rewrite golden files")

// TestPolicyGolden writes the whole policy table to testdata/policy.golden, so that every change of a
// priority or lifetime shows in review. Regenerate with -update.
func TestPolicyGolden(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	row := func(name string, cmd *satellitev1.Command) {
		p, ok := command.PolicyFor(cmd)
		if !ok {
			fmt.Fprintf(&b, "%-48s no policy\n", name)
			return
		}
		fmt.Fprintf(&b, "%-48s %-28s %v\n", name, p.Priority, p.TTL)
	}
	fields := (&satellitev1.Command{}).ProtoReflect().Descriptor().Oneofs().ByName("action").Fields()
	for i := range fields.Len() {
		f := fields.Get(i)
		if f.Name() != "configure" {
			row(string(f.Name()), withAction(f))
			continue
		}
		events := satellitev1.ConfigureEvent(0).Descriptor().Values()
		for j := 1; j < events.Len(); j++ {
			event := satellitev1.ConfigureEvent(events.Get(j).Number())
			row("configure "+string(events.Get(j).Name()), &satellitev1.Command{
				Action: &satellitev1.Command_Configure{Configure: &satellitev1.ConfigureAction{Event: event}},
			})
		}
	}
	path := filepath.Join("testdata", "policy.golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run the test with -update to create it)", err)
	}
	if got := b.String(); got != string(want) {
		t.Errorf("command policies changed; if intended, run with -update and review the diff.\ngot:\n%s\nwant:\n%s", got, want)
	}
}

// TestEveryActionHasAPolicy fails when an action is added to Command without a priority and lifetime, or a
// configure event without its own.
func TestEveryActionHasAPolicy(t *testing.T) {
	t.Parallel()
	fields := (&satellitev1.Command{}).ProtoReflect().Descriptor().Oneofs().ByName("action").Fields()
	for i := range fields.Len() {
		f := fields.Get(i)
		cmd := withAction(f)
		if got := command.KindOf(cmd); got != command.Kind(f.Name()) {
			t.Errorf("KindOf(%s) = %q", f.Name(), got)
		}
		if command.ActionField(command.Kind(f.Name())) != f {
			t.Errorf("ActionField(%s) is not the field", f.Name())
		}
		if f.Name() == "configure" {
			continue
		}
		if p, ok := command.PolicyFor(cmd); !ok || p.Priority == satellitev1.CommandPriority_COMMAND_PRIORITY_UNSPECIFIED || p.TTL <= 0 {
			t.Errorf("%s has policy %+v, %v", f.Name(), p, ok)
		}
	}
	events := satellitev1.ConfigureEvent(0).Descriptor().Values()
	for i := 1; i < events.Len(); i++ {
		event := satellitev1.ConfigureEvent(events.Get(i).Number())
		cmd := &satellitev1.Command{Action: &satellitev1.Command_Configure{Configure: &satellitev1.ConfigureAction{Event: event}}}
		if p, ok := command.PolicyFor(cmd); !ok || p.Priority == satellitev1.CommandPriority_COMMAND_PRIORITY_UNSPECIFIED || p.TTL <= 0 {
			t.Errorf("configure %s has policy %+v, %v", event, p, ok)
		}
	}
}

func TestPolicies(t *testing.T) {
	t.Parallel()
	configure := func(e satellitev1.ConfigureEvent) *satellitev1.Command {
		return &satellitev1.Command{Action: &satellitev1.Command_Configure{Configure: &satellitev1.ConfigureAction{Event: e}}}
	}
	cases := []struct {
		name     string
		cmd      *satellitev1.Command
		priority satellitev1.CommandPriority
		ttl      time.Duration
	}{
		// A user waits for a new installation; a removal frees resources and may wait for a satellite that
		// is briefly away.
		{"created", configure(satellitev1.ConfigureEvent_CONFIGURE_EVENT_INSTALLATION_CREATED), satellitev1.CommandPriority_COMMAND_PRIORITY_IMMEDIATE, 5 * time.Minute},
		{"deleted", configure(satellitev1.ConfigureEvent_CONFIGURE_EVENT_INSTALLATION_DELETED), satellitev1.CommandPriority_COMMAND_PRIORITY_HIGH, 10 * time.Minute},
		{"member removed", configure(satellitev1.ConfigureEvent_CONFIGURE_EVENT_MEMBER_REMOVED), satellitev1.CommandPriority_COMMAND_PRIORITY_HIGH, 10 * time.Minute},
		// Satellites cache introspection for a minute: a revocation matters no longer.
		{"revoke", &satellitev1.Command{Action: &satellitev1.Command_RevokeTokens{RevokeTokens: &satellitev1.RevokeTokensAction{}}},
			satellitev1.CommandPriority_COMMAND_PRIORITY_IMMEDIATE, time.Minute},
		{"health check", &satellitev1.Command{Action: &satellitev1.Command_HealthCheck{HealthCheck: &satellitev1.HealthCheckAction{}}},
			satellitev1.CommandPriority_COMMAND_PRIORITY_LOW, 15 * time.Minute},
		{"update", &satellitev1.Command{Action: &satellitev1.Command_Update{Update: &satellitev1.UpdateAction{}}},
			satellitev1.CommandPriority_COMMAND_PRIORITY_LOW, 30 * time.Minute},
	}
	for _, tc := range cases {
		if p, ok := command.PolicyFor(tc.cmd); !ok || p.Priority != tc.priority || p.TTL != tc.ttl {
			t.Errorf("%s: policy %+v, %v; want %v for %v", tc.name, p, ok, tc.priority, tc.ttl)
		}
	}
	if p, ok := command.PolicyFor(&satellitev1.Command{}); ok {
		t.Errorf("a command without an action has policy %+v", p)
	}
	if p, ok := command.PolicyFor(configure(satellitev1.ConfigureEvent_CONFIGURE_EVENT_UNSPECIFIED)); ok {
		t.Errorf("a configure command without an event has policy %+v", p)
	}
}
