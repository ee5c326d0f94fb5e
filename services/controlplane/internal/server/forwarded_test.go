package server

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
)

func TestTrustProxies(t *testing.T) {
	t.Parallel()
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.5/32")}
	for _, tc := range []struct {
		name, peer string
		forwarded  []string
		want       string
	}{
		{"direct client", "203.0.113.7:4711", nil, "203.0.113.7:4711"},
		{"client claims an address", "203.0.113.7:4711", []string{"198.51.100.1"}, "203.0.113.7:4711"},
		{"through a proxy", "10.1.2.3:5000", []string{"198.51.100.1"}, "198.51.100.1:0"},
		{"through two proxies", "10.1.2.3:5000", []string{"198.51.100.1, 192.168.1.5"}, "198.51.100.1:0"},
		{"spoofed entry before the client", "10.1.2.3:5000", []string{"1.2.3.4, 198.51.100.1"}, "198.51.100.1:0"},
		{"entries in two headers", "10.1.2.3:5000", []string{"1.2.3.4", "198.51.100.1"}, "198.51.100.1:0"},
		{"IPv6 client", "[::ffff:10.1.2.3]:5000", []string{"2001:db8::1"}, "[2001:db8::1]:0"},
		{"proxy without the header", "10.1.2.3:5000", nil, "10.1.2.3:5000"},
		{"malformed entry", "10.1.2.3:5000", []string{"not-an-address"}, "10.1.2.3:5000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got string
			h := trustProxies(trusted, http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { got = r.RemoteAddr }))
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.RemoteAddr = tc.peer
			for _, v := range tc.forwarded {
				r.Header.Add("X-Forwarded-For", v)
			}
			h.ServeHTTP(httptest.NewRecorder(), r)
			if got != tc.want {
				t.Errorf("RemoteAddr = %q, want %q", got, tc.want)
			}
		})
	}
}
