// Package events batches the satellite's events on their way to the control plane.
//
// The MCP runtime calls Emit for every status change, log line, tool call and lifecycle step; Emit never
// blocks on the network. Events are grouped per installation and team and sent in batches: a group is sent
// FlushDelay after its oldest event arrived, or at once when it reaches MaxBatch events; a batch also ends
// before MaxBatchBytes, below what the control plane reads of one request. While the control
// plane is unreachable events stay buffered, in order, and the batch in flight is retried with backoff.
// The buffer is bounded: when it is full the oldest buffered event is dropped, and the number dropped
// travels to the control plane as an events_dropped event with the next batch, so no loss is silent.
//
// With Config.Dir set, the buffer is also kept on disk (see Config.Dir), so a crash or restart of the
// satellite loses none of it: a new Batcher on the same directory delivers what was left before anything
// new. Without it events live in memory only.
//
// EmitEvents stores each event id once, so resending a batch whose response was lost is harmless, and so is
// resending, after a restart, events that were delivered just before it.
package events

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/services/satellite/internal/backoff"
)

// Defaults of Config.
const (
	// DefaultFlushDelay keeps the UI close to real time while letting bursts share a request.
	DefaultFlushDelay = 3 * time.Second
	// DefaultMaxBatch keeps requests small enough that a busy installation is never held back by the delay.
	DefaultMaxBatch = 20
	// DefaultBufferSize holds minutes of a busy satellite's events through an outage, in a few MB.
	DefaultBufferSize = 10_000
	// DefaultMaxBatchBytes is half of what the control plane reads of one EmitEvents request (8 MiB),
	// leaving room for the drop reports a batch carries.
	DefaultMaxBatchBytes = 4 << 20
)

// Reasons reported in events_dropped events.
const (
	// ReasonBufferFull counts events dropped to make room while the control plane was unreachable.
	ReasonBufferFull = "buffer full"
	// ReasonRejected counts events the control plane refused as invalid; resending them cannot succeed.
	ReasonRejected = "rejected by control plane"
	// ReasonUnreadable counts events found on disk at start that could not be read back. When the whole
	// queue file is unreadable the number is unknown and the count is 1.
	ReasonUnreadable = "unreadable on disk"
)

// maxRequestEvents is the control plane's limit on one EmitEvents request. A batch carries at most
// MaxBatch events plus one events_dropped event per reason.
const maxRequestEvents = 500

// Sender delivers a batch. The satellite's authenticated SatelliteService client is one.
type Sender interface {
	EmitEvents(context.Context, *connect.Request[satellitev1.EmitEventsRequest]) (*connect.Response[satellitev1.EmitEventsResponse], error)
}

// Config tunes a Batcher. Zero fields take their defaults.
type Config struct {
	// Dir is the directory of the on-disk queue, the file events.db, which it creates if needed. Every
	// accepted event is written there within one disk commit of Emit, and removed once delivered. Default
	// empty: events are held in memory only and a crash loses what was not delivered.
	Dir string
	// FlushDelay is how long a group's oldest event waits for company before its group is sent. Default
	// DefaultFlushDelay (3 s).
	FlushDelay time.Duration
	// MaxBatch is how many events of one group fill a batch, which is then sent at once. Default
	// DefaultMaxBatch (20).
	MaxBatch int
	// MaxBatchBytes bounds the encoded size of a batch's events: a batch ends before the event that would
	// take it past this, and an event larger than this travels alone. Default DefaultMaxBatchBytes (4 MiB).
	MaxBatchBytes int
	// BufferSize bounds the events held, in flight included. Default DefaultBufferSize (10,000); never less
	// than MaxBatch.
	BufferSize int
	// Backoff spaces out retries of a failed batch. Default 500 ms doubling to 30 s, with jitter.
	Backoff backoff.Policy
	// NewID generates event ids. Default uuid.NewString.
	NewID func() string
}

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.FlushDelay <= 0 {
		c.FlushDelay = DefaultFlushDelay
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = DefaultMaxBatch
	}
	c.MaxBatch = min(c.MaxBatch, maxRequestEvents-2)
	if c.MaxBatchBytes <= 0 {
		c.MaxBatchBytes = DefaultMaxBatchBytes
	}
	if c.BufferSize <= 0 {
		c.BufferSize = DefaultBufferSize
	}
	c.BufferSize = max(c.BufferSize, c.MaxBatch)
	c.Backoff = c.Backoff.WithDefaults()
	if c.NewID == nil {
		c.NewID = uuid.NewString
	}
	return c
}

