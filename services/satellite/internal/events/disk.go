package events

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
	"google.golang.org/protobuf/proto"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/services/satellite/internal/backoff"
)

// FileName is the on-disk queue's file in Config.Dir.
const FileName = "events.db"

var (
	// eventsBucket maps an event's sequence number, big-endian so that keys sort in arrival order, to the
	// encoded event.
	eventsBucket = []byte("events")
	// dropsBucket maps a drop reason to the number of drops not yet reported to the control plane.
	dropsBucket = []byte("drops")
)

// disk keeps the Batcher's buffer in a bbolt file. Emit and delivery only queue writes (ops); one goroutine
// commits everything queued in one transaction, and while a commit waits for its fsync the next one
// gathers, so a burst of events shares a few fsyncs instead of paying one each. An event is durable once
// the commit after its Emit returns: Stats.Unsaved counts those that are not yet.
//
// Fields below db are guarded by Batcher.mu.
type disk struct {
	logger *slog.Logger
	db     *bolt.DB

	ops     []op
	unsaved int               // puts among ops and in the commit under way
	drops   map[string]uint64 // unreported drops to write with the next commit; nil: unchanged
	// saved is the sequence number up to which every event emitted is committed (or was delivered before
	// its write reached the disk); committed is closed and replaced at each commit that raises it.
	saved     uint64
	committed chan struct{}
	failing   bool // the last commit failed

	wake      chan struct{}
	stop      chan struct{}
	done      chan struct{}
	err       error // why the last commit failed; set before done closes
	closeOnce sync.Once
	closeErr  error
}

// op writes one event (ev set) or removes it (ev nil).
type op struct {
	seq uint64
	ev  *satellitev1.Event
}

// errUnreadable marks a queue file that cannot be read back: it is set aside and replaced by an empty one.
var errUnreadable = errors.New("event queue unreadable")

// openDisk opens the queue in b.cfg.Dir and loads what it holds into b's buffer, ahead of any new event.
func (b *Batcher) openDisk() error {
	if err := os.MkdirAll(b.cfg.Dir, 0o700); err != nil {
		return fmt.Errorf("open event queue: %w", err)
	}
	path := filepath.Join(b.cfg.Dir, FileName)
	db, loaded, drops, lost, err := load(path)
	if errors.Is(err, errUnreadable) {
		aside := fmt.Sprintf("%s.unreadable-%s", path, time.Now().UTC().Format("20060102T150405.000000000Z"))
		b.logger.Error("event queue file is unreadable; setting it aside and starting an empty queue; "+
			"its events are lost", slog.Any("error", err), slog.String("moved_to", aside))
		if rerr := os.Rename(path, aside); rerr != nil {
			return fmt.Errorf("set aside unreadable event queue: %w", rerr)
		}
		db, loaded, drops, lost, err = load(path)
		lost = max(lost, 1) // how many were in the file is unknown; at least one is the honest count
	}
	if err != nil {
		return fmt.Errorf("open event queue: %w", err)
	}
	b.disk = &disk{
		logger:    b.logger,
		db:        db,
		wake:      make(chan struct{}, 1),
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
		committed: make(chan struct{}),
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	for _, e := range loaded {
		if e.ev == nil {
			b.forgetLocked(e.seq)
			continue
		}
		key := e.ev.GetTeamId() + "/" + e.ev.GetInstallationId()
		g := b.groups[key]
		if g == nil {
			g = &group{}
			b.groups[key] = g
		}
		// A zero arrival time makes the group due at once: what survived a restart goes first.
		g.entries = append(g.entries, entry{seq: e.seq, ev: e.ev, size: e.size})
		b.buffered++
		b.seq = max(b.seq, e.seq)
	}
	if len(loaded) > 0 || len(drops) > 0 {
		b.logger.Info("loaded undelivered events from disk", slog.Int("events", b.buffered),
			slog.Any("unreported_drops", drops))
	}
	maps.Copy(b.pending, drops)
	if len(drops) > 0 {
		b.dropsChangedLocked()
	}
	if lost > 0 {
		b.logger.Error("events on disk could not be read back; the count will be reported to the control plane",
			slog.Int("events", lost))
		b.countDropLocked(ReasonUnreadable, uint64(lost))
	}
	// A smaller BufferSize than the last run's keeps the newest, as a full buffer does.
	for b.buffered > b.cfg.BufferSize && b.dropOldestLocked() {
	}
	b.disk.saved = b.seq // what was loaded is on disk
	return nil
}

// loaded is one event read back from disk; ev is nil when its record was unreadable.
type loaded struct {
	seq  uint64
	ev   *satellitev1.Event
	size int
}

// load opens the queue file at path, creating it if needed, and reads its events in arrival order and its
// unreported drops. lost counts records that could not be decoded; they come back with a nil ev so that
// they are removed. A file bbolt cannot open or read yields errUnreadable.
func load(path string) (db *bolt.DB, events []loaded, drops map[string]uint64, lost int, err error) {
	if fi, err := os.Stat(path); err == nil && fi.Size() < int64(2*os.Getpagesize()) {
		// bbolt writes its two meta pages when it creates a file, so a shorter one was cut short, and
		// bbolt would silently start it over.
		return nil, nil, nil, 0, fmt.Errorf("%w: %s is %d bytes", errUnreadable, path, fi.Size())
	}
	db, err = open(path)
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) || errors.Is(err, os.ErrPermission) {
			return nil, nil, nil, 0, err
		}
		return nil, nil, nil, 0, fmt.Errorf("%w: %w", errUnreadable, err)
	}
	events, drops, lost, err = read(db)
	if err != nil {
		_ = db.Close()
		return nil, nil, nil, 0, fmt.Errorf("%w: %w", errUnreadable, err)
	}
	return db, events, drops, lost, nil
}

