package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/protobuf/types/known/durationpb"

	adminv1 "github.com/orrery/orrery/gen/orrery/admin/v1"
	"github.com/orrery/orrery/gen/orrery/admin/v1/adminv1connect"
	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/gen/orrery/satellite/v1/satellitev1connect"
)

// Config says how big a fleet to simulate and what to measure.
type Config struct {
	// Satellites is the number held long-polling. Default 10,000.
	Satellites int
	// ControlPlane is the control-plane binary to start. Required.
	ControlPlane string
	// Commands is the number of commands whose dispatch latency is measured. Default 1,000.
	Commands int
	// Throughput is how long Heartbeat + PollCommands throughput is measured. Default 10 s.
	Throughput time.Duration
	// Workers is the number of concurrent callers in the throughput phase. Default 64.
	Workers int
	// ThroughputPollWait is how long each poll of the throughput phase may be held. Satellites' polls wait
	// (PollWait); these wait just long enough to be served as a held poll is, which for a satellite with
	// nothing pending needs no database read. Zero sends polls that do not wait, which read it every time.
	ThroughputPollWait time.Duration
	// Idle is how long the connected fleet idles while the replica's CPU is measured. Default 30 s.
	Idle time.Duration
	// PollWait is how long each poll may be held, as satellites ask. Default 25 s.
	PollWait time.Duration
	// PoolMaxConns, when positive, sets the replica's database pool size (pgx's pool_max_conns in its
	// database URL). Zero keeps the control plane's default.
	PoolMaxConns int
	// ReplicaMemoryLimit, when set, is the replica's soft memory limit (its GOMEMLIMIT, such as "800MiB").
	// Empty leaves the replica the environment's GOMEMLIMIT, if any.
	ReplicaMemoryLimit string
	// NoCeiling skips the throughput phase against an empty Connect handler (see measureCeiling).
	NoCeiling bool
}

func (c Config) withDefaults() Config {
	if c.Satellites <= 0 {
		c.Satellites = 10_000
	}
	if c.Commands <= 0 {
		c.Commands = 1000
	}
	if c.Throughput <= 0 {
		c.Throughput = 10 * time.Second
	}
	if c.Workers <= 0 {
		c.Workers = 64
	}
	if c.Idle <= 0 {
		c.Idle = 30 * time.Second
	}
	if c.PollWait <= 0 {
		c.PollWait = 25 * time.Second
	}
	return c
}

// Result is what one run measured.
type Result struct {
	Satellites int
	// ConnectTime is from the first satellite's start to every satellite's heartbeat being recorded.
	ConnectTime time.Duration
	// RSS is the replica's resident memory with the whole fleet connected, after the idle period; PeakRSS
	// is its high-water mark over the whole run.
	RSS, PeakRSS int64
	// BaseRSS is the replica's resident memory before the fleet connected.
	BaseRSS int64
	// IdleCPU is the replica's CPU time over the idle period, as a share of one core.
	IdleCPU float64
	// IdleRequestsPerMinute is the polls each satellite sent a minute over the idle period; they carry its
	// heartbeats, so they are all its requests.
	IdleRequestsPerMinute float64
	// Dispatch holds the latency of each command, from the EnqueueCommand call to receipt, sorted.
	Dispatch []time.Duration
	// Lost counts commands that did not arrive within 10 s.
	Lost int
	// Throughput is Heartbeat + PollCommands requests per second; Failures counts those that failed.
	Throughput float64
	Failures   int64
	// ThroughputPollWait is how long the throughput phase's polls could be held.
	ThroughputPollWait time.Duration
	// ReplicaCPUPerRequest and GeneratorCPUPerRequest are CPU time per request in the throughput phase, of
	// the replica and of this process.
	ReplicaCPUPerRequest, GeneratorCPUPerRequest time.Duration
	// DatabaseCPUPerRequest is PostgreSQL's CPU time per request in the throughput phase.
	DatabaseCPUPerRequest time.Duration
	// PGConnections is the most connections the replica held to PostgreSQL at once.
	PGConnections int
	// PollErrors counts long polls that failed.
	PollErrors int64
	// Load is the machine's load average (1, 5, 15 min) when the measurements ended.
	Load string
	// CPUs is the number of CPUs of the machine.
	CPUs int
	// Ceiling is the same throughput phase against an empty Connect handler, nil when skipped.
	Ceiling *Ceiling
}

