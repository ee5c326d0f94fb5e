package events_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	bolt "go.etcd.io/bbolt"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/gen/orrery/satellite/v1/satellitev1connect"
	"github.com/orrery/orrery/services/satellite/internal/backendtest"
	"github.com/orrery/orrery/services/satellite/internal/backoff"
	"github.com/orrery/orrery/services/satellite/internal/events"
)

// The test binary re-executed with these set acts as a satellite that emits childEvents events to the fake
// control plane at childURLEnv and waits, once all are on disk, to be killed.
const (
	childDirEnv = "EVENTS_TEST_CHILD_DIR"
	childURLEnv = "EVENTS_TEST_CHILD_URL"
	childKeyEnv = "EVENTS_TEST_CHILD_KEY"
	childEvents = 250
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(childDirEnv); dir != "" {
		os.Exit(runChild(dir, os.Getenv(childURLEnv), os.Getenv(childKeyEnv)))
	}
	os.Exit(m.Run())
}

// runChild emits childEvents events, alternating between two groups, and says "saved" once every one is
// committed to disk and some are delivered. Full batches are sent at once and the rest waits out a long flush delay, so when the
// parent kills it some events are delivered, some may be in flight and some were never sent.
func runChild(dir, url, key string) int {
	b, err := events.New(nil, newClient(url, key), events.Config{
		Dir:        dir,
		FlushDelay: time.Hour,
		MaxBatch:   20,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for i := range childEvents {
		b.Emit(groupEvent(i))
	}
	for s := b.Stats(); s.Unsaved > 0 || s.Sent < 100; s = b.Stats() {
		time.Sleep(time.Millisecond) // a separate process: nothing to wait on but its counters
	}
	fmt.Println("saved")
	select {} // until killed
}

// groupEvent is event i of a stream that alternates between two groups.
func groupEvent(i int) *satellitev1.Event {
	if i%2 == 1 {
		return logEvent(teamB, instB, i)
	}
	return logEvent(teamA, instA, i)
}

func newClient(url, key string) satellitev1connect.SatelliteServiceClient {
	return satellitev1connect.NewSatelliteServiceClient(&http.Client{Timeout: 5 * time.Second}, url,
		connect.WithInterceptors(bearer(key)))
}

// checkExactlyOnce fails t unless the control plane stored lines from..to-1 of groupEvent's stream, each
// once, in order within each group, and nothing else but drop reports.
func checkExactlyOnce(t *testing.T, got []*satellitev1.Event, from, to int) {
	t.Helper()
	perGroup := map[string][]string{}
	for _, ev := range got {
		if ev.GetEventsDropped() != nil {
			continue
		}
		perGroup[ev.GetTeamId()] = append(perGroup[ev.GetTeamId()], message(ev))
	}
	want := map[string][]string{}
	for i := from; i < to; i++ {
		ev := groupEvent(i)
		want[ev.GetTeamId()] = append(want[ev.GetTeamId()], message(ev))
	}
	for team, lines := range want {
		if !slices.Equal(perGroup[team], lines) {
			t.Errorf("team %s: control plane stored %d lines:\n%q\nwant %d, each once, in order:\n%q",
				team, len(perGroup[team]), perGroup[team], len(lines), lines)
		}
	}
}

// TestCrashLosesNothing kills a satellite process with SIGKILL once its events are on disk; a new batcher on
// the same directory delivers the rest, and the control plane stores every event exactly once, in order.
func TestCrashLosesNothing(t *testing.T) {
	t.Parallel()
	srv := backendtest.New(t)
	key := srv.AddSatellite()
	dir := t.TempDir()

	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childDirEnv+"="+dir, childURLEnv+"="+srv.URL, childKeyEnv+"="+key)
	cmd.Stderr = t.Output()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "saved\n" {
		t.Fatalf("child said %q, %v; want saved", line, err)
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL: no deferred function, no Close
		t.Fatal(err)
	}
	_ = cmd.Wait()
	before := len(srv.Events())
	t.Logf("control plane had %d of %d events when the satellite was killed", before, childEvents)
	if before == 0 || before == childEvents {
		t.Fatal("the child delivered nothing or everything; the test would show less than it means to")
	}

	b := newBatcher(t, newClient(srv.URL, key), events.Config{Dir: dir, FlushDelay: 10 * time.Millisecond})
	b.Emit(groupEvent(childEvents))
	b.Emit(groupEvent(childEvents + 1))
	srv.Wait(t.Context(), "every event", 10*time.Second, func() bool { return len(srv.Events()) >= childEvents+2 })
	if err := b.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	checkExactlyOnce(t, srv.Events(), 0, childEvents+2)
	if s := b.Stats(); s.Dropped != 0 || s.Buffered != 0 {
		t.Errorf("stats after close = %+v, want nothing dropped or left", s)
	}
	assertEmptyQueue(t, dir)
}

// TestRestartDeliversLeftEventsFirst closes a batcher during an outage: its events stay on disk, and the
// next batcher on the directory sends them before the events emitted after it started.
func TestRestartDeliversLeftEventsFirst(t *testing.T) {
	t.Parallel()
	srv := backendtest.New(t)
	key := srv.AddSatellite()
	dir := t.TempDir()
	srv.SetDown(true)

	first := newBatcher(t, newClient(srv.URL, key), events.Config{
		Dir:        dir,
		FlushDelay: time.Millisecond,
		Backoff:    backoff.Policy{Min: time.Millisecond, Max: 10 * time.Millisecond},
	})
	for i := range 30 {
		first.Emit(groupEvent(i))
	}
	srv.Wait(t.Context(), "a refused attempt", 5*time.Second, func() bool { return srv.Refused() > 0 })
	gone, cancel := context.WithCancel(t.Context())
	cancel()
	if err := first.Close(gone); err == nil || !strings.Contains(err.Error(), "30 events undelivered") ||
		!strings.Contains(err.Error(), "kept on disk") {
		t.Fatalf("Close = %v, want 30 events undelivered and kept on disk", err)
	}

	srv.SetDown(false)
	second := newBatcher(t, newClient(srv.URL, key), events.Config{Dir: dir, FlushDelay: time.Hour})
	for i := 30; i < 40; i++ {
		second.Emit(groupEvent(i))
	}
	if err := second.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	checkExactlyOnce(t, srv.Events(), 0, 40)
	assertEmptyQueue(t, dir)
}

// TestBoundSurvivesRestart fills a small buffer during an outage: the oldest events are dropped, from disk
// too, and the count of them is reported by the next batcher.
func TestBoundSurvivesRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	down := &recorder{err: unavailable}
	// Neither group reaches a full batch, so nothing is in flight and the oldest can go.
	first := newBatcher(t, down, events.Config{Dir: dir, BufferSize: 20, FlushDelay: time.Hour})
	for i := range 35 {
		first.Emit(groupEvent(i))
	}
	if s := first.Stats(); s.Dropped != 15 || s.Buffered != 20 {
		t.Fatalf("stats = %+v, want 15 dropped and 20 buffered", s)
	}
	gone, cancel := context.WithCancel(t.Context())
	cancel()
	_ = first.Close(gone)

	srv := backendtest.New(t)
	key := srv.AddSatellite()
	second := newBatcher(t, newClient(srv.URL, key), events.Config{Dir: dir, BufferSize: 20})
	if err := second.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	got := srv.Events()
	checkExactlyOnce(t, got, 15, 35)
	if reports := dropReports(got); reports[events.ReasonBufferFull] != 15 || len(reports) != 1 {
		t.Errorf("drop reports = %v, want 15 for %q", reports, events.ReasonBufferFull)
	}
	assertEmptyQueue(t, dir)
}