// open opens the bbolt file at path. bbolt maps the file into memory and panics on some damage; a page cut
// off by truncation faults on access. Both become errors here instead of killing the satellite, as long as
// the damage is met in this goroutine: this is why the queue does not use bbolt's NoFreelistSync or
// Tx.Check, which walk pages in goroutines of their own.
func open(path string) (db *bolt.DB, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			// The file handle bbolt had open is lost with the panic; this happens once, at start.
			db, err = nil, fmt.Errorf("open %s: %v", path, r)
		}
	}()
	return bolt.Open(path, 0o600, &bolt.Options{
		// The state directory's lock already keeps other satellites out; waiting only guards a mistake.
		Timeout: 5 * time.Second,
	})
}

// read reads db back, with faults and panics turned into errors as in open.
func read(db *bolt.DB) (events []loaded, drops map[string]uint64, lost int, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("read: %v", r)
		}
	}()
	fi, err := os.Stat(db.Path())
	if err != nil {
		return nil, nil, 0, err
	}
	drops = make(map[string]uint64)
	err = db.Update(func(tx *bolt.Tx) error {
		if tx.Size() > fi.Size() {
			return fmt.Errorf("the file is %d bytes, shorter than the %d its pages take", fi.Size(), tx.Size())
		}
		evs, err := tx.CreateBucketIfNotExists(eventsBucket)
		if err != nil {
			return err
		}
		ds, err := tx.CreateBucketIfNotExists(dropsBucket)
		if err != nil {
			return err
		}
		err = evs.ForEach(func(k, v []byte) error {
			if len(k) != 8 {
				lost++
				return nil
			}
			l := loaded{seq: binary.BigEndian.Uint64(k), size: len(v)}
			ev := &satellitev1.Event{}
			if err := proto.Unmarshal(v, ev); err == nil && ev.GetId() != "" {
				l.ev = ev
			} else {
				lost++
			}
			events = append(events, l)
			return nil
		})
		if err != nil {
			return err
		}
		return ds.ForEach(func(k, v []byte) error {
			if len(v) == 8 && binary.BigEndian.Uint64(v) > 0 {
				drops[string(k)] = binary.BigEndian.Uint64(v)
			}
			return nil
		})
	})
	return events, drops, lost, err
}

// saveLocked queues ev, numbered seq, for the next commit.
func (b *Batcher) saveLocked(seq uint64, ev *satellitev1.Event) {
	if b.disk == nil {
		return
	}
	b.disk.ops = append(b.disk.ops, op{seq: seq, ev: ev})
	b.disk.unsaved++
	b.disk.signal()
}

// forgetLocked queues the removal of event seq, delivered or dropped, for the next commit.
func (b *Batcher) forgetLocked(seq uint64) {
	if b.disk == nil {
		return
	}
	b.disk.ops = append(b.disk.ops, op{seq: seq})
	b.disk.signal()
}

// dropsChangedLocked queues the current unreported drop counts, in flight included, for the next commit.
func (b *Batcher) dropsChangedLocked() {
	if b.disk == nil {
		return
	}
	drops := maps.Clone(b.pending)
	for reason, n := range b.carried {
		drops[reason] += n
	}
	b.disk.drops = drops
	b.disk.signal()
}

func (d *disk) signal() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// run commits queued writes until close. A failed commit keeps its writes queued and is retried with
// backoff; the events stay in memory meanwhile and are still delivered.
func (d *disk) run(b *Batcher) {
	defer close(d.done)
	bo := backoff.New(b.cfg.Backoff)
	for {
		select {
		case <-d.wake:
		case <-d.stop:
			// Close stops the disk after the sending goroutine has ended, so this flush is the last write.
			d.err = d.flush(b)
			return
		}
		err := d.flush(b)
		if err == nil {
			bo.Reset()
			continue
		}
		delay := bo.Next()
		d.logger.Error("saving events to disk failed; retrying", slog.Any("error", err),
			slog.Duration("retry_in", delay))
		t := time.NewTimer(delay)
		select {
		case <-t.C:
			d.signal()
		case <-d.stop:
			t.Stop()
			d.err = d.flush(b)
			return
		}
	}
}