// percentile returns the p-th percentile (0-100) of sorted durations.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(float64(len(sorted))*p/100))]
}

// Print writes the result as a table.
func (r Result) Print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	mib := func(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }
	fmt.Fprintf(tw, "measure\tvalue\ttarget\t\n")
	fmt.Fprintf(tw, "satellites long-polling, each on its own HTTP/2 connection\t%d\t10,000\t\n", r.Satellites)
	fmt.Fprintf(tw, "time until every satellite was heard\t%v\t\t\n", r.ConnectTime.Round(time.Millisecond))
	fmt.Fprintf(tw, "replica RSS with the fleet connected (peak)\t%s (%s)\t< 1 GiB\t\n", mib(r.RSS), mib(r.PeakRSS))
	fmt.Fprintf(tw, "replica RSS per connected satellite (above %s before)\t%.1f KiB\t\t\n", mib(r.BaseRSS),
		float64(r.RSS-r.BaseRSS)/float64(r.Satellites)/1024)
	fmt.Fprintf(tw, "replica CPU while the fleet idles\t%.1f%% of a core\t\t\n", 100*r.IdleCPU)
	fmt.Fprintf(tw, "requests per idle satellite\t%.2f/min\t<= 3/min\t\n", r.IdleRequestsPerMinute)
	fmt.Fprintf(tw, "dispatch latency p50 / p99 / max (%d commands)\t%v / %v / %v\tp99 < 20 ms\t\n", len(r.Dispatch),
		percentile(r.Dispatch, 50).Round(10*time.Microsecond), percentile(r.Dispatch, 99).Round(10*time.Microsecond),
		percentile(r.Dispatch, 100).Round(10*time.Microsecond))
	fmt.Fprintf(tw, "commands lost\t%d\t0\t\n", r.Lost)
	fmt.Fprintf(tw, "Heartbeat + PollCommands throughput (polls held <= %v)\t%.0f req/s (%d failed)\t>= 8,000 req/s\t\n",
		r.ThroughputPollWait, r.Throughput, r.Failures)
	fmt.Fprintf(tw, "CPU per request: replica / PostgreSQL / load generator\t%v / %v / %v\t\t\n", r.ReplicaCPUPerRequest.Round(time.Microsecond),
		r.DatabaseCPUPerRequest.Round(time.Microsecond), r.GeneratorCPUPerRequest.Round(time.Microsecond))
	if c := r.Ceiling; c != nil {
		fmt.Fprintf(tw, "the same against an empty Connect handler (the HTTP/2 + Connect ceiling)\t%.0f req/s (%d failed)\t\t\n", c.Throughput, c.Failures)
		fmt.Fprintf(tw, "CPU per request: empty handler's server / load generator\t%v / %v\t\t\n",
			c.ServerCPUPerRequest.Round(time.Microsecond), c.GeneratorCPUPerRequest.Round(time.Microsecond))
	}
	fmt.Fprintf(tw, "PostgreSQL connections of the replica (most at once)\t%d\tthe pool\t\n", r.PGConnections)
	fmt.Fprintf(tw, "long polls failed\t%d\t0\t\n", r.PollErrors)
	fmt.Fprintf(tw, "machine\t%d CPUs, load average %s\t\t\n", r.CPUs, r.Load)
	_ = tw.Flush()
}

