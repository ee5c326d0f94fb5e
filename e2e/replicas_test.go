package e2e_test

import (
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/orrery/orrery/e2e"
	adminv1 "github.com/orrery/orrery/gen/orrery/admin/v1"
	"github.com/orrery/orrery/gen/orrery/admin/v1/adminv1connect"
	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/internal/pgtest"
	"google.golang.org/protobuf/proto"
)

// balancer is the simplest load balancer that checks readiness: it sends each request to the next backend
// whose /readyz last answered 200, checking every checkEvery, and never retries; a backend that fails
// answers 502, as such a balancer does.
type balancer struct {
	URL      string
	backends []*backend
	next     atomic.Uint64
	failures atomic.Int64
}

type backend struct {
	url   *url.URL
	ready atomic.Bool
	proxy *httputil.ReverseProxy
}

const checkEvery = 100 * time.Millisecond

func startBalancer(t *testing.T, urls ...string) *balancer {
	t.Helper()
	lb := &balancer{}
	for _, raw := range urls {
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		b := &backend{url: u, proxy: httputil.NewSingleHostReverseProxy(u)}
		b.proxy.FlushInterval = -1 // long polls and streams go through as they are written
		b.proxy.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
			lb.failures.Add(1)
			t.Logf("balancer: %s %s to %s: %v", r.Method, r.URL.Path, u.Host, err)
			w.WriteHeader(http.StatusBadGateway)
		}
		lb.backends = append(lb.backends, b)
	}
	checker := &http.Client{Timeout: time.Second}
	stop := make(chan struct{})
	var checks sync.WaitGroup
	for _, b := range lb.backends {
		checks.Go(func() {
			for {
				resp, err := checker.Get(b.url.String() + "/readyz")
				if err == nil {
					resp.Body.Close()
				}
				b.ready.Store(err == nil && resp.StatusCode == http.StatusOK)
				select {
				case <-stop:
					return
				case <-time.After(checkEvery):
				}
			}
		})
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for range lb.backends {
			b := lb.backends[lb.next.Add(1)%uint64(len(lb.backends))]
			if b.ready.Load() {
				b.proxy.ServeHTTP(w, r)
				return
			}
		}
		lb.failures.Add(1)
		http.Error(w, "no backend ready", http.StatusServiceUnavailable)
	}))
	t.Cleanup(func() {
		srv.Close()
		close(stop)
		checks.Wait()
	})
	lb.URL = srv.URL
	return lb
}

// commandArrival is how soon an immediate command must reach a connected satellite during a rolling
// restart: before answers at shutdown sent satellites elsewhere at once, it took about 2 s.
const commandArrival = time.Second

// TestRollingRestartBehindABalancer runs two replicas behind a balancer that checks /readyz and does not
// retry, restarts them one after the other with SIGTERM while a client calls the API without pause, and
// creates commands at each step of the restarts: no call fails, and every command reaches the satellite,
// which polls through the balancer, within commandArrival.
func TestRollingRestartBehindABalancer(t *testing.T) {
	t.Parallel()
	// Ten balancer checks; ORRERY_E2E_DRAIN_PERIOD=0s shows what happens without draining.
	drain := cmp.Or(os.Getenv("ORRERY_E2E_DRAIN_PERIOD"), "1s")
	a := e2e.StartControlPlane(t, pgtest.NewDatabase(t), "ORRERY_DRAIN_PERIOD="+drain)
	b := a.Replica(t)
	lb := startBalancer(t, a.URL, b.URL)
	e2e.WaitFor(t, activeTimeout, "both replicas ready at the balancer", func() error {
		for _, be := range lb.backends {
			if !be.ready.Load() {
				return fmt.Errorf("%s not ready yet", be.url.Host)
			}
		}
		return nil
	})
	admin := adminv1connect.NewAdminServiceClient(http.DefaultClient, lb.URL, connect.WithInterceptors(bearerAuth(a.AdminToken)))

	sat := e2e.StartSatellite(t, a, e2e.SatelliteConfig{
		RegistrationToken: a.RegistrationToken(t), Env: []string{"ORRERY_CONTROL_PLANE_URL=" + lb.URL},
	})
	satelliteID := waitActive(t, a, sat.URL).GetId()

	// A client that calls without pause, as a console or CLI would, and counts what fails.
	var calls, failed atomic.Int64
	stopCalling := make(chan struct{})
	var caller sync.WaitGroup
	caller.Go(func() {
		for {
			select {
			case <-stopCalling:
				return
			default:
			}
			_, err := admin.ListSatellites(t.Context(), connect.NewRequest(&adminv1.ListSatellitesRequest{}))
			calls.Add(1)
			if err != nil {
				failed.Add(1)
				t.Errorf("call during the rolling restart: %v", err)
			}
		}
	})

	var arrivals []time.Duration
	deliver := func(when string) {
		t.Helper()
		start := time.Now()
		req := proto.CloneOf(configure)
		req.Target = &adminv1.EnqueueCommandRequest_SatelliteId{SatelliteId: satelliteID}
		req.Priority = satellitev1.CommandPriority_COMMAND_PRIORITY_IMMEDIATE
		resp, err := admin.EnqueueCommand(t.Context(), connect.NewRequest(req))
		if err != nil {
			t.Fatalf("enqueue a command %s: %v", when, err)
		}
		id := resp.Msg.GetCommands()[0].GetCommand().GetId()
		sat.WaitLog(t, 10*time.Second, "command "+id, func(e e2e.LogEntry) bool {
			return e.String("msg") == "running command" && e.String("command_id") == id
		})
		took := time.Since(start)
		arrivals = append(arrivals, took)
		t.Logf("command created %s arrived in %v", when, took.Round(time.Millisecond))
		if took > commandArrival {
			t.Errorf("command created %s arrived in %v, want within %v", when, took.Round(time.Millisecond), commandArrival)
		}
	}

	// A satellite's first poll can come before its first heartbeat activates it, and then waits 2 s: that
	// is not what is measured here.
	runCommand(t, a, satelliteID, configure, completed, commandTimeout)
	deliver("before the restart")
	for _, r := range []struct {
		name string
		cp   *e2e.ControlPlane
	}{{"first", a}, {"second", b}} {
		stopped := make(chan struct{})
		go func() {
			defer close(stopped)
			r.cp.Stop(t)
		}()
		time.Sleep(300 * time.Millisecond) // within the drain period: /readyz fails, requests are served
		deliver("while the " + r.name + " replica drains")
		<-stopped
		deliver("while the " + r.name + " replica is down")
		r.cp.Start(t)
		e2e.WaitFor(t, activeTimeout, "the balancer to see the "+r.name+" replica ready", func() error {
			for _, be := range lb.backends {
				if be.url.Host == r.cp.URL[len("http://"):] && be.ready.Load() {
					return nil
				}
			}
			return errors.New("not ready at the balancer yet")
		})
	}
	deliver("after the restart")
	close(stopCalling)
	caller.Wait()
	t.Logf("%d calls through the balancer, %d failed; the balancer failed %d requests; command arrivals %v",
		calls.Load(), failed.Load(), lb.failures.Load(), arrivals)
	if lb.failures.Load() > 0 {
		t.Errorf("the balancer failed %d requests, want none", lb.failures.Load())
	}
	if calls.Load() < 20 {
		t.Errorf("only %d calls made during the restarts", calls.Load())
	}
}
