package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/orrery/orrery/internal/egress"
)

// Every sandbox has a network namespace of its own. With egress none it holds only its loopback. With public
// egress, slirp4netns links it to the internet in user mode: it reads the namespace's packets from a tap
// device and makes each connection with a socket of its own, out of the satellite's namespace. nftables
// rules inside the namespace, in place before the server's first instruction, refuse every address the
// egress policy forbids. Why this way:
//
//   - nothing changes on the host: no veth, no routes, no forwarding, no host firewall rules to add, clean
//     up, or get wrong beside an operator's own, and it works for a satellite that is not root;
//   - the check is on the address a packet goes to, inside the namespace, so a DNS answer, a literal
//     address, UDP and raw IP are all treated alike, and nothing needs the server's cooperation, unlike a
//     proxy that only the programs honouring HTTP_PROXY would use;
//   - the namespace's 127.0.0.1 is its own: the satellite's loopback, its abstract unix sockets and other
//     sandboxes' listeners are in other namespaces, reachable through no route; slirp4netns's way to the
//     host's loopback (10.0.2.2) is turned off, and its network is a forbidden private range anyway.
//
// DNS goes to slirp4netns's forwarder at slirpDNS, which asks the host's resolver: the one address and port
// of the namespace's network the rules let through.

// Addresses of slirp4netns's default network, 10.0.2.0/24.
const (
	slirpDNS  = "10.0.2.3"
	slirpTap  = "tap0"
	slirpMTU  = "65520"
	netSetup  = 10 * time.Second // bounds the wait for bwrap's namespace and slirp4netns's readiness
	resolvEtc = "nameserver " + slirpDNS + "\noptions edns0\n"
)

// netTools are the programs a sandbox with public egress needs outside of it.
type netTools struct {
	slirp, nsenter, nft, unshare string
}

// resolveAllowList resolves a spec's "host:port" destinations with the satellite's resolver, and keeps the
// addresses p permits; it names what it dropped for that. A name that does not resolve fails the start: a
// server cut off from the one API it needs would only fail later, more obscurely.
func resolveAllowList(allow []string, p egress.Policy) (dests []netip.AddrPort, dropped []string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, hp := range allow {
		host, port, err := net.SplitHostPort(hp)
		if err != nil {
			return nil, nil, fmt.Errorf("%q: %w", hp, err)
		}
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 {
			return nil, nil, fmt.Errorf("%q: bad port", hp)
		}
		addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			return nil, nil, fmt.Errorf("resolve %s: %w", host, err)
		}
		for _, a := range addrs {
			ap := netip.AddrPortFrom(a.Unmap(), uint16(n))
			if p.Permits(ap.Addr()) {
				dests = append(dests, ap)
			} else {
				dropped = append(dropped, hp+" ("+ap.Addr().String()+")")
			}
		}
	}
	return dests, dropped, nil
}

// nftRules are the rules a sandbox's namespace gets for policy p: the loopback and the DNS forwarder pass,
// then the networks p allows, then every forbidden address is refused, TCP with a reset and the rest with an
// ICMP error, so that a refused connection fails at once rather than time out. With an allow-list,
// only its destinations pass after the DNS forwarder, and everything else is refused.
func nftRules(p egress.Policy, allowList bool, dests []netip.AddrPort) string {
	if allowList {
		return allowListRules(dests)
	}
	var deny4, deny6, allow4, allow6 []string
	add := func(n netip.Prefix, v4, v6 *[]string) {
		if n.Addr().Is4() {
			*v4 = append(*v4, n.String())
		} else {
			*v6 = append(*v6, n.String())
		}
	}
	for _, n := range slices.Concat(egress.Denied, p.Deny) {
		add(n, &deny4, &deny6)
	}
	own := p.Own
	if own == nil {
		own = egress.OwnAddresses()
	}
	for _, a := range own {
		add(netip.PrefixFrom(a, a.BitLen()), &deny4, &deny6)
	}
	for _, n := range p.Allow {
		add(n, &allow4, &allow6)
	}
	var b strings.Builder
	set := func(name, typ string, elems []string) {
		if len(elems) > 0 {
			fmt.Fprintf(&b, "\tset %s { type %s; flags interval; auto-merge; elements = { %s } }\n", name, typ, strings.Join(elems, ", "))
		}
	}
	b.WriteString("table inet orrery {\n")
	set("allow4", "ipv4_addr", allow4)
	set("allow6", "ipv6_addr", allow6)
	set("deny4", "ipv4_addr", deny4)
	set("deny6", "ipv6_addr", deny6)
	b.WriteString("\tchain egress {\n\t\ttype filter hook output priority filter; policy accept;\n")
	b.WriteString("\t\toifname \"lo\" accept\n")
	b.WriteString("\t\tip daddr " + slirpDNS + " meta l4proto { tcp, udp } th dport 53 accept\n")
	if len(allow4) > 0 {
		b.WriteString("\t\tip daddr @allow4 accept\n")
	}
	if len(allow6) > 0 {
		b.WriteString("\t\tip6 daddr @allow6 accept\n")
	}
	for _, fam := range []struct{ match, set string }{{"ip daddr", "deny4"}, {"ip6 daddr", "deny6"}} {
		if (fam.set == "deny4" && len(deny4) == 0) || (fam.set == "deny6" && len(deny6) == 0) {
			continue
		}
		fmt.Fprintf(&b, "\t\t%s @%s meta l4proto tcp reject with tcp reset\n", fam.match, fam.set)
		fmt.Fprintf(&b, "\t\t%s @%s reject with icmpx type admin-prohibited\n", fam.match, fam.set)
	}
	b.WriteString("\t}\n}\n")
	return b.String()
}

