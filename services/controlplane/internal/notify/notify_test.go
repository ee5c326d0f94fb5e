package notify

import (
	"testing"
	"time"

	"github.com/orrery/orrery/internal/pgtest"
)

// TestQuietEndsOnNotification checks the quiet mark a poll uses to skip its read: it holds only while the hub
// listens, is refused when a wake-up is pending, lapses, and ends with a notification for its key from any
// connection.
func TestQuietEndsOnNotification(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	hub := New(nil, pool, "quiet_test")
	now := time.Now()

	sub, unsubscribe := hub.Subscribe("a")
	defer unsubscribe()
	hub.MarkQuiet("a", sub, now.Add(time.Minute))
	if hub.Quiet("a", now) {
		t.Fatal("quiet before the hub listens: notifications would be lost unseen")
	}

	go func() { _ = hub.Run(t.Context()) }()
	deadline := time.Now().Add(10 * time.Second)
	for !hub.Listening() {
		if time.Now().After(deadline) {
			t.Fatal("hub never listened")
		}
		time.Sleep(5 * time.Millisecond)
	}
	<-sub // the wake-up every (re)connection sends

	hub.MarkQuiet("a", sub, now.Add(time.Minute))
	if !hub.Quiet("a", now) {
		t.Fatal("not quiet after a mark")
	}
	if hub.Quiet("a", now.Add(time.Minute)) {
		t.Fatal("quiet after the mark lapsed")
	}
	hub.MarkQuiet("a", sub, now.Add(time.Minute))
	hub.MarkQuiet("b", sub, now.Add(time.Minute))

	if _, err := pool.Exec(t.Context(), "select pg_notify('quiet_test', 'a')"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-sub:
	case <-time.After(10 * time.Second):
		t.Fatal("no wake-up for the notification")
	}
	if hub.Quiet("a", now) {
		t.Fatal("still quiet after a notification for its key")
	}
	if !hub.Quiet("b", now) {
		t.Fatal("a notification for another key ended the mark")
	}

	// A wake-up not yet taken means the read may have missed what it announces: no mark.
	if _, err := pool.Exec(t.Context(), "select pg_notify('quiet_test', 'a')"); err != nil {
		t.Fatal(err)
	}
	for len(sub) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no wake-up for the second notification")
		}
		time.Sleep(5 * time.Millisecond)
	}
	hub.MarkQuiet("a", sub, now.Add(time.Minute))
	if hub.Quiet("a", now) {
		t.Fatal("marked quiet with a wake-up pending")
	}
}