// Run starts a private PostgreSQL and a control plane, holds cfg.Satellites satellites long-polling it and
// measures; then, unless cfg.NoCeiling, it measures the ceiling once the replica has stopped. Progress goes
// to log.
func Run(ctx context.Context, cfg Config, log io.Writer) (Result, error) {
	cfg = cfg.withDefaults()
	res, err := measureReplica(ctx, cfg, log)
	if err != nil || cfg.NoCeiling {
		return res, err
	}
	logStep(log, "measuring the same throughput against an empty Connect handler, %d satellites connected", cfg.Satellites)
	c, err := measureCeiling(ctx, cfg)
	res.Ceiling = &c
	return res, err
}

// logStep writes a step of the run to log, with the time.
func logStep(log io.Writer, format string, args ...any) {
	fmt.Fprintf(log, "%s  %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

// measureReplica measures the replica, and stops it and its database before it returns.
func measureReplica(ctx context.Context, cfg Config, log io.Writer) (Result, error) {
	res := Result{Satellites: cfg.Satellites, CPUs: runtime.NumCPU()}
	if cfg.ControlPlane == "" {
		return res, errors.New("no control-plane binary")
	}
	step := func(format string, args ...any) { logStep(log, format, args...) }

	step("starting PostgreSQL")
	db, err := startDatabase(ctx)
	if err != nil {
		return res, err
	}
	defer db.stop()
	step("starting the control plane")
	replicaURL := db.url
	if cfg.PoolMaxConns > 0 {
		replicaURL += fmt.Sprintf("&pool_max_conns=%d", cfg.PoolMaxConns)
	}
	cp, err := startReplica(ctx, cfg.ControlPlane, replicaURL, cfg.ReplicaMemoryLimit, log)
	if err != nil {
		return res, err
	}
	defer cp.stop()
	pid := cp.cmd.Process.Pid
	poolConfig, err := pgxpool.ParseConfig(db.url)
	if err != nil {
		return res, err
	}
	// Named, so that counting the replica's connections leaves this process's out.
	poolConfig.ConnConfig.RuntimeParams["application_name"] = "fleet-bench"
	pool, err := pgxpool.NewWithConfig(ctx, poolConfig)
	if err != nil {
		return res, err
	}
	defer pool.Close()

	// Satellites reach a production control plane over TLS with HTTP/2; h2c is its loopback equivalent.
	protocols := new(http.Protocols)
	protocols.SetUnencryptedHTTP2(true)
	adminClient := adminv1connect.NewAdminServiceClient(&http.Client{Transport: &http.Transport{Protocols: protocols}},
		cp.url, connect.WithInterceptors(bearer(cp.adminToken)))

	step("creating %d satellites", cfg.Satellites)
	sims, err := createSatellites(ctx, adminClient, pool, cp.url, cfg.Satellites, protocols, cfg.PollWait)
	if err != nil {
		return res, err
	}

	base, err := readProcStats(pid)
	if err != nil {
		return res, err
	}
	res.BaseRSS = base.rss

	// The database connections the replica holds, sampled throughout.
	sampleCtx, stopSampling := context.WithCancel(ctx)
	defer stopSampling()
	var pgMax atomic.Int64
	go func() {
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			var n int64
			if err := pool.QueryRow(sampleCtx, `select count(*) from pg_stat_activity
				where datname = current_database() and application_name <> 'fleet-bench'`).Scan(&n); err == nil {
				if n > pgMax.Load() {
					pgMax.Store(n)
				}
			}
			select {
			case <-sampleCtx.Done():
				return
			case <-tick.C:
			}
		}
	}()

	started := time.Now()
	step("connecting the fleet")
	for _, s := range sims {
		s.log = log
	}
	fleet := startFleet(ctx, sims)
	defer fleet.stop()
	if err := waitHeard(ctx, pool, started, len(sims)); err != nil {
		return res, err
	}
	res.ConnectTime = time.Since(started)
	step("every satellite heard in %v; idling %v", res.ConnectTime.Round(time.Millisecond), cfg.Idle)

	before, err := readProcStats(pid)
	if err != nil {
		return res, err
	}
	pollsBefore := fleet.polls.Load()
	idleStart := time.Now()
	select {
	case <-time.After(cfg.Idle):
	case <-ctx.Done():
		return res, ctx.Err()
	}
	after, err := readProcStats(pid)
	if err != nil {
		return res, err
	}
	idle := time.Since(idleStart)
	res.IdleCPU = (after.cpu - before.cpu).Seconds() / idle.Seconds()
	res.IdleRequestsPerMinute = float64(fleet.polls.Load()-pollsBefore) / float64(len(sims)) / idle.Minutes()
	res.RSS = after.rss

	step("measuring dispatch latency over %d commands", cfg.Commands)
	res.Dispatch, res.Lost, err = measureDispatch(ctx, adminClient, sims, cfg.Commands)
	if err != nil {
		return res, err
	}

	step("measuring Heartbeat + PollCommands throughput for %v with %d workers", cfg.Throughput, cfg.Workers)
	before, _ = readProcStats(pid)
	selfBefore, dbBefore := selfCPU(), db.cpu()
	requests, failures := measureThroughput(ctx, sims, cfg.Workers, cfg.Throughput, cfg.ThroughputPollWait)
	after, _ = readProcStats(pid)
	selfAfter, dbAfter := selfCPU(), db.cpu()
	res.Throughput, res.ThroughputPollWait = float64(requests)/cfg.Throughput.Seconds(), cfg.ThroughputPollWait
	res.Failures = failures
	if requests > 0 {
		res.ReplicaCPUPerRequest = (after.cpu - before.cpu) / time.Duration(requests)
		res.GeneratorCPUPerRequest = (selfAfter - selfBefore) / time.Duration(requests)
		res.DatabaseCPUPerRequest = (dbAfter - dbBefore) / time.Duration(requests)
	}
	res.PeakRSS = after.peakRSS
	res.PGConnections = int(pgMax.Load())
	res.PollErrors = fleet.pollErrors.Load()
	if load, err := os.ReadFile("/proc/loadavg"); err == nil {
		res.Load = strings.Join(strings.Fields(string(load))[:3], " ")
	}
	return res, nil
}

// fleet is sims long-polling.
type fleet struct {
	// polls counts the polls sent; pollErrors those that failed.
	polls, pollErrors atomic.Int64
	stop              func()
}

// newSim is a satellite with id that polls url over a connection of its own, waiting wait.
func newSim(id, url string, protocols *http.Protocols, wait time.Duration, opts ...connect.ClientOption) *sim {
	client := &http.Client{Transport: &http.Transport{Protocols: protocols}, Timeout: wait + 15*time.Second}
	return &sim{id: id, wait: wait, got: make(chan delivery, 4),
		client: satellitev1connect.NewSatelliteServiceClient(client, url, opts...)}
}

// startFleet starts every sim polling until ctx ends or stop is called, which waits for them.
func startFleet(ctx context.Context, sims []*sim) *fleet {
	f := &fleet{}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	f.stop = func() {
		cancel()
		wg.Wait()
	}
	for i, s := range sims {
		wg.Go(func() { s.run(ctx, &f.polls, &f.pollErrors) })
		if i%100 == 99 {
			time.Sleep(10 * time.Millisecond) // a fleet arriving at 10,000 a second, not in one instant
		}
	}
	return f
}

// sim is one simulated satellite: its own connection, polling as the satellite's backend does.
type sim struct {
	id     string
	client satellitev1connect.SatelliteServiceClient
	wait   time.Duration
	// got receives the commands its polls deliver, with the time they arrived.
	got chan delivery
	// log receives the first few failures of the fleet's polls.
	log io.Writer
}

type delivery struct {
	id string
	at time.Time
}

// run long-polls until ctx ends. Like a satellite, it carries a heartbeat on a poll when half a heartbeat
// interval (30 s) has passed since the last, and reports each command's result.
func (s *sim) run(ctx context.Context, polls, failures *atomic.Int64) {
	var lastBeat time.Time
	for ctx.Err() == nil {
		polls.Add(1)
		req := &satellitev1.PollCommandsRequest{Wait: durationpb.New(s.wait)}
		if time.Since(lastBeat) >= 15*time.Second {
			req.Heartbeat = &satellitev1.HeartbeatRequest{System: &satellitev1.SystemMetrics{CpuPercent: 3, MemoryTotalBytes: 1 << 30}}
		}
		sent := time.Now()
		resp, err := s.client.PollCommands(ctx, connect.NewRequest(req))
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if failures.Add(1) <= 5 {
				fmt.Fprintf(s.log, "%s  satellite %s: poll failed: %v\n", time.Now().Format("15:04:05.000"), s.id, err)
			}
			select {
			case <-ctx.Done():
			case <-time.After(time.Second + rand.N(time.Second)):
			}
			continue
		}
		if resp.Msg.Heartbeat != nil {
			lastBeat = sent
		}
		now := time.Now()
		for _, c := range resp.Msg.Commands {
			select {
			case s.got <- delivery{id: c.Id, at: now}:
			default:
			}
			_, _ = s.client.ReportCommandResult(ctx, connect.NewRequest(&satellitev1.ReportCommandResultRequest{
				CommandId: c.Id, Result: satellitev1.CommandResult_COMMAND_RESULT_COMPLETED,
			}))
		}
	}
}