func sameFile(a, b string) (bool, error) {
	ia, err := os.Stat(a)
	if err != nil {
		return false, err
	}
	ib, err := os.Stat(b)
	if err != nil {
		return false, err
	}
	return os.SameFile(ia, ib), nil
}

// allowListRules let through the loopback, the DNS forwarder and dests, which the policy permits, and
// refuse everything else.
func allowListRules(dests []netip.AddrPort) string {
	var d4, d6 []string
	for _, d := range dests {
		e := d.Addr().String() + " . " + strconv.Itoa(int(d.Port()))
		if d.Addr().Is4() {
			d4 = append(d4, e)
		} else {
			d6 = append(d6, e)
		}
	}
	var b strings.Builder
	b.WriteString("table inet orrery {\n")
	if len(d4) > 0 {
		fmt.Fprintf(&b, "\tset dest4 { type ipv4_addr . inet_service; elements = { %s } }\n", strings.Join(d4, ", "))
	}
	if len(d6) > 0 {
		fmt.Fprintf(&b, "\tset dest6 { type ipv6_addr . inet_service; elements = { %s } }\n", strings.Join(d6, ", "))
	}
	b.WriteString("\tchain egress {\n\t\ttype filter hook output priority filter; policy accept;\n")
	b.WriteString("\t\toifname \"lo\" accept\n")
	b.WriteString("\t\tip daddr " + slirpDNS + " meta l4proto { tcp, udp } th dport 53 accept\n")
	if len(d4) > 0 {
		b.WriteString("\t\tmeta l4proto { tcp, udp } ip daddr . th dport @dest4 accept\n")
	}
	if len(d6) > 0 {
		b.WriteString("\t\tmeta l4proto { tcp, udp } ip6 daddr . th dport @dest6 accept\n")
	}
	b.WriteString("\t\tmeta l4proto tcp reject with tcp reset\n\t\treject with icmpx type admin-prohibited\n\t}\n}\n")
	return b.String()
}

// link is a sandbox's connection to the internet: the slirp4netns process serving its namespace. It ends
// when its exit pipe closes, which close does, and which the kernel does if the satellite dies.
type link struct {
	mu     sync.Mutex
	closed bool
	cmd    *exec.Cmd
	exitW  *os.File
	done   chan struct{}
}

// close ends slirp4netns and reaps it; safe to call more than once, and before it started.
func (l *link) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	l.closed = true
	if l.cmd == nil {
		return
	}
	_ = l.exitW.Close()
	select {
	case <-l.done:
	case <-time.After(groupExitTimeout):
		_ = l.cmd.Process.Kill()
		<-l.done
	}
}

// bwrapInfo is what bwrap writes to its --info-fd once the sandbox's namespaces exist.
type bwrapInfo struct {
	ChildPid int `json:"child-pid"`
}

// readInfo reads bwrap's info document, or fails by the deadline.
func readInfo(r *os.File, deadline time.Time) (int, error) {
	_ = r.SetReadDeadline(deadline)
	var info bwrapInfo
	if err := json.NewDecoder(r).Decode(&info); err != nil {
		if errors.Is(err, io.EOF) {
			return 0, errors.New("bwrap ended before its namespaces were made")
		}
		return 0, fmt.Errorf("read bwrap's info: %w", err)
	}
	if info.ChildPid <= 0 {
		return 0, errors.New("bwrap's info names no process")
	}
	return info.ChildPid, nil
}

// netnsRef names a sandbox's network namespace: an open file of it, or a process in it (and in the user
// namespace that owns it).
type netnsRef struct {
	file *os.File
	pid  int
}

// newNetns makes a network namespace and returns a file that keeps it. The thread that makes it goes back
// to home, the satellite's namespace, or else stays locked until the runtime retires it, so that no Go
// code runs in the wrong namespace.
func newNetns(home *os.File) (*os.File, error) {
	type result struct {
		f   *os.File
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			ch <- result{err: err}
			return
		}
		f, err := os.Open("/proc/thread-self/ns/net")
		if enterNetns(home) == nil {
			runtime.UnlockOSThread()
		}
		ch <- result{f, err}
	}()
	r := <-ch
	return r.f, r.err
}