// Stats describes a Batcher's traffic so far.
type Stats struct {
	// Buffered counts events not yet delivered, including the batch in flight.
	Buffered int
	// Sent counts events the control plane acknowledged.
	Sent uint64
	// Dropped counts events given up on, whether reported yet or not.
	Dropped uint64
	// Unsaved counts accepted events not yet committed to disk: what a crash now could lose. Always 0
	// without Config.Dir.
	Unsaved int
}

// Batcher buffers events and sends them in batches. It is safe for concurrent use.
type Batcher struct {
	logger *slog.Logger
	sender Sender
	cfg    Config

	mu       sync.Mutex
	groups   map[string]*group
	seq      uint64
	buffered int               // events in groups
	inflight int               // events in the batch being sent
	pending  map[string]uint64 // drops by reason not yet handed to a batch
	carried  map[string]uint64 // drops by reason travelling in the batch in flight
	sent     uint64
	dropped  uint64
	closed   bool
	disk     *disk // nil: memory only

	delivery prometheus.Histogram // time from Emit to acknowledgement

	wake      chan struct{}
	closing   chan struct{}
	closeOnce sync.Once
	ctx       context.Context
	cancel    context.CancelFunc
	done      chan struct{}
}

type entry struct {
	seq  uint64
	at   time.Time
	ev   *satellitev1.Event
	size int // the event's encoded size
}

// emitted is when the entry's event was emitted: by this process, or, for an event a previous one left on
// disk, when it occurred.
func (e entry) emitted() time.Time {
	if !e.at.IsZero() {
		return e.at
	}
	return e.ev.GetOccurredAt().AsTime()
}

// group is one installation and team's buffered events, oldest first.
type group struct {
	entries []entry
}

// batch is one EmitEvents request and what it accounts for.
type batch struct {
	key     string
	entries []entry
	reports map[string]uint64 // drop counts by reason carried by events_dropped events
	events  []*satellitev1.Event
}

// New returns a Batcher sending through sender and starts its goroutines; Close stops them. With
// cfg.Dir set it first loads the events a previous Batcher left on disk, which go out before any new one;
// it fails only if the directory cannot hold a queue, and starts on an empty queue if the file is
// unreadable (setting it aside and reporting the loss). A nil logger discards logs.
func New(logger *slog.Logger, sender Sender, cfg Config) (*Batcher, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &Batcher{
		logger:  logger,
		sender:  sender,
		cfg:     cfg.WithDefaults(),
		groups:  make(map[string]*group),
		pending: make(map[string]uint64),
		carried: make(map[string]uint64),
		wake:    make(chan struct{}, 1),
		closing: make(chan struct{}),
		ctx:     ctx,
		cancel:  cancel,
		done:    make(chan struct{}),

		delivery: newDeliveryHistogram(),
	}
	if b.cfg.Dir != "" {
		if err := b.openDisk(); err != nil {
			cancel()
			return nil, err
		}
		go b.disk.run(b)
	}
	go b.loop()
	return b, nil
}

// Emit queues ev for delivery and returns at once. It fills in an empty id and occurred_at, and takes
// ownership of ev: the caller must not change it afterwards. Events emitted after Close are dropped.
func (b *Batcher) Emit(ev *satellitev1.Event) {
	if ev == nil {
		return
	}
	if ev.GetId() == "" {
		ev.Id = b.cfg.NewID()
	}
	if ev.GetOccurredAt() == nil {
		ev.OccurredAt = timestamppb.Now()
	}
	key := ev.GetTeamId() + "/" + ev.GetInstallationId()
	size := proto.Size(ev)

	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		b.dropped++
		b.logger.Warn("event emitted after the event batcher closed; dropped", slog.String("event_id", ev.GetId()))
		return
	}
	if b.buffered+b.inflight >= b.cfg.BufferSize && !b.dropOldestLocked() {
		// Everything held is in flight and cannot be taken back: the newest event is the one to go.
		b.countDropLocked(ReasonBufferFull, 1)
		return
	}
	g := b.groups[key]
	if g == nil {
		g = &group{}
		b.groups[key] = g
	}
	b.seq++
	g.entries = append(g.entries, entry{seq: b.seq, at: time.Now(), ev: ev, size: size})
	b.buffered++
	b.saveLocked(b.seq, ev)
	// A group's first event sets a new deadline and a full group is due now; either way the sending
	// goroutine must look again.
	if len(g.entries) == 1 || len(g.entries) >= b.cfg.MaxBatch {
		b.signal()
	}
}

// Stats returns the Batcher's counters.
func (b *Batcher) Stats() Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := Stats{Buffered: b.buffered + b.inflight, Sent: b.sent, Dropped: b.dropped}
	if b.disk != nil {
		s.Unsaved = b.disk.unsaved
	}
	return s
}

var errClosed = errors.New("batcher closed")

