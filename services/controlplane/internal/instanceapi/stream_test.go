package instanceapi

import (
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/uuid"

	"github.com/orrery/orrery/services/controlplane/internal/notify"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// sentMessage is one message follow sent, and when.
type sentMessage struct {
	entries []int64
	cursor  int64
	at      time.Duration
}

func TestFollowSendsBacklogInBatchesThenKeepAlives(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := New(nil, nil, notify.New(nil, nil, "test"), Config{KeepAlive: 15 * time.Second, BatchSize: 2})
		var mu sync.Mutex
		stored := []int64{1, 2, 3}
		add := func(id int64) {
			mu.Lock()
			defer mu.Unlock()
			stored = append(stored, id)
		}
		read := func(after int64) ([]int64, error) {
			mu.Lock()
			defer mu.Unlock()
			var out []int64
			for _, id := range stored {
				if id > after && len(out) < 2 {
					out = append(out, id)
				}
			}
			return out, nil
		}
		start := time.Now()
		sent := make(chan sentMessage, 10)
		done := make(chan error, 1)
		go func() {
			done <- follow(t.Context(), h, uuid.New(), store.StreamServerLogs, 0, false, read, func(id int64) int64 { return id },
				func(entries []int64, cursor int64) error {
					sent <- sentMessage{entries, cursor, time.Since(start)}
					return nil
				})
		}()
		expect := func(want sentMessage) {
			t.Helper()
			synctest.Wait()
			select {
			case got := <-sent:
				if !slices.Equal(got.entries, want.entries) || got.cursor != want.cursor || got.at != want.at {
					t.Fatalf("sent %+v, want %+v", got, want)
				}
			default:
				t.Fatalf("nothing sent, want %+v", want)
			}
		}

		// The backlog goes at once, a batch at a time.
		expect(sentMessage{[]int64{1, 2}, 2, 0})
		expect(sentMessage{[]int64{3}, 3, 0})
		// Idle, it sends a keep-alive with the cursor unchanged.
		time.Sleep(15 * time.Second)
		expect(sentMessage{nil, 3, 15 * time.Second})
		// An entry whose notification was lost arrives with the next keep-alive's read.
		add(4)
		time.Sleep(15 * time.Second)
		expect(sentMessage{[]int64{4}, 4, 30 * time.Second})

		h.Drain()
		synctest.Wait()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("follow ended with %v on drain", err)
			}
		default:
			t.Fatal("follow still running after drain")
		}
	})
}

// TestFollowOpensAnEmptyStreamAtOnce: with nothing to send, the first message is an immediate keep-alive,
// which carries the response headers, unless the caller has sent a message already.
func TestFollowOpensAnEmptyStreamAtOnce(t *testing.T) {
	for _, opened := range []bool{false, true} {
		synctest.Test(t, func(t *testing.T) {
			h := New(nil, nil, notify.New(nil, nil, "test"), Config{KeepAlive: 15 * time.Second, BatchSize: 2})
			start := time.Now()
			var sent []sentMessage
			go func() {
				_ = follow(t.Context(), h, uuid.New(), store.StreamRequestLogs, 7, opened,
					func(int64) ([]int64, error) { return nil, nil }, func(id int64) int64 { return id },
					func(entries []int64, cursor int64) error {
						sent = append(sent, sentMessage{entries, cursor, time.Since(start)})
						return nil
					})
			}()
			synctest.Wait()
			want := []sentMessage{{nil, 7, 0}}
			if opened {
				want = nil
			}
			if !slices.EqualFunc(sent, want, func(a, b sentMessage) bool {
				return slices.Equal(a.entries, b.entries) && a.cursor == b.cursor && a.at == b.at
			}) {
				t.Fatalf("opened=%v: sent %+v at first, want %+v", opened, sent, want)
			}
			h.Drain()
			synctest.Wait()
		})
	}
}
