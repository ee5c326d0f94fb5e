package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"

	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	"github.com/orrery/orrery/gen/orrery/api/v1/apiv1connect"
	"github.com/orrery/orrery/services/controlplane/internal/accountapi"
	"github.com/orrery/orrery/services/controlplane/internal/password"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// loginBurst is what a burst of parallel sign-ins cost the replica's process.
type loginBurst struct {
	codes    map[connect.Code]int // answers by code, 0 for success
	samples  map[connect.Code]error
	elapsed  time.Duration
	baseHeap uint64 // HeapAlloc just before the burst
	peakHeap uint64 // the highest HeapAlloc sampled during the burst
}

func (l loginBurst) String() string {
	counts := ""
	for code, n := range l.codes {
		counts += fmt.Sprintf(" %s=%d", codeName(code), n)
	}
	total := 0
	for _, n := range l.codes {
		total += n
	}
	return fmt.Sprintf("%d sign-ins in %v (%.1f/s), answers:%s; heap %.0f MiB before, peak %.0f MiB (+%.0f MiB)",
		total, l.elapsed.Round(time.Millisecond), float64(total)/l.elapsed.Seconds(), counts,
		mib(l.baseHeap), mib(l.peakHeap), mib(l.peakHeap-min(l.peakHeap, l.baseHeap)))
}

func mib(n uint64) float64 { return float64(n) / (1 << 20) }

// parallelLogins sends n sign-ins at once to url, the i-th built by request, and samples the process's heap
// until every one is answered. The replica runs in this process, so its Argon2 work shows in the heap.
func parallelLogins(t testing.TB, url string, n int, request func(i int) *connect.Request[apiv1.LoginRequest]) loginBurst {
	t.Helper()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	burst := loginBurst{codes: map[connect.Code]int{}, baseHeap: ms.HeapAlloc, peakHeap: ms.HeapAlloc}

	stop := make(chan struct{})
	sampled := make(chan uint64)
	go func() {
		peak := uint64(0)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapAlloc)
			select {
			case <-stop:
				sampled <- peak
				return
			case <-tick.C:
			}
		}
	}()

	// Every sign-in its own connection, as from separate clients.
	accounts := apiv1connect.NewAccountServiceClient(&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}, url)
	errs := make([]error, n)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, err := accounts.Login(ctx, request(i))
			errs[i] = err
		})
	}
	wg.Wait()
	burst.elapsed = time.Since(start)
	close(stop)
	burst.peakHeap = max(burst.peakHeap, <-sampled)
	burst.samples = map[connect.Code]error{}
	for _, err := range errs {
		c := connect.CodeOf(err)
		if err == nil {
			c = 0
		}
		burst.codes[c]++
		burst.samples[c] = err
	}
	return burst
}

// forwardedFor makes a request look as if a trusted proxy forwarded it from addr.
func forwardedFor[T any](req *connect.Request[T], addr netip.Addr) *connect.Request[T] {
	req.Header().Set("X-Forwarded-For", addr.String())
	return req
}

// burstAddress is the i-th of distinct client addresses, in the benchmarking range 198.18.0.0/15.
func burstAddress(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
}

// TestParallelLogins sends 200 sign-ins at once, half of them with the right password and half for unknown
// emails, first from 200 client addresses behind a trusted proxy, then from one address. Every one is
// answered: signed in, refused, or resource_exhausted with a retry hint. From many addresses the sign-ins
// queue for Argon2, so the replica's heap stays bounded: Argon2 needs 19 MiB a run, and 200 runs at once
// took 1.7 to 2.4 GiB before they queued. From one address all but a burst are turned away before any
// Argon2 work.
//
// It does not run in parallel with other tests, so the heap it samples is this test's. With -v it prints
// the figures: go test -count=1 -run '^TestParallelLogins$' -v ./services/controlplane/internal/server/
func TestParallelLogins(t *testing.T) {
	b := setup(t, setupOpts{trustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	newCaller(t, b.store(), "crowd@example.test", store.RoleGlobalUser)
	request := func(i int) *connect.Request[apiv1.LoginRequest] {
		req := &apiv1.LoginRequest{Email: "crowd@example.test", Password: "correct horse battery staple"}
		if i%2 == 1 {
			req.Email = fmt.Sprintf("nobody-%d@example.test", i)
		}
		return connect.NewRequest(req)
	}
	checkAnswers := func(burst loginBurst) {
		t.Helper()
		for code, err := range burst.samples {
			switch code {
			case 0, connect.CodeUnauthenticated:
			case connect.CodeResourceExhausted:
				if ce := new(connect.Error); !errors.As(err, &ce) || ce.Meta().Get("Retry-After") == "" {
					t.Errorf("resource_exhausted without a retry hint: %v", err)
				}
			default:
				t.Errorf("%d sign-ins answered %v", burst.codes[code], err)
			}
		}
	}

	spread := parallelLogins(t, b.replicas[0].url, 200, func(i int) *connect.Request[apiv1.LoginRequest] {
		return forwardedFor(request(i), burstAddress(i))
	})
	t.Logf("GOMAXPROCS %d, %d Argon2 slots; from 200 addresses: %v", runtime.GOMAXPROCS(0), password.Slots(), spread)
	checkAnswers(spread)
	const argon2Memory = 19 << 20
	if limit := spread.baseHeap + 64<<20 + 4*uint64(password.Slots())*argon2Memory; spread.peakHeap > limit {
		t.Errorf("peak heap %.0f MiB, want at most %.0f MiB", mib(spread.peakHeap), mib(limit))
	}
	if spread.codes[0] == 0 {
		t.Error("nobody signed in")
	}

	single := parallelLogins(t, b.replicas[0].url, 200, request)
	t.Logf("from one address: %v", single)
	checkAnswers(single)
	if limited := single.codes[connect.CodeResourceExhausted]; limited < 170 {
		t.Errorf("%d of 200 sign-ins from one address turned away, want all but about a burst of 20", limited)
	}
}

// rawLogin signs in with a Connect JSON request and returns the whole answer: status, headers but Date,
// and body.
func rawLogin(t *testing.T, url, email, pass, forwardedFor string) (int, http.Header, string) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"email": email, "password": pass})
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url+"/orrery.api.v1.AccountService/Login", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if forwardedFor != "" {
		req.Header.Set("X-Forwarded-For", forwardedFor)
	}
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	resp.Header.Del("Date")
	return resp.StatusCode, resp.Header, string(got)
}