// createSatellites registers one satellite through the API and copies it n-1 times in one statement: the
// copies share its secret and its stored hash under keys of their own, so the replica verifies one Argon2
// hash for all of them, while every request still authenticates by its own key id and row. The copies
// start active.
func createSatellites(ctx context.Context, admin adminv1connect.AdminServiceClient, pool *pgxpool.Pool, url string, n int, protocols *http.Protocols, wait time.Duration) ([]*sim, error) {
	tok, err := admin.CreateRegistrationToken(ctx, connect.NewRequest(&adminv1.CreateRegistrationTokenRequest{
		Name: "fleet", Scope: adminv1.TokenScope_TOKEN_SCOPE_GLOBAL, Ttl: durationpb.New(time.Hour),
	}))
	if err != nil {
		return nil, fmt.Errorf("create registration token: %w", err)
	}
	reg, err := satellitev1connect.NewSatelliteServiceClient(http.DefaultClient, url).Register(ctx,
		connect.NewRequest(&satellitev1.RegisterRequest{RegistrationToken: tok.Msg.Token, Name: "fleet-0", Version: "fleet"}))
	if err != nil {
		return nil, fmt.Errorf("register: %w", err)
	}
	// orsat_<24 hex digits of key id>_<secret>
	key := reg.Msg.ApiKey
	const prefix, idLen = "orsat_", 24
	if len(key) < len(prefix)+idLen+2 || !strings.HasPrefix(key, prefix) {
		return nil, fmt.Errorf("unexpected API key shape %q", key[:min(len(key), 8)])
	}
	secret := key[len(prefix)+idLen+1:]
	if _, err := pool.Exec(ctx, "update satellites set activated_at = now(), last_heartbeat_at = now() where id = $1", reg.Msg.SatelliteId); err != nil {
		return nil, err
	}
	rows, err := pool.Query(ctx, `
		insert into satellites (name, type, api_key_id, api_key_hash, version, activated_at, last_heartbeat_at)
		select 'fleet-' || i, 'global', substr(md5($1 || '-' || i), 1, 24), s.api_key_hash, 'fleet', now(), now()
		from satellites s, generate_series(1, $2::int) i
		where s.id = $3
		returning id::text, api_key_id`, random(8), n-1, reg.Msg.SatelliteId)
	if err != nil {
		return nil, err
	}
	type created struct{ id, keyID string }
	all := []created{{id: reg.Msg.SatelliteId, keyID: key[len(prefix) : len(prefix)+idLen]}}
	for rows.Next() {
		var c created
		if err := rows.Scan(&c.id, &c.keyID); err != nil {
			return nil, err
		}
		all = append(all, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("create satellites: %w", err)
	}
	sims := make([]*sim, len(all))
	for i, c := range all {
		// Each satellite dials its own connection, as separate machines do.
		sims[i] = newSim(c.id, url, protocols, wait, connect.WithInterceptors(bearer(prefix+c.keyID+"_"+secret)))
	}
	return sims, nil
}

// waitHeard waits until every satellite's heartbeat since start is recorded: each has then sent its first
// poll, which the replica holds once it has recorded the heartbeat it carried.
func waitHeard(ctx context.Context, pool *pgxpool.Pool, start time.Time, n int) error {
	deadline := time.Now().Add(5 * time.Minute)
	for {
		var heard int
		if err := pool.QueryRow(ctx, "select count(*) from satellites where last_heartbeat_at >= $1", start).Scan(&heard); err != nil {
			return err
		}
		if heard >= n {
			// The poll's claim follows its heartbeat at once; give the last ones time to settle into their wait.
			time.Sleep(200*time.Millisecond + time.Duration(n)*200*time.Microsecond)
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d satellites heard within 5 minutes", heard, n)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// measureDispatch enqueues commands one after another, each for a satellite picked at random, and times each
// from the EnqueueCommand call until the satellite's poll returned it.
func measureDispatch(ctx context.Context, admin adminv1connect.AdminServiceClient, sims []*sim, n int) ([]time.Duration, int, error) {
	latencies := make([]time.Duration, 0, n)
	lost := 0
	for range n {
		s := sims[rand.N(len(sims))]
		start := time.Now()
		resp, err := admin.EnqueueCommand(ctx, connect.NewRequest(&adminv1.EnqueueCommandRequest{
			Target:   &adminv1.EnqueueCommandRequest_SatelliteId{SatelliteId: s.id},
			Priority: satellitev1.CommandPriority_COMMAND_PRIORITY_IMMEDIATE,
			Action: &adminv1.EnqueueCommandRequest_Configure{Configure: &satellitev1.ConfigureAction{
				Event: satellitev1.ConfigureEvent_CONFIGURE_EVENT_INSTALLATION_UPDATED,
			}},
		}))
		if err != nil {
			return nil, 0, fmt.Errorf("enqueue command: %w", err)
		}
		id := resp.Msg.Commands[0].GetCommand().GetId()
		timeout := time.After(10 * time.Second)
	wait:
		for {
			select {
			case d := <-s.got:
				if d.id == id {
					latencies = append(latencies, d.at.Sub(start))
					break wait
				}
			case <-timeout:
				lost++
				break wait
			case <-ctx.Done():
				return nil, 0, ctx.Err()
			}
		}
		time.Sleep(2 * time.Millisecond) // let the satellite report and poll again
	}
	slices.Sort(latencies)
	return latencies, lost, nil
}

// measureThroughput sends Heartbeat + PollCommands (each poll held at most pollWait) from workers, each
// request as a satellite in turn, for d, and returns the requests answered and failed.
func measureThroughput(ctx context.Context, sims []*sim, workers int, d, pollWait time.Duration) (requests, failures int64) {
	var ok, failed, next atomic.Int64
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for time.Now().Before(deadline) && ctx.Err() == nil {
				s := sims[int(next.Add(1))%len(sims)]
				_, err := s.client.Heartbeat(ctx, connect.NewRequest(&satellitev1.HeartbeatRequest{
					System: &satellitev1.SystemMetrics{CpuPercent: 3, MemoryTotalBytes: 1 << 30},
				}))
				count(err, &ok, &failed)
				_, err = s.client.PollCommands(ctx, connect.NewRequest(&satellitev1.PollCommandsRequest{Wait: durationpb.New(pollWait)}))
				count(err, &ok, &failed)
			}
		})
	}
	wg.Wait()
	return ok.Load(), failed.Load()
}

func count(err error, ok, failed *atomic.Int64) {
	if err != nil {
		failed.Add(1)
	} else {
		ok.Add(1)
	}
}

func bearer(token string) connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			req.Header().Set("Authorization", "Bearer "+token)
			return next(ctx, req)
		}
	}
}
