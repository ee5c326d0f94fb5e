package desired_test

import (
	"slices"
	"sync"
	"testing"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/services/satellite/internal/desired"
)

func instance(id, hash string) *satellitev1.Instance {
	return &satellitev1.Instance{Id: id, ContentHash: hash}
}

func TestApplyDiff(t *testing.T) {
	t.Parallel()
	v := desired.New()

	d, err := v.Apply([]*satellitev1.Instance{instance("a", "1"), instance("b", "1"), instance("c", "1")})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(d.Added, []string{"a", "b", "c"}) || len(d.Changed) != 0 || len(d.Removed) != 0 {
		t.Fatalf("first Apply diff = %+v", d)
	}

	d, err = v.Apply([]*satellitev1.Instance{instance("a", "1"), instance("b", "2"), instance("d", "1")})
	if err != nil {
		t.Fatal(err)
	}
	want := desired.Diff{Added: []string{"d"}, Changed: []string{"b"}, Removed: []string{"c"}}
	if !slices.Equal(d.Added, want.Added) || !slices.Equal(d.Changed, want.Changed) || !slices.Equal(d.Removed, want.Removed) {
		t.Fatalf("second Apply diff = %+v, want %+v", d, want)
	}

	snap := v.Snapshot()
	var ids []string
	for _, in := range snap.Instances {
		ids = append(ids, in.GetId())
	}
	if !slices.Equal(ids, []string{"a", "b", "d"}) || snap.Version != 2 {
		t.Fatalf("snapshot = version %d %v", snap.Version, ids)
	}
	if in, ok := v.Get("b"); !ok || in.GetContentHash() != "2" {
		t.Fatalf("Get(b) = %v, %v", in, ok)
	}
}

func TestApplyRefusesMalformed(t *testing.T) {
	t.Parallel()
	v := desired.New()
	if _, err := v.Apply([]*satellitev1.Instance{instance("a", "1")}); err != nil {
		t.Fatal(err)
	}
	for name, list := range map[string][]*satellitev1.Instance{
		"duplicate": {instance("b", "1"), instance("b", "2")},
		"empty id":  {instance("", "1")},
	} {
		if _, err := v.Apply(list); err == nil {
			t.Errorf("%s: Apply succeeded", name)
		}
	}
	if v.Len() != 1 || v.Snapshot().Version != 1 {
		t.Fatalf("a refused Apply changed the view: %+v", v.Snapshot())
	}
}

func TestSubscribe(t *testing.T) {
	t.Parallel()
	v := desired.New()
	changes, stop := v.Subscribe()
	defer stop()

	select {
	case <-changes:
		t.Fatal("notified before any configuration")
	default:
	}

	// An empty first configuration still counts: the runtime learns it must run nothing.
	if _, err := v.Apply(nil); err != nil {
		t.Fatal(err)
	}
	<-changes

	// Two changes coalesce into one notification.
	v.Apply([]*satellitev1.Instance{instance("a", "1")})
	v.Apply([]*satellitev1.Instance{instance("a", "2")})
	<-changes
	select {
	case <-changes:
		t.Fatal("changes did not coalesce")
	default:
	}

	// An Apply that changes nothing does not notify.
	v.Apply([]*satellitev1.Instance{instance("a", "2")})
	select {
	case <-changes:
		t.Fatal("notified without a change")
	default:
	}

	// A late subscriber starts from the current state.
	late, stopLate := v.Subscribe()
	defer stopLate()
	<-late
}

func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	v := desired.New()
	changes, stop := v.Subscribe()
	defer stop()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 50 {
				v.Apply([]*satellitev1.Instance{instance("a", string(rune('a'+i))), instance("b", string(rune('a'+j%3)))})
				_ = v.Snapshot()
			}
		})
	}
	wg.Wait()
	<-changes
	if v.Len() != 2 {
		t.Fatalf("Len = %d", v.Len())
	}
}

func TestApplyReportsASelectionChangeWithoutAHashChange(t *testing.T) {
	t.Parallel()
	v := desired.New()
	in := &satellitev1.Instance{Id: "a", ContentHash: "h1"}
	if _, err := v.Apply([]*satellitev1.Instance{in}); err != nil {
		t.Fatal(err)
	}
	changes, stop := v.Subscribe()
	defer stop()
	reselected := &satellitev1.Instance{Id: "a", ContentHash: "h1", ToolSelection: &satellitev1.ToolSelection{Deny: []string{"echo"}}}
	d, err := v.Apply([]*satellitev1.Instance{reselected})
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Changed) != 0 || len(d.Reselected) != 1 || d.Empty() {
		t.Fatalf("diff %+v, want a reselection only", d)
	}
	select {
	case <-changes:
	default:
		t.Fatal("subscribers not told of the new selection")
	}
	if got, _ := v.Get("a"); got.GetToolSelection().GetDeny()[0] != "echo" {
		t.Errorf("view holds %v", got)
	}
}