// Close sends everything buffered without waiting for flush delays, and returns once all is delivered or
// ctx is done, whichever comes first. Events still undelivered then are lost, and the error says how many;
// with Config.Dir they stay on disk instead, for the next Batcher on the directory to deliver.
func (b *Batcher) Close(ctx context.Context) error {
	b.closeOnce.Do(func() {
		b.mu.Lock()
		b.closed = true
		b.mu.Unlock()
		close(b.closing)
	})
	select {
	case <-b.done:
	case <-ctx.Done():
		b.cancel()
		<-b.done
	}
	b.cancel()
	var diskErr error
	if b.disk != nil {
		diskErr = b.disk.close()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	left := b.buffered + b.inflight
	var unreported uint64
	for _, n := range b.pending {
		unreported += n
	}
	if left > 0 || unreported > 0 {
		kept := ""
		if b.disk != nil && diskErr == nil {
			kept = " (kept on disk for the next start)"
		}
		return errors.Join(diskErr, fmt.Errorf("close event batcher: %d events undelivered and %d drops unreported%s: %w",
			left, unreported, kept, cmp.Or(ctx.Err(), errClosed)))
	}
	return diskErr
}

func (b *Batcher) signal() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// dropOldestLocked drops the oldest buffered event across all groups, reporting whether there was one.
func (b *Batcher) dropOldestLocked() bool {
	var oldestKey string
	var oldest *group
	for key, g := range b.groups {
		if oldest == nil || g.entries[0].seq < oldest.entries[0].seq {
			oldestKey, oldest = key, g
		}
	}
	if oldest == nil {
		return false
	}
	b.forgetLocked(oldest.entries[0].seq)
	oldest.entries[0] = entry{}
	oldest.entries = oldest.entries[1:]
	if len(oldest.entries) == 0 {
		delete(b.groups, oldestKey)
	}
	b.buffered--
	b.countDropLocked(ReasonBufferFull, 1)
	return true
}

func (b *Batcher) countDropLocked(reason string, n uint64) {
	if b.pending[reason] == 0 {
		b.logger.Warn("dropping events; the count will be reported to the control plane", slog.String("reason", reason))
	}
	b.pending[reason] += n
	b.dropped += n
	b.dropsChangedLocked()
}

func (b *Batcher) loop() {
	defer close(b.done)
	bo := backoff.New(b.cfg.Backoff)
	for {
		bt, wait, finished := b.take(time.Now())
		if finished {
			return
		}
		if bt == nil {
			if !b.idle(wait) {
				return
			}
			continue
		}
		if !b.deliver(bt, bo) {
			return
		}
	}
}

// idle waits for wait (forever if negative), an Emit that may change what is due, or Close. It returns false
// once the Batcher is cancelled.
func (b *Batcher) idle(wait time.Duration) bool {
	var timeout <-chan time.Time
	if wait >= 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-b.wake:
	case <-timeout:
	case <-b.closing:
	case <-b.ctx.Done():
		return false
	}
	return true
}

// take removes the next due batch from the buffer. Without one it returns how long until the next group is
// due (negative: nothing buffered), or finished once the Batcher is closed and empty.
func (b *Batcher) take(now time.Time) (bt *batch, wait time.Duration, finished bool) {
	b.mu.Lock()
	defer b.mu.Unlock()

	var dueKey string
	var due *group
	var next time.Time
	for key, g := range b.groups {
		head := g.entries[0]
		deadline := head.at.Add(b.cfg.FlushDelay)
		if b.closed || len(g.entries) >= b.cfg.MaxBatch || !now.Before(deadline) {
			// Among due groups the one holding the oldest event goes first, so no group starves.
			if due == nil || head.seq < due.entries[0].seq {
				dueKey, due = key, g
			}
			continue
		}
		if next.IsZero() || deadline.Before(next) {
			next = deadline
		}
	}

	switch {
	case due != nil:
		n := b.batchLen(due.entries)
		bt = &batch{key: dueKey, entries: slices.Clone(due.entries[:n])}
		clear(due.entries[:n])
		due.entries = due.entries[n:]
		if len(due.entries) == 0 {
			delete(b.groups, dueKey)
		}
		b.buffered -= n
		b.inflight += n
	case len(b.pending) > 0 && b.buffered == 0:
		// Drops with no batch to ride on, such as a rejected batch: report them on their own.
		bt = &batch{}
	case b.closed && b.buffered == 0:
		return nil, 0, true
	case next.IsZero():
		return nil, -1, false
	default:
		return nil, next.Sub(now), false
	}

	for _, e := range bt.entries {
		bt.events = append(bt.events, e.ev)
	}
	if len(b.pending) > 0 {
		bt.reports = b.pending
		b.carried = bt.reports
		b.pending = make(map[string]uint64)
		for _, reason := range slices.Sorted(maps.Keys(bt.reports)) {
			bt.events = append(bt.events, &satellitev1.Event{
				Id:         b.cfg.NewID(),
				OccurredAt: timestamppb.New(now),
				Payload: &satellitev1.Event_EventsDropped{EventsDropped: &satellitev1.EventsDropped{
					Count:  bt.reports[reason],
					Reason: reason,
				}},
			})
		}
	}
	return bt, 0, false
}

