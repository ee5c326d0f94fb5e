package oauth

import "testing"

func TestAddressLimiter(t *testing.T) {
	t.Parallel()
	l := newAddressLimiter(1, 2)
	for i, tc := range []struct {
		addr string
		want bool
	}{
		{"203.0.113.7:1000", true},
		{"203.0.113.7:1001", true}, // another port of the same host shares its bucket
		{"203.0.113.7:1002", false},
		{"203.0.113.8:1000", true},
		{"[2001:db8:1:2::1]:1000", true},
		{"[2001:db8:1:2::ffff]:1000", true}, // the same /64
		{"[2001:db8:1:2:ffff::1]:1000", false},
		{"[2001:db8:1:3::1]:1000", true},
	} {
		if got := l.allow(tc.addr); got != tc.want {
			t.Errorf("%d: allow(%s) = %v, want %v", i, tc.addr, got, tc.want)
		}
	}
}
