package pool

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// TestHomesDeletedAfterGrace: a member whose team leaves the configuration keeps their home for the
// grace period, and loses it after; a member back within the grace period keeps it, and so does a
// member without instances of a team still here.
func TestHomesDeletedAfterGrace(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		members := []Member{{"acme", "ann"}, {"acme", "bob"}, {"globex", "cid"}}
		var forgotten []Member
		changes := make(chan struct{}, 1)
		set := func(m ...Member) {
			mu.Lock()
			members = m
			mu.Unlock()
			changes <- struct{}{}
		}
		j := &HomeJanitor{
			Members: func() []Member { mu.Lock(); defer mu.Unlock(); return slices.Clone(members) },
			Changes: changes,
			Forget: func(team, user string) (bool, error) {
				mu.Lock()
				defer mu.Unlock()
				forgotten = append(forgotten, Member{team, user})
				return true, nil
			},
			Grace: time.Hour,
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- j.Run(ctx) }()
		synctest.Wait()
		set(Member{"acme", "ann"}) // globex leaves, and bob uninstalls his servers
		time.Sleep(30 * time.Minute)
		set() // acme leaves too
		time.Sleep(20 * time.Minute)
		set(Member{"acme", "ann"}) // acme comes back within its grace
		time.Sleep(20 * time.Minute)
		synctest.Wait()
		mu.Lock()
		got := slices.Clone(forgotten)
		mu.Unlock()
		if want := []Member{{"globex", "cid"}}; !slices.Equal(got, want) {
			t.Errorf("forgotten %v, want %v", got, want)
		}
		set() // acme leaves for good
		time.Sleep(80 * time.Minute)
		synctest.Wait()
		mu.Lock()
		got = slices.Clone(forgotten)
		mu.Unlock()
		if len(got) > 1 {
			slices.SortFunc(got[1:], func(a, b Member) int { return strings.Compare(a.UserID, b.UserID) })
		}
		if want := []Member{{"globex", "cid"}, {"acme", "ann"}, {"acme", "bob"}}; !slices.Equal(got, want) {
			t.Errorf("forgotten %v, want %v", got, want)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}
