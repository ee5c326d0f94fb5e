package mcpruntime

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/services/satellite/internal/lines"
	"github.com/orrery/orrery/services/satellite/internal/sandbox"
)

func TestCrashPolicy(t *testing.T) {
	t.Parallel()
	p := Config{}.WithDefaults().crashPolicy()
	cases := []struct {
		n      int
		uptime time.Duration
		delay  time.Duration
		giveUp bool
	}{
		{1, time.Second, time.Second, false},
		{2, time.Second, 5 * time.Second, false},
		{1, 59 * time.Second, time.Second, false},
		{1, 60 * time.Second, 0, false}, // stable before it crashed: no delay
		{2, 10 * time.Minute, 0, false},
		{3, time.Second, 0, true}, // the third crash within the window
		{3, time.Hour, 0, true},
	}
	for _, tc := range cases {
		delay, giveUp := p.next(tc.n, tc.uptime)
		if delay != tc.delay || giveUp != tc.giveUp {
			t.Errorf("crash %d after %v: delay %v, give up %v; want %v, %v", tc.n, tc.uptime, delay, giveUp, tc.delay, tc.giveUp)
		}
	}
	// With a higher limit, the last delay repeats.
	p.limit = 10
	if delay, _ := p.next(7, 0); delay != 15*time.Second {
		t.Errorf("seventh crash waits %v, want the last delay, 15s", delay)
	}
}

func TestCrashWindow(t *testing.T) {
	t.Parallel()
	p := Config{}.WithDefaults().crashPolicy()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var h crashHistory
	var n int
	for _, at := range []time.Duration{0, 2 * time.Minute, 6 * time.Minute, 7 * time.Minute} {
		h, n = p.record(h, start.Add(at))
	}
	// The crashes at 0 and 2 min left the 5-minute window by 7 min.
	if n != 2 {
		t.Errorf("%d crashes in the window, want 2", n)
	}
}

func TestLogLimiter(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var lines []string
		l := newLogLimiter(20, 16, func(_ satellitev1.LogLevel, msg string) {
			mu.Lock()
			defer mu.Unlock()
			lines = append(lines, msg)
		})
		for i := range 25 {
			l.line(satellitev1.LogLevel_LOG_LEVEL_INFO, fmt.Sprintf("line %d", i))
		}
		mu.Lock()
		if len(lines) != 20 {
			t.Errorf("%d lines passed in the first second, want 20", len(lines))
		}
		mu.Unlock()
		// Nothing more arrives: the drop report comes when the second is over anyway.
		time.Sleep(time.Second)
		synctest.Wait()
		mu.Lock()
		if got := lines[len(lines)-1]; !strings.HasPrefix(got, "5 log lines dropped") {
			t.Errorf("last line %q, want the report of 5 dropped lines", got)
		}
		mu.Unlock()
		l.line(satellitev1.LogLevel_LOG_LEVEL_INFO, "a line long enough to be cut short")
		mu.Lock()
		if got := lines[len(lines)-1]; len(got) > 16 || !strings.HasSuffix(got, "[cut]") {
			t.Errorf("long line passed as %q", got)
		}
		mu.Unlock()
		if l.droppedTotal() != 5 {
			t.Errorf("dropped total %d, want 5", l.droppedTotal())
		}
	})
}

func TestReadLines(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 10000)
	var got []string
	err := lines.Read(strings.NewReader("one\r\n"+long+"\nthree"), 100+1, func(s string) { got = append(got, s) })
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0] != "one" || len(got[1]) != 101 || got[2] != "three" {
		t.Errorf("lines %q", got)
	}
	if got := cut(got[1], 100); len(got) > 100 || !strings.HasSuffix(got, "[cut]") {
		t.Errorf("cut to %d bytes: %q", len(got), got)
	}
	if got := cut("ééé", 5); got != "" && !strings.HasSuffix(got, "[cut]") {
		t.Errorf("cut %q", got)
	}
}

func TestClassifyRefusal(t *testing.T) {
	t.Parallel()
	cases := []struct {
		err     error
		refused int32
		want    satellitev1.InstanceStatus
	}{
		{errors.New("EOF"), 401, satellitev1.InstanceStatus_INSTANCE_STATUS_REQUIRES_REAUTH},
		{errors.New("failed to connect: Forbidden"), 0, satellitev1.InstanceStatus_INSTANCE_STATUS_REQUIRES_REAUTH},
		{errors.New("calling initialize: invalid token"), 0, satellitev1.InstanceStatus_INSTANCE_STATUS_REQUIRES_REAUTH},
		{errors.New("dial tcp 127.0.0.1:1: connect: connection refused"), 0, satellitev1.InstanceStatus_INSTANCE_STATUS_ERROR},
		{errors.New("unexpected token in JSON"), 0, satellitev1.InstanceStatus_INSTANCE_STATUS_ERROR},
	}
	for _, tc := range cases {
		if got, _ := classifyRefusal(tc.err, tc.refused); got != tc.want {
			t.Errorf("classify(%q, %d) = %v, want %v", tc.err, tc.refused, got, tc.want)
		}
	}
}