// TestLoginEnumeration is an attacker telling accounts apart by how sign-in answers: a locked account
// (even with its right password), an unknown email and a wrong password get the same status, headers and
// body. The lock still holds, and is audited.
func TestLoginEnumeration(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	url := b.replicas[0].url
	locked := newCaller(t, b.store(), "locked@example.test", store.RoleGlobalUser)
	newCaller(t, b.store(), "known@example.test", store.RoleGlobalUser)
	for range 5 {
		rawLogin(t, url, "locked@example.test", "guess", "")
	}
	type answer struct {
		status int
		header http.Header
		body   string
	}
	var answers []answer
	for _, c := range []struct{ email, pass string }{
		{"locked@example.test", "correct horse battery staple"},
		{"unknown@example.test", "correct horse battery staple"},
		{"known@example.test", "a wrong password"},
	} {
		status, header, body := rawLogin(t, url, c.email, c.pass, "")
		answers = append(answers, answer{status, header, body})
	}
	for i, a := range answers[1:] {
		if a.status != answers[0].status || a.body != answers[0].body || !equalHeaders(a.header, answers[0].header) {
			t.Errorf("answer %d differs from the locked account's:\n%d %v %s\n%d %v %s", i+2,
				answers[0].status, answers[0].header, answers[0].body, a.status, a.header, a.body)
		}
	}
	if answers[0].status != http.StatusUnauthorized {
		t.Errorf("status %d, want 401", answers[0].status)
	}
	events, err := b.store().ListAuditEvents(t.Context(), nil, 1<<62, 100)
	if err != nil {
		t.Fatal(err)
	}
	refused := 0
	for _, e := range events {
		if e.Action == "login.refused_locked" && e.ActorID != nil && *e.ActorID == locked.user.ID {
			refused++
		}
	}
	if refused != 1 {
		t.Errorf("%d login.refused_locked events for the locked account, want 1", refused)
	}
}

// TestLoginRateLimit limits sign-in attempts per client address, known and unknown emails alike, and says
// when to try again; other addresses are not held back.
func TestLoginRateLimit(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{
		accounts:       accountapi.Config{LoginsPerMinute: 1, LoginBurst: 3},
		trustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
	})
	newCaller(t, b.store(), "busy@example.test", store.RoleGlobalUser)
	url := b.replicas[0].url
	for i, email := range []string{"busy@example.test", "nobody@example.test", "busy@example.test"} {
		if status, _, body := rawLogin(t, url, email, "wrong", "192.0.2.1"); status != http.StatusUnauthorized {
			t.Fatalf("attempt %d: %d %s, want 401", i+1, status, body)
		}
	}
	for _, email := range []string{"busy@example.test", "nobody@example.test"} {
		// The right password does not get through either: the limit comes before any check.
		status, header, body := rawLogin(t, url, email, "correct horse battery staple", "192.0.2.1")
		if status != http.StatusTooManyRequests || !strings.Contains(body, "resource_exhausted") {
			t.Fatalf("attempt past the limit for %s: %d %s, want resource_exhausted", email, status, body)
		}
		if s, err := strconv.Atoi(header.Get("Retry-After")); err != nil || s < 1 || s > 60 {
			t.Errorf("Retry-After %q, want whole seconds up to a minute", header.Get("Retry-After"))
		}
	}
	_, err := accountClient(url, connect.WithInterceptors(withHeader("X-Forwarded-For", "192.0.2.1"))).Login(t.Context(),
		connect.NewRequest(&apiv1.LoginRequest{Email: "busy@example.test", Password: "x"}))
	var retry *errdetails.RetryInfo
	if ce := new(connect.Error); errors.As(err, &ce) {
		for _, d := range ce.Details() {
			if v, err := d.Value(); err == nil {
				retry, _ = v.(*errdetails.RetryInfo)
			}
		}
	}
	if retry == nil || retry.RetryDelay.AsDuration() <= 0 {
		t.Errorf("error %v carries no RetryInfo", err)
	}
	if status, _, body := rawLogin(t, url, "busy@example.test", "correct horse battery staple", "192.0.2.2"); status != http.StatusOK {
		t.Errorf("another address: %d %s, want signed in", status, body)
	}
}

func equalHeaders(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}
