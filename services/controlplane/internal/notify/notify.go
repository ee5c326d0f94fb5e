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
}

// New returns a Hub for channel. Call Run to start listening.
func New(logger *slog.Logger, pool *pgxpool.Pool, channel string) *Hub {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Hub{logger: logger, pool: pool, channel: channel, waiters: map[string]map[chan struct{}]struct{}{}}
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
		h.listening.Store(false)
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
	for ch := range h.waiters[key] {
		signal(ch)
	}
}

func (h *Hub) wakeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
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
