package apikey_test

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/orrery/orrery/services/controlplane/internal/apikey"
)

func TestKeyRoundTrip(t *testing.T) {
	t.Parallel()
	k, err := apikey.New()
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := apikey.Parse(k.String())
	if err != nil || parsed != k {
		t.Fatalf("Parse(%q) = %v, %v", k, parsed, err)
	}
	hash, err := apikey.Hash(t.Context(), k)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := apikey.Verify(t.Context(), k, hash); !ok || err != nil {
		t.Fatal("key does not verify against its own hash")
	}
	other, _ := apikey.New()
	if ok, _ := apikey.Verify(t.Context(), apikey.Key{ID: k.ID, Secret: other.Secret}, hash); ok {
		t.Fatal("another secret verified")
	}
	for _, bad := range []string{"", "orsat_", "orsat_abc_def", "token " + k.String()} {
		if _, err := apikey.Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}

func TestCacheRemembersOnlyMatchingKeys(t *testing.T) {
	t.Parallel()
	k, _ := apikey.New()
	hash, _ := apikey.Hash(t.Context(), k)
	cache := apikey.NewCache(10, time.Minute)
	for i := range 2 {
		if ok, err := cache.Verify(t.Context(), k, hash); !ok || err != nil {
			t.Fatalf("check %d: valid key refused", i+1)
		}
	}
	if runs := cache.Argon2Runs(); runs != 1 {
		t.Fatalf("two checks of one key ran Argon2 %d times, want 1", runs)
	}
	if !cache.Known(k, hash) {
		t.Fatal("Known does not remember the verified key")
	}
	wrong := apikey.Key{ID: k.ID, Secret: k.Secret + "x"}
	if ok, _ := cache.Verify(t.Context(), wrong, hash); ok {
		t.Fatal("cache accepted a different secret for a cached key id")
	}
	otherKey, _ := apikey.New()
	rotated, _ := apikey.Hash(t.Context(), otherKey)
	if ok, _ := cache.Verify(t.Context(), k, rotated); ok {
		t.Fatal("cache accepted the old secret after the stored hash changed")
	}
}

// BenchmarkVerify shows what the cache saves: Argon2 against a cache hit.
func BenchmarkVerify(b *testing.B) {
	k, _ := apikey.New()
	hash, _ := apikey.Hash(b.Context(), k)
	b.Run("argon2", func(b *testing.B) {
		for b.Loop() {
			_, _ = apikey.Verify(b.Context(), k, hash)
		}
	})
	b.Run("cached", func(b *testing.B) {
		cache := apikey.NewCache(10, time.Minute)
		_, _ = cache.Verify(b.Context(), k, hash)
		for b.Loop() {
			_, _ = cache.Verify(b.Context(), k, hash)
		}
	})
}

// TestCacheSharedHashAndSlidingLifetime checks that keys sharing a stored hash cost one Argon2 run, and that
// a key in use stays remembered past the cache's lifetime while an unused one is forgotten.
func TestCacheSharedHashAndSlidingLifetime(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		k, _ := apikey.New()
		hash, _ := apikey.Hash(t.Context(), k)
		twin, _ := apikey.New()
		twin.Secret = k.Secret
		const ttl = time.Minute
		cache := apikey.NewCache(10, ttl)
		for _, key := range []apikey.Key{k, twin} {
			if ok, err := cache.Verify(t.Context(), key, hash); !ok || err != nil {
				t.Fatalf("key %s refused: %v", key.ID, err)
			}
		}
		if runs := cache.Argon2Runs(); runs != 1 {
			t.Fatalf("two keys sharing one hash ran Argon2 %d times, want 1", runs)
		}
		// Used every 20 s for five lifetimes: never forgotten.
		for range 15 {
			time.Sleep(20 * time.Second)
			if !cache.Known(k, hash) {
				t.Fatal("a key in use was forgotten")
			}
		}
		time.Sleep(ttl + time.Second)
		if cache.Known(k, hash) {
			t.Fatal("a key unused for longer than the lifetime is still remembered")
		}
	})
}
