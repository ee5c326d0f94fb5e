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
			done <- follow(t.Context(), h, uuid.New(), store.StreamServerLogs, 0, read, func(id int64) int64 { return id },
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

// TestFollowAnswersAnEmptyStreamAtOnce: a client following an installation with nothing logged yet hears at
// once that the stream is open, and a backlog of exactly one batch is not followed by an empty message.
func TestFollowAnswersAnEmptyStreamAtOnce(t *testing.T) {
	for _, tt := range []struct {
		name   string
		stored []int64
		want   []sentMessage
	}{
		{"empty", nil, []sentMessage{{nil, 7, 0}}},
		{"one full batch", []int64{8, 9}, []sentMessage{{[]int64{8, 9}, 9, 0}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := New(nil, nil, notify.New(nil, nil, "test"), Config{KeepAlive: 15 * time.Second, BatchSize: 2})
				read := func(after int64) ([]int64, error) {
					var out []int64
					for _, id := range tt.stored {
						if id > after {
							out = append(out, id)
						}
					}
					return out, nil
				}
				start := time.Now()
				var mu sync.Mutex
				var sent []sentMessage
				go func() {
					_ = follow(t.Context(), h, uuid.New(), store.StreamRequestLogs, 7, read, func(id int64) int64 { return id },
						func(entries []int64, cursor int64) error {
							mu.Lock()
							defer mu.Unlock()
							sent = append(sent, sentMessage{entries, cursor, time.Since(start)})
							return nil
						})
				}()
				time.Sleep(time.Second)
				synctest.Wait()
				mu.Lock()
				defer mu.Unlock()
				if len(sent) != len(tt.want) {
					t.Fatalf("sent %+v, want %+v", sent, tt.want)
				}
				for i := range sent {
					if !slices.Equal(sent[i].entries, tt.want[i].entries) || sent[i].cursor != tt.want[i].cursor || sent[i].at != tt.want[i].at {
						t.Fatalf("sent %+v, want %+v", sent, tt.want)
					}
				}
				h.Drain()
			})
		})
	}
}
