// Package notify fans PostgreSQL notifications out to waiters in this process.
//
// One connection per replica LISTENs on a channel; a waiter subscribes to a key (the notification payload)
// and is woken when a notification with that key arrives from any replica. A wake-up is a hint, never the
// data: waiters re-read the database, so a lost or duplicated wake-up costs at most one extra query.
package notify

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Hub listens on one channel and wakes the subscribers of each payload.
type Hub struct {
	logger    *slog.Logger
	pool      *pgxpool.Pool
	channel   string
	listening atomic.Bool

	mu      sync.Mutex
	waiters map[string]map[chan struct{}]struct{}
	// quiet holds, per key, until when a reader may trust that nothing has been notified since it last found
	// nothing: any notification for the key, and any loss of the listening connection, ends it.
	quiet map[string]time.Time
}

// maxQuiet bounds the quiet marks a hub keeps; past it, expired marks are swept and new ones refused.
const maxQuiet = 1 << 17

// New returns a Hub for channel. Call Run to start listening.
func New(logger *slog.Logger, pool *pgxpool.Pool, channel string) *Hub {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Hub{logger: logger, pool: pool, channel: channel, waiters: map[string]map[chan struct{}]struct{}{},
		quiet: map[string]time.Time{}}
}

// MarkQuiet records that a read for key, made while sub (a channel from Subscribe for key) was subscribed,
// found nothing to act on, so that readers until then may skip the read while no notification for key
// arrives. It records nothing when sub holds a wake-up not yet taken (a notification since the read may
// carry what the read missed) or when the hub is not listening (notifications are being lost).
func (h *Hub) MarkQuiet(key string, sub <-chan struct{}, until time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(sub) > 0 || !h.listening.Load() {
		return
	}
	if len(h.quiet) >= maxQuiet {
		now := time.Now()
		for k, t := range h.quiet {
			if !now.Before(t) {
				delete(h.quiet, k)
			}
		}
		if len(h.quiet) >= maxQuiet {
			return
		}
	}
	h.quiet[key] = until
}

// Quiet reports whether key was marked quiet, the mark has not lapsed at now, and no notification for key
// arrived since. A reader that gets true may skip its read; one that gets false must read.
func (h *Hub) Quiet(key string, now time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	until, ok := h.quiet[key]
	if ok && !now.Before(until) {
		delete(h.quiet, key)
		return false
	}
	return ok && h.listening.Load()
}

// Subscribe returns a channel that receives a value after each notification for key, coalescing bursts, and
// a function that ends the subscription.
func (h *Hub) Subscribe(key string) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	h.mu.Lock()
	if h.waiters[key] == nil {
		h.waiters[key] = map[chan struct{}]struct{}{}
	}
	h.waiters[key][ch] = struct{}{}
	h.mu.Unlock()
	return ch, func() {
		h.mu.Lock()
		delete(h.waiters[key], ch)
		if len(h.waiters[key]) == 0 {
			delete(h.waiters, key)
		}
		h.mu.Unlock()
	}
}

// Listening reports whether the hub currently holds a listening connection.
func (h *Hub) Listening() bool { return h.listening.Load() }

// Run listens until ctx ends, reconnecting after errors. After every (re)connect it wakes all waiters,
// since notifications sent while it was disconnected are lost.
func (h *Hub) Run(ctx context.Context) error {
	backoff := 100 * time.Millisecond
	for {
		err := h.listen(ctx)
		h.mu.Lock()
		h.listening.Store(false)
		clear(h.quiet) // notifications are lost until the next connection listens
		h.mu.Unlock()
		if ctx.Err() != nil {
			return nil
		}
		h.logger.WarnContext(ctx, "notification listener lost its connection", slog.Any("error", err),
			slog.Duration("retry_in", backoff))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func (h *Hub) listen(ctx context.Context) error {
	pooled, err := h.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	// A connection that LISTENed must not go back to the pool.
	conn := pooled.Hijack()
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "listen "+pgx.Identifier{h.channel}.Sanitize()); err != nil {
		return err
	}
	h.listening.Store(true)
	h.wakeAll()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		}
		h.wake(n.Payload)
	}
}

func (h *Hub) wake(key string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.quiet, key)
	for ch := range h.waiters[key] {
		signal(ch)
	}
}

func (h *Hub) wakeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	clear(h.quiet)
	for _, set := range h.waiters {
		for ch := range set {
			signal(ch)
		}
	}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