// TestCredentialsStayWithTheirOrigin checks that a server's headers and query parameters reach only its
// own origin, not one it redirects to.
func TestCredentialsStayWithTheirOrigin(t *testing.T) {
	t.Parallel()
	type seen struct{ key, tenant string }
	var mu sync.Mutex
	got := map[string]seen{}
	record := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			got[name] = seen{r.Header.Get("X-Api-Key"), r.URL.Query().Get("tenant")}
			mu.Unlock()
		})
	}
	elsewhere := httptest.NewServer(record("elsewhere"))
	defer elsewhere.Close()
	home := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		record("home").ServeHTTP(w, r)
		http.Redirect(w, r, elsewhere.URL+"/landing", http.StatusFound)
	}))
	defer home.Close()
	u, _ := url.Parse(home.URL + "/mcp?tenant=acme")
	client := &http.Client{Transport: newRemoteTransport(&http.Client{}, u, map[string]string{"X-Api-Key": "k"}, map[string]string{"tenant": "acme"})}
	resp, err := client.Get(home.URL + "/mcp")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if got["home"] != (seen{"k", "acme"}) || got["elsewhere"] != (seen{}) {
		t.Errorf("requests carried %v; want credentials at home only", got)
	}
}

func TestSandboxSpec(t *testing.T) {
	t.Parallel()
	spec := &satellitev1.Instance{TeamId: "team", UserId: "user", Command: "node"}
	if s := sandboxSpec(spec, "id", "/dir"); !s.Network || s.UserID != "" || s.Limits != nil || s.TeamID != "team" {
		t.Errorf("without a sandbox message: %+v, want network, the team's home and the driver's limits", s)
	}
	spec.Sandbox = &satellitev1.Sandbox{
		NetworkDisabled: true,
		Home:            satellitev1.HomeScope_HOME_SCOPE_USER,
		Limits:          &satellitev1.ResourceLimits{MemoryBytes: 256 << 20, CpuMillis: 500, CpuTime: durationpb.New(time.Minute)},
	}
	s := sandboxSpec(spec, "id", "/dir")
	want := sandbox.Limits{MemoryBytes: 256 << 20, CPU: 0.5, CPUTime: time.Minute}
	if s.Network || s.UserID != "user" || s.Limits == nil || *s.Limits != want {
		t.Errorf("with a sandbox message: %+v (limits %+v), want no network, the user's home and limits %+v", s, s.Limits, want)
	}
	spec.Sandbox = &satellitev1.Sandbox{EgressAllow: []string{"api.example.com:443"}}
	if s := sandboxSpec(spec, "id", "/dir"); !s.Network || len(s.EgressAllow) != 1 || s.EgressAllow[0] != "api.example.com:443" {
		t.Errorf("with an allow-list: %+v", s)
	}
}

// TestRemoteAnswersAreBounded is what a hostile remote server tries: a JSON answer without end, to
// make the satellite hold all of it. Reading it fails past the bound, with little more read; an
// answer of exactly the bound passes, and an event stream is left to the SDK's bound on each event.
func TestRemoteAnswersAreBounded(t *testing.T) {
	t.Parallel()
	const bound = 64 << 10
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		size := 64 * bound // endless, as far as the client is concerned
		switch r.URL.Path {
		case "/exact":
			size = bound
		case "/events":
			w.Header().Set("Content-Type", "text/event-stream")
		}
		if w.Header().Get("Content-Type") == "" {
			w.Header().Set("Content-Type", "application/json")
		}
		chunk := []byte(strings.Repeat("x", 4096))
		written := 0
		for written < size {
			n, err := w.Write(chunk[:min(len(chunk), size-written)])
			written += n
			if err != nil {
				break
			}
		}
	}))
	t.Cleanup(srv.Close)
	endpoint, _ := url.Parse(srv.URL)
	rt := newRemoteTransport(srv.Client(), endpoint, nil, nil)
	rt.maxAnswer = bound
	read := func(path string) (int, error) {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+path, nil)
		resp, err := rt.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		n, err := io.Copy(io.Discard, resp.Body)
		return int(n), err
	}
	if n, err := read("/endless"); !errors.Is(err, errAnswerTooLarge) || n > bound {
		t.Errorf("endless answer: read %d bytes, %v; want errAnswerTooLarge within %d bytes", n, err, bound)
	}
	if n, err := read("/exact"); err != nil || n != bound {
		t.Errorf("an answer of exactly the bound: read %d bytes, %v", n, err)
	}
	if n, err := read("/events"); err != nil || n != 64*bound {
		t.Errorf("event stream: read %d bytes, %v; want all of it", n, err)
	}
}