// batchLen is how many of entries, oldest first, make the next batch: at most MaxBatch and MaxBatchBytes,
// and at least one.
func (b *Batcher) batchLen(entries []entry) int {
	n, size := 0, 0
	for n < len(entries) && n < b.cfg.MaxBatch {
		size += entries[n].size
		if n > 0 && size > b.cfg.MaxBatchBytes {
			break
		}
		n++
	}
	return n
}

// deliver sends bt until it is acknowledged or refused for good. It returns false if the Batcher was
// cancelled first; bt is then back in the buffer.
func (b *Batcher) deliver(bt *batch, bo *backoff.Backoff) bool {
	msg := &satellitev1.EmitEventsRequest{Events: bt.events}
	for {
		_, err := b.sender.EmitEvents(b.ctx, connect.NewRequest(msg))
		if err == nil {
			if bo.Failures() > 0 {
				b.logger.Info("control plane accepts events again", slog.Int("failed_attempts", bo.Failures()))
			}
			bo.Reset()
			b.mu.Lock()
			b.inflight -= len(bt.entries)
			b.sent += uint64(len(bt.entries))
			now := time.Now()
			for _, e := range bt.entries {
				b.forgetLocked(e.seq)
				b.delivery.Observe(now.Sub(e.emitted()).Seconds())
			}
			if len(b.carried) > 0 {
				b.carried = make(map[string]uint64)
				b.dropsChangedLocked()
			}
			b.mu.Unlock()
			return true
		}
		if b.ctx.Err() != nil {
			b.requeue(bt)
			return false
		}
		if rejected(err) {
			b.reject(bt, err)
			return true
		}
		delay := bo.Next()
		b.logger.Warn("sending events failed; retrying",
			slog.Any("error", err), slog.Int("events", len(bt.events)), slog.Int("attempt", bo.Failures()),
			slog.Duration("retry_in", delay))
		if err := backoff.Sleep(b.ctx, delay); err != nil {
			b.requeue(bt)
			return false
		}
	}
}

// rejected reports whether the control plane refused a batch for what it contains, so that sending it
// again would fail again. Anything else, an outage included, is worth retrying. ResourceExhausted is a
// batch larger than the control plane reads, which only an event larger than MaxBatchBytes makes.
func rejected(err error) bool {
	switch connect.CodeOf(err) {
	case connect.CodeInvalidArgument, connect.CodePermissionDenied, connect.CodeFailedPrecondition,
		connect.CodeNotFound, connect.CodeOutOfRange, connect.CodeResourceExhausted:
		return true
	}
	return false
}

// reject accounts for a refused batch: its events become a ReasonRejected drop, reported with the next
// batch, and the drop counts it carried are reported again.
func (b *Batcher) reject(bt *batch, err error) {
	b.logger.Error("control plane rejected a batch of events; dropping it",
		slog.Any("error", err), slog.Int("events", len(bt.entries)), slog.String("group", bt.key))
	b.mu.Lock()
	defer b.mu.Unlock()
	b.inflight -= len(bt.entries)
	b.carried = make(map[string]uint64)
	if len(bt.entries) == 0 {
		b.dropsChangedLocked()
		// A batch of nothing but drop reports was refused; sending it again would loop forever.
		b.logger.Error("control plane rejected a drop report; the drop counts are lost", slog.Any("drops", bt.reports))
		return
	}
	for reason, n := range bt.reports {
		b.pending[reason] += n
	}
	for _, e := range bt.entries {
		b.forgetLocked(e.seq)
	}
	b.countDropLocked(ReasonRejected, uint64(len(bt.entries)))
}

// requeue returns an undelivered batch to the front of its group.
func (b *Batcher) requeue(bt *batch) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.inflight -= len(bt.entries)
	b.carried = make(map[string]uint64)
	if len(bt.entries) > 0 {
		g := b.groups[bt.key]
		if g == nil {
			g = &group{}
			b.groups[bt.key] = g
		}
		g.entries = slices.Concat(bt.entries, g.entries)
		b.buffered += len(bt.entries)
	}
	for reason, n := range bt.reports {
		b.pending[reason] += n
	}
}
