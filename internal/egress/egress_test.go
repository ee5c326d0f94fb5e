package egress_test

import (
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/orrery/orrery/internal/egress"
)

func TestPermits(t *testing.T) {
	t.Parallel()
	p := egress.Policy{
		Allow: []netip.Prefix{netip.MustParsePrefix("10.20.0.0/16")},
		Deny:  []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")},
		Own:   []netip.Addr{netip.MustParseAddr("198.51.100.7")},
	}
	for addr, want := range map[string]bool{
		"1.1.1.1": true, "2606:4700::1111": true, "198.51.100.8": true,
		"127.0.0.1": false, "127.3.2.1": false, "::1": false, "0.0.0.0": false, "::": false,
		"169.254.169.254": false, "fe80::1": false, "fd00:ec2::254": false,
		"10.0.0.1": false, "172.16.5.4": false, "192.168.1.1": false, "100.64.0.1": false, "fc00::1": false,
		"224.0.0.1": false, "ff02::1": false, "255.255.255.255": false,
		"::ffff:127.0.0.1": false, "::ffff:169.254.169.254": false, "::ffff:8.8.8.8": true,
		"10.20.3.4":    true,  // allowed by the operator
		"203.0.113.9":  false, // denied by the operator
		"198.51.100.7": false, // the satellite's own
	} {
		if got := p.Permits(netip.MustParseAddr(addr)); got != want {
			t.Errorf("Permits(%s) = %v, want %v", addr, got, want)
		}
	}
}

// A dialer with the policy's Control refuses a forbidden address after resolution, and reaches a permitted one.
func TestControl(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	d := &net.Dialer{Control: egress.Policy{}.Control}
	_, err = d.DialContext(t.Context(), "tcp", "localhost:"+portOf(ln))
	if !errors.Is(err, egress.ErrForbidden) {
		t.Errorf("dial localhost: %v, want ErrForbidden", err)
	}
	open := &net.Dialer{Control: egress.Policy{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}.Control}
	c, err := open.DialContext(t.Context(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("dial an allowed address: %v", err)
	}
	_ = c.Close()
}

func portOf(ln net.Listener) string {
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

func TestParsePrefixes(t *testing.T) {
	t.Parallel()
	got, err := egress.ParsePrefixes("10.1.0.0/16, 192.168.7.9 fd12::/16")
	if err != nil || len(got) != 3 || got[1] != netip.MustParsePrefix("192.168.7.9/32") {
		t.Fatalf("ParsePrefixes = %v, %v", got, err)
	}
	if _, err := egress.ParsePrefixes("10.1.0.0/16,example.com"); err == nil {
		t.Fatal("a name was accepted")
	}
}