// flush commits everything queued. On failure it stays queued, ahead of what was queued meanwhile.
func (d *disk) flush(b *Batcher) error {
	b.mu.Lock()
	ops, drops := d.ops, d.drops
	d.ops, d.drops = nil, nil
	// Emit appends an event's write under the same lock that numbers it, so every event up to b.seq is
	// among ops, committed before, or removed already.
	upTo := b.seq
	b.mu.Unlock()
	if len(ops) == 0 && drops == nil {
		return nil
	}
	err := d.commit(ops, drops)
	puts := 0
	for _, o := range ops {
		if o.ev != nil {
			puts++
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err != nil {
		// While the disk fails, deliveries keep queueing removals; without compacting, a long failure
		// would grow the queue of writes without bound.
		var dropped int
		d.ops, dropped = compact(append(ops, d.ops...))
		d.unsaved -= dropped
		if d.drops == nil {
			d.drops = drops
		}
		d.failing = true
		return fmt.Errorf("save events to disk: %w", err)
	}
	d.unsaved -= puts
	d.failing = false
	if upTo > d.saved {
		d.saved = upTo
		close(d.committed)
		d.committed = make(chan struct{})
	}
	return nil
}

// ErrNotSaved means events could not be confirmed on disk: writing the queue fails, or the Batcher closed.
var ErrNotSaved = errors.New("events not confirmed on disk")

// Saved returns once every event emitted before the call is on disk, so that a crash from then on cannot
// lose it, or ctx ends. It returns at once, with ErrNotSaved, while writing the queue fails: the events are
// then held in memory only, as without a directory, where Saved has nothing to wait for.
func (b *Batcher) Saved(ctx context.Context) error {
	if b.disk == nil {
		return nil
	}
	b.mu.Lock()
	want := b.seq
	b.mu.Unlock()
	for {
		b.mu.Lock()
		saved, committed, failing := b.disk.saved, b.disk.committed, b.disk.failing
		b.mu.Unlock()
		switch {
		case saved >= want:
			return nil
		case failing:
			return ErrNotSaved
		}
		select {
		case <-committed:
		case <-b.disk.done:
			return ErrNotSaved
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// compact removes each event both written and removed in ops, which has never reached the disk since a
// write leaves ops only when committed. It returns the ops left and how many writes it removed. What is
// left is bounded: writes of buffered events, and removals of events on disk.
func compact(ops []op) ([]op, int) {
	written := make(map[uint64]bool)
	for _, o := range ops {
		if o.ev != nil {
			written[o.seq] = true
		}
	}
	gone := make(map[uint64]bool)
	for _, o := range ops {
		if o.ev == nil && written[o.seq] {
			gone[o.seq] = true
		}
	}
	if len(gone) == 0 {
		return ops, 0
	}
	kept := ops[:0]
	for _, o := range ops {
		if !gone[o.seq] {
			kept = append(kept, o)
		}
	}
	clear(ops[len(kept):])
	return kept, len(gone)
}

// commit applies ops, in order, and drops in one transaction, which bbolt fsyncs before returning.
func (d *disk) commit(ops []op, drops map[string]uint64) error {
	return d.db.Update(func(tx *bolt.Tx) error {
		evs := tx.Bucket(eventsBucket)
		for _, o := range ops {
			// bbolt keeps keys and values until the transaction ends, so each put needs its own.
			key := binary.BigEndian.AppendUint64(make([]byte, 0, 8), o.seq)
			if o.ev == nil {
				if err := evs.Delete(key); err != nil {
					return err
				}
				continue
			}
			v, err := proto.Marshal(o.ev)
			if err != nil {
				// The control plane could not decode it either; it stays in memory, and delivery decides.
				d.logger.Error("cannot encode an event for the disk queue; it is held in memory only",
					slog.Any("error", err), slog.String("event_id", o.ev.GetId()))
				continue
			}
			if err := evs.Put(key, v); err != nil {
				return err
			}
		}
		if drops == nil {
			return nil
		}
		if err := tx.DeleteBucket(dropsBucket); err != nil {
			return err
		}
		ds, err := tx.CreateBucket(dropsBucket)
		if err != nil {
			return err
		}
		for reason, n := range drops {
			if n == 0 {
				continue
			}
			if err := ds.Put([]byte(reason), binary.BigEndian.AppendUint64(nil, n)); err != nil {
				return err
			}
		}
		return nil
	})
}

// close makes the last commit and closes the file. Close calls it once the sending goroutine has ended.
func (d *disk) close() error {
	d.closeOnce.Do(func() {
		close(d.stop)
		<-d.done
		d.closeErr = errors.Join(d.err, d.db.Close())
	})
	return d.closeErr
}
