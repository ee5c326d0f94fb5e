package events

import (
	"slices"
	"testing"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
)

func TestCompact(t *testing.T) {
	t.Parallel()
	ev := &satellitev1.Event{Id: "e"}
	ops := []op{
		{seq: 1},         // removal of an event committed before: kept
		{seq: 2, ev: ev}, // written and removed, never on disk: both go
		{seq: 3, ev: ev}, // still buffered: kept
		{seq: 2},
		{seq: 4, ev: ev},
		{seq: 4},
	}
	got, removed := compact(ops)
	want := []op{{seq: 1}, {seq: 3, ev: ev}}
	if !slices.Equal(got, want) || removed != 2 {
		t.Errorf("compact = %v, %d; want %v, 2", got, removed, want)
	}
}