// TestUnreadableQueue starts on a damaged queue file: the batcher starts anyway, keeps what it can read,
// and reports what it could not.
func TestUnreadableQueue(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		damage   func(t *testing.T, path string)
		kept     int  // events of the 20 on disk still delivered
		setAside bool // whether the file is moved aside
	}{
		{
			name:   "garbage",
			damage: func(t *testing.T, path string) { writeFile(t, path, []byte(strings.Repeat("not a queue ", 4096))) },
			kept:   0, setAside: true,
		},
		{
			name: "truncated",
			damage: func(t *testing.T, path string) {
				fi, err := os.Stat(path)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.Truncate(path, fi.Size()/2); err != nil {
					t.Fatal(err)
				}
			},
			setAside: true,
		},
		{
			name:     "empty",
			damage:   func(t *testing.T, path string) { writeFile(t, path, nil) },
			setAside: true,
		},
		{
			name: "undecodable record",
			damage: func(t *testing.T, path string) {
				db, err := bolt.Open(path, 0o600, nil)
				if err != nil {
					t.Fatal(err)
				}
				defer db.Close()
				if err := db.Update(func(tx *bolt.Tx) error {
					return tx.Bucket([]byte("events")).Put([]byte{0, 0, 0, 0, 0, 0, 0, 0}, []byte{0xff, 0xff})
				}); err != nil {
					t.Fatal(err)
				}
			},
			kept: 20,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			first := newBatcher(t, &recorder{err: unavailable}, events.Config{Dir: dir, FlushDelay: time.Hour})
			for i := range 20 {
				first.Emit(groupEvent(i))
			}
			gone, cancel := context.WithCancel(t.Context())
			cancel()
			_ = first.Close(gone)
			path := filepath.Join(dir, events.FileName)
			tc.damage(t, path)

			srv := backendtest.New(t)
			key := srv.AddSatellite()
			second := newBatcher(t, newClient(srv.URL, key), events.Config{Dir: dir})
			second.Emit(groupEvent(20))
			if err := second.Close(t.Context()); err != nil {
				t.Fatal(err)
			}
			got := srv.Events()
			if tc.kept == 20 {
				checkExactlyOnce(t, got, 0, 21)
			} else {
				checkExactlyOnce(t, got, 20, 21)
			}
			if reports := dropReports(got); reports[events.ReasonUnreadable] == 0 || len(reports) != 1 {
				t.Errorf("drop reports = %v, want a count for %q", reports, events.ReasonUnreadable)
			}
			aside, _ := filepath.Glob(path + ".unreadable-*")
			if tc.setAside != (len(aside) == 1) {
				t.Errorf("files set aside: %q, want one: %v", aside, tc.setAside)
			}
			assertEmptyQueue(t, dir)
		})
	}
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func dropReports(evs []*satellitev1.Event) map[string]uint64 {
	reports := map[string]uint64{}
	for _, ev := range evs {
		if d := ev.GetEventsDropped(); d != nil {
			reports[d.GetReason()] += d.GetCount()
		}
	}
	return reports
}