// ownNetns opens the satellite's network namespace, that of the threads that run its Go code.
func ownNetns() (*os.File, error) {
	return os.Open("/proc/thread-self/ns/net")
}

// connect gives the network namespace ns its rules and its link, and returns once the namespace is ready.
// The sandbox waits meanwhile (bwrap's --block-fd), so the server's first packet meets both. env marks
// slirp4netns for Sweep.
func (t netTools) connect(ns netnsRef, rules string, env []string, l *link, deadline time.Time) error {
	// Descriptors the helpers get: the namespace's file, when there is one, comes last.
	nsPath := func(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }
	var extra []*os.File
	if ns.file != nil {
		extra = []*os.File{ns.file}
	} else {
		nsPath = func(int) string { return "/proc/" + strconv.Itoa(ns.pid) + "/ns/net" }
	}
	// Rules meant for a sandbox must never land in the satellite's own namespace. /proc/thread-self is
	// this goroutine's thread, which like all that run Go code freely is in the satellite's namespace.
	target := nsPath(0)
	if ns.file != nil {
		target = "/proc/self/fd/" + strconv.Itoa(int(ns.file.Fd()))
	}
	same, err := sameFile(target, "/proc/thread-self/ns/net")
	if err != nil || same {
		return fmt.Errorf("the sandbox has no network namespace of its own (%v)", err)
	}
	nsenter := []string{"--net=" + nsPath(3)}
	if ns.file == nil {
		// A satellite that is not root has capabilities only in the user namespace made with the network's,
		// where its uid is root (unshare --map-root-user), so nft keeps the capabilities; nsenter may not
		// change its groups in it.
		nsenter = []string{"--user=/proc/" + strconv.Itoa(ns.pid) + "/ns/user", "--net=" + nsPath(3), "--preserve-credentials"}
	}
	nft := exec.Command(t.nsenter, append(nsenter, "--", t.nft, "-f", "-")...)
	nft.ExtraFiles = extra
	nft.Stdin = strings.NewReader(rules)
	nft.Env = env
	var nftOut bytes.Buffer
	nft.Stdout, nft.Stderr = &nftOut, &nftOut
	if err := nft.Start(); err != nil {
		return fmt.Errorf("nft: %w", err)
	}
	nftDone := make(chan error, 1)
	go func() { nftDone <- nft.Wait() }()

	// slirp4netns starts meanwhile: until the rules are in and the sandbox is let go, nothing in the
	// namespace runs that could send a packet.
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return err
	}
	defer readyR.Close()
	exitR, exitW, err := os.Pipe()
	if err != nil {
		_ = readyW.Close()
		return err
	}
	args := []string{"--configure", "--mtu=" + slirpMTU, "--disable-host-loopback", "--enable-seccomp",
		"--ready-fd=3", "--exit-fd=4"}
	if ns.file == nil {
		args = append(args, "--userns-path=/proc/"+strconv.Itoa(ns.pid)+"/ns/user")
	} else {
		// Its own mount namespace, and no capability but to bind low ports; it fails to set that up in
		// a user namespace that cannot change groups, as a satellite that is not root makes.
		args = append(args, "--enable-sandbox")
	}
	slirp := exec.Command(t.slirp, append(args, "--netns-type=path", nsPath(5), slirpTap)...)
	slirp.ExtraFiles = append([]*os.File{readyW, exitR}, extra...)
	slirp.Env = env
	var slirpOut lockedBuffer
	slirp.Stdout, slirp.Stderr = &slirpOut, &slirpOut
	slirp.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	setParentDeathSignal(slirp.SysProcAttr)
	l.mu.Lock()
	if l.closed { // the sandbox ended already
		l.mu.Unlock()
		_ = readyW.Close()
		_ = exitR.Close()
		_ = exitW.Close()
		<-nftDone
		return errors.New("the sandbox ended while its network was set up")
	}
	err = slirp.Start()
	_ = readyW.Close()
	_ = exitR.Close()
	if err != nil {
		l.mu.Unlock()
		_ = exitW.Close()
		<-nftDone
		return fmt.Errorf("slirp4netns: %w", err)
	}
	l.cmd, l.exitW, l.done = slirp, exitW, make(chan struct{})
	go func() {
		_ = slirp.Wait()
		close(l.done)
	}()
	l.mu.Unlock()

	if err := <-nftDone; err != nil {
		return fmt.Errorf("nft: %w: %s", err, strings.TrimSpace(nftOut.String()))
	}
	_ = readyR.SetReadDeadline(deadline)
	var b [1]byte
	if _, err := readyR.Read(b[:]); err != nil {
		select {
		case <-l.done:
		case <-time.After(100 * time.Millisecond):
		}
		return fmt.Errorf("slirp4netns did not get ready: %v: %s", err, strings.TrimSpace(slirpOut.String()))
	}
	return nil
}

// lockedBuffer is a bytes.Buffer that a process's output goroutine may write while another reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
