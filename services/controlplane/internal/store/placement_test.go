package store_test

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orrery/orrery/internal/pgtest"
	"github.com/orrery/orrery/services/controlplane/internal/secrets"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// BenchmarkRecomputePlacement measures RecomputePlacement on PostgreSQL with 20,000 teams and 200 global
// satellites: the first placement, a recomputation that changes nothing (the periodic job's usual run), and
// one after a satellite fell silent past the grace period. Run with:
// go test -run '^$' -bench RecomputePlacement -benchtime 1x ./services/controlplane/internal/store/
func BenchmarkRecomputePlacement(b *testing.B) {
	st, pool := newStore(b)
	ctx := b.Context()
	if _, err := pool.Exec(ctx, `insert into teams (slug, name) select 'team-' || n, 'Team' from generate_series(1, 20000) n`); err != nil {
		b.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `insert into satellites (name, type, api_key_id, api_key_hash, activated_at, last_heartbeat_at)
		select 'sat-' || n, 'global', 'key-' || n, 'hash', now(), now() from generate_series(1, 200) n`); err != nil {
		b.Fatal(err)
	}
	opts := store.PlacementOptions{Grace: time.Minute}
	for b.Loop() {
		start := time.Now()
		first, err := st.RecomputePlacement(ctx, opts)
		if err != nil {
			b.Fatal(err)
		}
		initial := time.Since(start)
		start = time.Now()
		same, err := st.RecomputePlacement(ctx, opts)
		if err != nil {
			b.Fatal(err)
		}
		unchanged := time.Since(start)
		if _, err := pool.Exec(ctx, `update satellites set last_heartbeat_at = now() - interval '1 hour'
			where id = (select id from satellites order by id limit 1)`); err != nil {
			b.Fatal(err)
		}
		start = time.Now()
		failed, err := st.RecomputePlacement(ctx, opts)
		if err != nil {
			b.Fatal(err)
		}
		failure := time.Since(start)
		if first.Moved != 20000 || same.Moved != 0 || failed.Moved == 0 || failed.Moved > 400 {
			b.Fatalf("moved %d, then %d, then %d after a failure", first.Moved, same.Moved, failed.Moved)
		}
		b.ReportMetric(initial.Seconds(), "s-first")
		b.ReportMetric(unchanged.Seconds(), "s-unchanged")
		b.ReportMetric(failure.Seconds(), "s-after-failure")
		b.ReportMetric(float64(failed.Moved), "teams-moved-on-failure")
	}
}

// newStore returns a store on a fresh database, and the database's pool.
func newStore(tb testing.TB) (*store.Store, *pgxpool.Pool) {
	spec, err := secrets.NewKeySpec("test")
	if err != nil {
		tb.Fatal(err)
	}
	keyring, err := secrets.ParseKeyring(spec)
	if err != nil {
		tb.Fatal(err)
	}
	pool := pgtest.NewPool(tb)
	return store.New(pool, keyring), pool
}