// assertEmptyQueue fails t unless a batcher started on dir finds nothing left to deliver or report.
func assertEmptyQueue(t *testing.T, dir string) {
	t.Helper()
	r := &recorder{}
	b, err := events.New(testLogger(t), r, events.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	s := b.Stats()
	if err := b.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	if s.Buffered != 0 || len(r.sent()) != 0 {
		t.Errorf("queue holds %d events and sent %d batches after delivery, want nothing", s.Buffered, len(r.sent()))
	}
}

// TestSavedWaitsForTheDisk: once Saved returns, every event emitted before it is committed, so a crash
// from then on loses none; a Batcher without a directory has nothing to wait for.
func TestSavedWaitsForTheDisk(t *testing.T) {
	t.Parallel()
	srv := backendtest.New(t)
	srv.SetDown(true) // nothing is delivered, so nothing leaves the queue but by the disk
	client := newClient(srv.URL, srv.AddSatellite())
	b := newBatcher(t, client, events.Config{Dir: t.TempDir(), FlushDelay: time.Hour})
	for i := range 50 {
		b.Emit(groupEvent(i))
		if err := b.Saved(t.Context()); err != nil {
			t.Fatalf("Saved after event %d: %v", i, err)
		}
		if s := b.Stats(); s.Unsaved != 0 {
			t.Fatalf("after Saved returned, %d of %d events are not on disk", s.Unsaved, i+1)
		}
	}
	inMemory := newBatcher(t, client, events.Config{FlushDelay: time.Hour})
	t.Cleanup(func() { srv.SetDown(false) }) // before the batchers close, so that closing delivers at once
	inMemory.Emit(groupEvent(0))
	if err := inMemory.Saved(t.Context()); err != nil {
		t.Errorf("Saved without a directory: %v", err)
	}
}
