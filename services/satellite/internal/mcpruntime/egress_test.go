package mcpruntime_test

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/internal/egress"
	"github.com/orrery/orrery/services/satellite/internal/mcpruntime"
)

// A remote server is dialed under the satellite's egress policy, checked after DNS: one on the satellite's
// loopback, named by address or by a name that resolves to it, is refused, unless the operator allowed it.
func TestRemoteServersUnderEgressPolicy(t *testing.T) {
	t.Parallel()
	srv := newGuardedServer(t)
	port := srv.URL[strings.LastIndex(srv.URL, ":"):]
	strict := setup(t, func(c *mcpruntime.Config) {
		c.HTTPClient = &http.Client{Transport: egress.Policy{}.Transport()}
	})
	byAddr := remoteInstance("by-address", satellitev1.Transport_TRANSPORT_HTTP, srv.URL)
	byName := remoteInstance("by-name", satellitev1.Transport_TRANSPORT_HTTP, "http://localhost"+port)
	strict.apply(t, byAddr, byName)
	for _, in := range []*satellitev1.Instance{byAddr, byName} {
		info := strict.waitStatus(t, in.GetId(), satellitev1.InstanceStatus_INSTANCE_STATUS_ERROR)
		if !strings.Contains(info.Message, "egress policy forbids") {
			t.Errorf("%s: %q, want the egress policy named", in.GetServerSlug(), info.Message)
		}
	}

	allowed := setup(t, func(c *mcpruntime.Config) {
		c.HTTPClient = &http.Client{Transport: egress.Policy{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}.Transport()}
	})
	in := remoteInstance("allowed", satellitev1.Transport_TRANSPORT_HTTP, srv.URL)
	in.Headers = map[string]string{"X-Api-Key": "good", "Host": "metadata.internal"}
	in.QueryParams = map[string]string{"tenant": "acme"}
	allowed.apply(t, in)
	allowed.waitStatus(t, in.GetId(), online)
}

// A configured Host header is not sent: it would choose where a shared front end or proxy sends the request.
func TestRemoteHostHeaderIgnored(t *testing.T) {
	t.Parallel()
	hosts := make(chan string, 16)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case hosts <- r.Host:
		default:
		}
		http.Error(w, "no", http.StatusNotFound)
	}))
	t.Cleanup(front.Close)
	b := setup(t, nil)
	in := remoteInstance("host-header", satellitev1.Transport_TRANSPORT_HTTP, front.URL)
	in.Headers = map[string]string{"Host": "admin.internal"}
	b.apply(t, in)
	if got, want := <-hosts, strings.TrimPrefix(front.URL, "http://"); got != want {
		t.Fatalf("the server saw Host %q, want %q", got, want)
	}
}
