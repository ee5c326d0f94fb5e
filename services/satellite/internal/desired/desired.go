// Package desired holds the satellite's desired state: the MCP server instances its latest configuration
// asks for. The configuration sync writes it with Apply; the MCP runtime reads it and moves its processes
// towards it.
//
// The runtime should treat the view as level-triggered: on every notification, read a Snapshot and
// reconcile everything it runs against it, comparing content hashes. Notifications coalesce, so a slow
// consumer never blocks the sync and never misses the latest state.
//
//	changes, stop := view.Subscribe()
//	defer stop()
//	for range changes {
//		reconcile(view.Snapshot())
//	}
//
// Instances carry decrypted secrets (env, headers, query parameters): never log them whole.
package desired

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	"google.golang.org/protobuf/proto"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
)

// View is the set of desired instances, by id. It is safe for concurrent use. The instances it holds and
// hands out are shared and must not be modified.
type View struct {
	mu        sync.Mutex
	instances map[string]*satellitev1.Instance
	version   uint64
	subs      map[chan struct{}]struct{}
}

// New returns an empty View. Version 0 means no configuration has been applied yet.
func New() *View {
	return &View{
		instances: make(map[string]*satellitev1.Instance),
		subs:      make(map[chan struct{}]struct{}),
	}
}

// Diff is what one Apply changed, as sorted instance ids.
type Diff struct {
	// Added are instances that were not desired before.
	Added []string
	// Changed are instances whose content hash differs: the runtime restarts or reconfigures them.
	Changed []string
	// Removed are instances that are no longer desired: the runtime stops them.
	Removed []string
	// Reselected are instances whose tool selection alone changed: the runtime applies it without a
	// restart.
	Reselected []string
}

// Empty reports whether the Apply changed nothing.
func (d Diff) Empty() bool {
	return len(d.Added) == 0 && len(d.Changed) == 0 && len(d.Removed) == 0 && len(d.Reselected) == 0
}

// Snapshot is the view at one version.
type Snapshot struct {
	// Version increases with every Apply that changed something; 0 means nothing was applied yet.
	Version uint64
	// Instances are the desired instances, sorted by id. They are shared: do not modify them.
	Instances []*satellitev1.Instance
}

// Apply replaces the desired instances with instances and reports what changed. It refuses a list with an
// empty or repeated id, leaving the view as it was, because reconciling a malformed configuration could
// stop instances that are still wanted. Subscribers are notified only when something changed.
func (v *View) Apply(instances []*satellitev1.Instance) (Diff, error) {
	next := make(map[string]*satellitev1.Instance, len(instances))
	for _, in := range instances {
		id := in.GetId()
		if id == "" {
			return Diff{}, fmt.Errorf("configuration has an instance without an id (installation %q)", in.GetInstallationId())
		}
		if _, dup := next[id]; dup {
			return Diff{}, fmt.Errorf("configuration lists instance %q twice", id)
		}
		next[id] = in
	}

	v.mu.Lock()
	defer v.mu.Unlock()
	var d Diff
	for id, in := range next {
		old, ok := v.instances[id]
		switch {
		case !ok:
			d.Added = append(d.Added, id)
		case old.GetContentHash() != in.GetContentHash():
			d.Changed = append(d.Changed, id)
		case !proto.Equal(old.GetToolSelection(), in.GetToolSelection()):
			d.Reselected = append(d.Reselected, id)
		}
	}
	for id := range v.instances {
		if _, ok := next[id]; !ok {
			d.Removed = append(d.Removed, id)
		}
	}
	slices.Sort(d.Added)
	slices.Sort(d.Changed)
	slices.Sort(d.Removed)
	slices.Sort(d.Reselected)

	// Unchanged hashes mean unchanged content, but the new messages replace the old ones anyway so the view
	// never holds on to a configuration response that is otherwise garbage.
	v.instances = next
	if d.Empty() && v.version > 0 {
		return d, nil
	}
	v.version++
	for ch := range v.subs {
		notify(ch)
	}
	return d, nil
}

// Snapshot returns the current desired instances.
func (v *View) Snapshot() Snapshot {
	v.mu.Lock()
	defer v.mu.Unlock()
	s := Snapshot{Version: v.version, Instances: make([]*satellitev1.Instance, 0, len(v.instances))}
	for _, in := range v.instances {
		s.Instances = append(s.Instances, in)
	}
	slices.SortFunc(s.Instances, func(a, b *satellitev1.Instance) int { return strings.Compare(a.GetId(), b.GetId()) })
	return s
}

// Get returns one desired instance.
func (v *View) Get(id string) (*satellitev1.Instance, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	in, ok := v.instances[id]
	return in, ok
}

// Version returns the current version: 0 until a configuration is applied, then increasing with every
// change.
func (v *View) Version() uint64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.version
}

// Len returns the number of desired instances.
func (v *View) Len() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.instances)
}

// Subscribe returns a channel that receives a value whenever the view changes, and a function that ends
// the subscription. If a configuration was already applied the channel is ready at once, so a consumer
// that subscribes late starts from the current state rather than waiting for the next change. Values
// coalesce: one receive may stand for several changes, so always read a fresh Snapshot after it.
func (v *View) Subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	v.mu.Lock()
	v.subs[ch] = struct{}{}
	if v.version > 0 {
		notify(ch)
	}
	v.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			v.mu.Lock()
			delete(v.subs, ch)
			v.mu.Unlock()
		})
	}
}

func notify(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
