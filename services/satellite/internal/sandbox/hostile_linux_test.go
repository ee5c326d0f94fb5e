package sandbox_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/orrery/orrery/internal/aptget"
	"github.com/orrery/orrery/internal/egress"
	"github.com/orrery/orrery/services/satellite/internal/sandbox"
)

// These tests play a hostile tenant: the test binary itself runs inside real sandboxes (roleEnv picks what
// it does there) and attacks what a server must not reach.

const (
	// roleEnv makes the test binary act a part instead of running tests; see playRole.
	roleEnv = "SANDBOX_TEST_ROLE"
	argEnv  = "SANDBOX_TEST_ARG"
	// netnsEnv marks the test process that runs in a network namespace of its own, standing in for the
	// satellite's host: every address the network tests use lives in namespaces the test makes.
	netnsEnv = "SANDBOX_TEST_IN_NETNS"
)

// playRole acts the part roleEnv names and reports whether it did.
func playRole() bool {
	arg := os.Getenv(argEnv)
	switch os.Getenv(roleEnv) {
	case "":
		return false
	case "connect": // arg: network and address, such as "tcp 10.0.0.1:80" or "unix @name"
		network, addr, _ := strings.Cut(arg, " ")
		c, err := net.DialTimeout(network, addr, 5*time.Second)
		if err != nil {
			fmt.Println("refused:", err)
			return true
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, _ := bufio.NewReader(c).ReadString('\n')
		fmt.Println("connected:", strings.TrimSpace(line))
	case "listen": // a server of one sandbox that another attacks: TCP on its loopback, an abstract socket
		tcp, err1 := net.Listen("tcp", "127.0.0.1:"+arg)
		unix, err2 := net.Listen("unix", "@orrery-sandbox-test-"+arg)
		if err := errors.Join(err1, err2); err != nil {
			fmt.Println("error:", err)
			return true
		}
		go serve(unix)
		fmt.Println("listening")
		serve(tcp)
	case "serve": // a host of the test's network: TCP on arg's ports and DNS on port 53, on every address
		go serveDNS()
		for port := range strings.SplitSeq(arg, ",") {
			ln, err := net.Listen("tcp", ":"+port)
			if err != nil {
				fmt.Println("error:", err)
				return true
			}
			go serve(ln)
		}
		select {}
	case "ptrace":
		child := exec.Command("sleep", "10")
		if err := child.Start(); err != nil {
			fmt.Println("error:", err)
			return true
		}
		defer func() { _ = child.Process.Kill() }()
		err := syscall.PtraceAttach(child.Process.Pid)
		fmt.Println("ptrace:", err)
	default:
		fmt.Println("unknown role")
	}
	return true
}

// serve answers every connection with the name of the host it reached.
func serve(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		host, _ := os.Hostname()
		_, _ = fmt.Fprintf(c, "hello from %s %s\n", host, c.LocalAddr())
		_ = c.Close()
	}
}

// dnsAnswers is the test world's DNS: a public name, and names that point where a tenant must not go.
var dnsAnswers = map[string]string{
	"public.test.":   "198.51.100.2",
	"metadata.test.": "169.254.169.254",
	"loopback.test.": "127.0.0.1",
	"private.test.":  "10.77.0.2",
}

func serveDNS() {
	pc, err := net.ListenPacket("udp", ":53")
	if err != nil {
		return
	}
	buf := make([]byte, 1500)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		var p dnsmessage.Parser
		h, err := p.Start(buf[:n])
		if err != nil {
			continue
		}
		q, err := p.Question()
		if err != nil {
			continue
		}
		b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true})
		_ = b.StartQuestions()
		_ = b.Question(q)
		_ = b.StartAnswers()
		if a, ok := dnsAnswers[strings.ToLower(q.Name.String())]; ok && q.Type == dnsmessage.TypeA {
			_ = b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 60},
				dnsmessage.AResource{A: netip.MustParseAddr(a).As4()})
		}
		if msg, err := b.Finish(); err == nil {
			_, _ = pc.WriteTo(msg, from)
		}
	}
}

// attacker copies the test binary where a sandbox's unprivileged user can run it, and returns its path.
func attacker(t *testing.T) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "orrery-sandbox-attacker-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "attacker")
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

// attack runs the attacker in b's sandbox for team in the given role, under an egress allow-list if one
// is given, and returns what it printed.
func attack(t *testing.T, b *sandbox.Bwrap, bin, team, role, arg string, allow []string) string {
	t.Helper()
	p, err := b.Start(sandbox.Spec{TeamID: team, Network: true, Command: bin, EgressAllow: allow,
		Env: map[string]string{roleEnv: role, argEnv: arg}, Limits: &sandbox.Limits{CPU: 1, MemoryBytes: 256 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(0) })
	out, _ := io.ReadAll(p.Stdout)
	<-p.Done()
	return strings.TrimSpace(string(out))
}

// TestHostileTenantNetwork attacks, from inside sandboxes with public egress, what a tenant must not reach:
// the satellite's loopback and its own addresses, a simulated cloud metadata service at 169.254.169.254, a
// private network, other sandboxes' listeners, also by way of DNS answers; and checks that the simulated
// public internet stays reachable, and that operators can widen and narrow the policy.
func TestHostileTenantNetwork(t *testing.T) {
	if os.Getenv(netnsEnv) == "" {
		// Run again in a network namespace of our own, and a mount namespace for its resolv.conf.
		if os.Geteuid() != 0 {
			t.Fatal("this test makes network namespaces and must run as root (as CI does): sudo go test ./services/satellite/internal/sandbox/")
		}
		newBwrap(t, sandbox.BwrapConfig{}) // installs what the sandbox needs, once, outside
		needIP(t)
		self, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.CommandContext(t.Context(), "unshare", "--net", "--mount", "--propagation", "private", "--",
			self, "-test.run=^TestHostileTenantNetwork$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), netnsEnv+"=1")
		out, err := cmd.CombinedOutput()
		t.Logf("in a network namespace of its own:\n%s", out)
		if err != nil {
			t.Fatalf("the test failed in its network namespace: %v", err)
		}
		return
	}

	// The world: a public host (198.51.100.2, documentation space, which the default policy treats as
	// public), a metadata service (169.254.169.254) and a host on a private network (10.77.0.2), each in a
	// namespace of its own linked to ours, serving TCP on port 80 and the world's DNS.
	sh(t, "ip link set lo up")
	host(t, "w", "198.51.100.1/24", "198.51.100.2/24")
	host(t, "m", "169.254.0.1/16", "169.254.169.254/16")
	host(t, "p", "10.77.0.1/24", "10.77.0.2/24")
	// The satellite's resolver is the public host's DNS server; slirp4netns forwards the sandboxes' queries to it.
	resolv := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver 198.51.100.2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sh(t, "mount --bind "+resolv+" /etc/resolv.conf")

	// The satellite's own listeners: TCP on its loopback and on all addresses, and an abstract unix socket.
	satellite, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = satellite.Close() })
	go serve(satellite)
	satPort := strconv.Itoa(satellite.Addr().(*net.TCPAddr).Port)
	abstract, err := net.Listen("unix", "@orrery-satellite-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = abstract.Close() })
	go serve(abstract)

	// Without a sandbox every target answers: the refusals below are the sandbox's doing.
	for _, addr := range []string{"198.51.100.2:80", "198.51.100.2:8080", "169.254.169.254:80", "10.77.0.2:80", "127.0.0.1:" + satPort} {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("the test's network is broken: %s: %v", addr, err)
		}
		_ = c.Close()
	}

	bin := attacker(t)
	ro := []string{filepath.Dir(bin)}
	b := newBwrap(t, sandbox.BwrapConfig{ReadOnly: ro})
	widened := newBwrap(t, sandbox.BwrapConfig{ReadOnly: ro, Egress: egress.Policy{Allow: []netip.Prefix{netip.MustParsePrefix("10.77.0.0/24")}}})
	narrowed := newBwrap(t, sandbox.BwrapConfig{ReadOnly: ro, Egress: egress.Policy{Deny: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}}})

	// Another team's server listens on its loopback and on an abstract socket.
	neighbour, err := b.Start(sandbox.Spec{TeamID: "team-b", Network: true, Command: bin,
		Env: map[string]string{roleEnv: "listen", argEnv: "7000"}, Limits: &sandbox.Limits{CPU: 1, MemoryBytes: 256 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { neighbour.Stop(0) })
	if line, _ := bufio.NewReader(neighbour.Stdout).ReadString('\n'); line != "listening\n" {
		t.Fatalf("the neighbour's server: %q", line)
	}

	allowList := []string{"public.test:80", "private.test:80", "169.254.169.254:80"}
	for _, tc := range []struct {
		name   string
		driver *sandbox.Bwrap
		target string
		reach  bool
		allow  []string
	}{
		{"public host", b, "tcp 198.51.100.2:80", true, nil},
		{"public host by name", b, "tcp public.test:80", true, nil},
		{"public host's other port", b, "tcp 198.51.100.2:8080", true, nil},
		{"metadata service", b, "tcp 169.254.169.254:80", false, nil},
		{"metadata service by name", b, "tcp metadata.test:80", false, nil},
		{"satellite loopback", b, "tcp 127.0.0.1:" + satPort, false, nil},
		{"satellite loopback by name", b, "tcp loopback.test:" + satPort, false, nil},
		{"satellite's own address", b, "tcp 198.51.100.1:" + satPort, false, nil},
		{"slirp4netns's way to the host's loopback", b, "tcp 10.0.2.2:" + satPort, false, nil},
		{"private network", b, "tcp 10.77.0.2:80", false, nil},
		{"private network by name", b, "tcp private.test:80", false, nil},
		{"satellite's abstract socket", b, "unix @orrery-satellite-test", false, nil},
		{"other sandbox's loopback", b, "tcp 127.0.0.1:7000", false, nil},
		{"other sandbox's abstract socket", b, "unix @orrery-sandbox-test-7000", false, nil},
		{"private network allowed by the operator", widened, "tcp 10.77.0.2:80", true, nil},
		{"public host denied by the operator", narrowed, "tcp 198.51.100.2:80", false, nil},
		{"allow-listed destination", b, "tcp public.test:80", true, allowList},
		{"public port off the allow-list", b, "tcp 198.51.100.2:8080", false, allowList},
		{"allow-listed private host", b, "tcp 10.77.0.2:80", false, allowList},
		{"allow-listed metadata service", b, "tcp 169.254.169.254:80", false, allowList},
		{"allow-listed private host the operator allows", widened, "tcp 10.77.0.2:80", true, allowList},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			out := attack(t, tc.driver, bin, "team-a", "connect", tc.target, tc.allow)
			if got := strings.HasPrefix(out, "connected: hello"); got != tc.reach {
				t.Errorf("%s: %q; want reachable %v", tc.target, out, tc.reach)
			}
			t.Logf("%s: %s", tc.target, out)
		})
	}
}

// host makes a namespace holding a server of the test's world (playRole "serve"), linked to the test's
// namespace by a veth pair with addresses ours and theirs.
func host(t *testing.T, name, ours, theirs string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	srv := exec.Command("unshare", "--net", "--uts", "--", self)
	srv.Env = append(os.Environ(), roleEnv+"=serve", argEnv+"=80,8080")
	srv.Stdout, srv.Stderr = os.Stderr, os.Stderr
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = srv.Process.Kill()
		_ = srv.Wait()
	})
	pid := strconv.Itoa(srv.Process.Pid)
	// unshare may not have made the namespace yet; the veth goes into it only once it has.
	deadline := time.Now().Add(waitLimit)
	for {
		self, _ := os.Readlink("/proc/self/ns/net")
		theirsNS, err := os.Readlink("/proc/" + pid + "/ns/net")
		if err == nil && theirsNS != self {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the world's namespace did not appear")
		}
		time.Sleep(5 * time.Millisecond)
	}
	in := "nsenter --net=/proc/" + pid + "/ns/net --uts=/proc/" + pid + "/ns/uts "
	sh(t, "ip link add v"+name+"0 type veth peer name v"+name+"1",
		"ip link set v"+name+"1 netns "+pid,
		"ip addr add "+ours+" dev v"+name+"0", "ip link set v"+name+"0 up",
		in+"hostname "+name,
		in+"ip link set lo up",
		in+"ip addr add "+theirs+" dev v"+name+"1",
		in+"ip link set v"+name+"1 up")
	// Wait for the server to listen (it does from its start, on every address) and the link to come up.
	addr := strings.Split(theirs, "/")[0] + ":80"
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the world's host %s does not answer: %v", addr, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// sh runs each command line with sh and fails the test on the first that fails.
func sh(t *testing.T, lines ...string) {
	t.Helper()
	for _, l := range lines {
		if out, err := exec.Command("sh", "-c", l).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", l, err, out)
		}
	}
}

// needIP installs iproute2 where it is missing, or fails saying how to get it.
func needIP(t *testing.T) {
	t.Helper()
	err := aptget.Install(t.Context(), nil, "iproute2", func() bool { _, err := exec.LookPath("ip"); return err == nil })
	if err != nil {
		t.Fatalf("the network tests need ip (apt-get install iproute2): %v", err)
	}
}

// TestHostileTenantProcess attacks from inside a sandbox what the uid and the seccomp filter guard: the
// server is not root, and it can make no user namespace and trace no process.
func TestHostileTenantProcess(t *testing.T) {
	t.Parallel()
	bin := attacker(t)
	b := newBwrap(t, sandbox.BwrapConfig{ReadOnly: []string{filepath.Dir(bin)}, Limits: sandbox.Limits{CPU: 1}})
	// A descriptor without close-on-exec, as a satellite may inherit from what started it.
	inherited, err := syscall.Open("/dev/null", syscall.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(inherited)
	for _, network := range []bool{false, true} {
		_, out := run(t, b, sandbox.Spec{TeamID: "t", Network: network},
			`id -u; unshare -U true 2>/dev/null; echo "unshare -U: $?"; unshare -Ur true 2>/dev/null; echo "unshare -Ur: $?"; touch "$HOME/mine" && echo home-writable; echo $(ls /proc/self/fd)`)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 5 || lines[0] == "0" || lines[1] == "unshare -U: 0" || lines[2] == "unshare -Ur: 0" || lines[3] != "home-writable" {
			t.Errorf("network %v: %q; want a uid other than 0, unshare failing, a writable home", network, out)
		}
		// stdin, stdout, stderr and ls's own: no descriptor of the satellite's, nor of bwrap's set-up.
		if len(lines) == 5 && lines[4] != "0 1 2 3" {
			t.Errorf("network %v: descriptors %s in the sandbox, want 0 1 2 3", network, lines[4])
		}
		if os.Geteuid() == 0 && lines[0] != strconv.Itoa(sandbox.TeamUID("t")) {
			t.Errorf("uid %s, want the team's %d", lines[0], sandbox.TeamUID("t"))
		}
	}
	p, err := b.Start(sandbox.Spec{TeamID: "t", Command: bin, Env: map[string]string{roleEnv: "ptrace"}})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop(0)
	out, _ := io.ReadAll(p.Stdout)
	if want := "ptrace: operation not permitted"; strings.TrimSpace(string(out)) != want {
		t.Errorf("ptrace in the sandbox: %q, want %q", out, want)
	}
}

// TestCeilings asks for far more than the satellite allows: the limits are clamped, the notes say so, and a
// fork bomb and a memory hog stop at the ceilings.
func TestCeilings(t *testing.T) {
	t.Parallel()
	b := newBwrap(t, sandbox.BwrapConfig{Ceilings: sandbox.Limits{MemoryBytes: 48 << 20, Processes: 20, CPU: 1}})
	greedy := &sandbox.Limits{MemoryBytes: 64 << 30, Processes: 100000, CPU: 256, CPUTime: 1000 * time.Hour, FileSizeBytes: 1 << 40}
	p, out := run(t, b, sandbox.Spec{TeamID: "t", Limits: greedy},
		`(while :; do sleep 30 & done) 2>/dev/null; set -- /proc/[0-9]*; echo $#`)
	if n, err := strconv.Atoi(strings.TrimSpace(out)); err != nil || n > 20 {
		t.Errorf("fork bomb: %q processes, ceiling 20", out)
	}
	notes := strings.Join(p.Notes(), "; ")
	for _, want := range []string{"memory limit 64 GiB lowered to the satellite's ceiling of 48 MiB",
		"process limit 100000 lowered to the satellite's ceiling of 20", "CPU share 256 lowered to the satellite's ceiling of 1",
		"CPU time limit 1000h0m0s lowered to the satellite's ceiling of 1h0m0s", "file size limit 1024 GiB lowered to the satellite's ceiling of 1 GiB"} {
		if !strings.Contains(notes, want) {
			t.Errorf("notes %q lack %q", notes, want)
		}
	}
	if b.Enforced().Memory {
		p, _ := run(t, b, sandbox.Spec{TeamID: "t", Limits: greedy}, `exec tail /dev/zero`)
		if want := "killed: out of memory (memory limit 48 MiB)"; p.Reason() != want {
			t.Errorf("memory hog: %s, reason %q; want %q", p.ExitStatus(), p.Reason(), want)
		}
	}
}

// TestRequireLimits refuses to run a server unlimited where its limits cannot be enforced.
func TestRequireLimits(t *testing.T) {
	t.Parallel()
	b := newBwrap(t, sandbox.BwrapConfig{NoCgroups: true, RequireLimits: true})
	_, err := b.Start(sandbox.Spec{TeamID: "t", Command: "true"})
	if !errors.Is(err, sandbox.ErrLimitsUnenforced) || !strings.Contains(err.Error(), "memory") {
		t.Fatalf("Start without cgroups: %v; want ErrLimitsUnenforced naming memory", err)
	}
	b.RequireLimits(false) // a team satellite's choice: run, with a warning
	if _, out := run(t, b, sandbox.Spec{TeamID: "t"}, `echo ran`); out != "ran\n" {
		t.Fatalf("without RequireLimits: %q", out)
	}
}

// TestHomeQuota fills a home past its quota: the writer gets ENOSPC, the satellite's disk and another
// team's home do not notice, and what was written stays for the next start.
func TestHomeQuota(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Fatal("home quotas mount file systems and need root (as CI runs the tests): sudo go test ./services/satellite/internal/sandbox/")
	}
	err := aptget.Install(t.Context(), nil, "e2fsprogs", func() bool { _, err := exec.LookPath("mkfs.ext4"); return err == nil })
	if err != nil {
		t.Fatalf("home quotas need mkfs.ext4 (apt-get install e2fsprogs): %v", err)
	}
	b := newBwrap(t, sandbox.BwrapConfig{HomeQuota: 16 << 20, Limits: sandbox.Limits{CPU: 1, FileSizeBytes: 8 << 20}})
	for _, team := range []string{"team-a", "team-b"} {
		home, _ := b.Home(sandbox.Spec{TeamID: team})
		t.Cleanup(func() { _ = syscall.Unmount(home, syscall.MNT_DETACH) })
	}
	// Three files of 8 MiB, each within the file size limit, do not fit in 16 MiB.
	_, out := run(t, b, sandbox.Spec{TeamID: "team-a"}, `for i in 1 2 3; do head -c 8000000 /dev/zero > "$HOME/f$i" 2>&1 || echo "f$i failed"; done; df -k "$HOME" | tail -1`)
	if !strings.Contains(out, "f2 failed") && !strings.Contains(out, "f3 failed") {
		t.Errorf("the home took more than its quota: %q", out)
	}
	// /tmp is bounded too, by the memory limit (100 MiB by default).
	if _, out := run(t, b, sandbox.Spec{TeamID: "team-b"}, `for i in $(seq 20); do head -c 8000000 /dev/zero > /tmp/f$i || break; done; echo $i`); strings.TrimSpace(out) == "20" {
		t.Errorf("/tmp took 20 files of 8 MB: %q", out)
	}
	if _, out := run(t, b, sandbox.Spec{TeamID: "team-b"}, `head -c 8000000 /dev/zero > "$HOME/f" && echo fits`); out != "fits\n" {
		t.Errorf("another team's home: %q", out)
	}
	if _, out := run(t, b, sandbox.Spec{TeamID: "team-a"}, `ls "$HOME"`); !strings.Contains(out, "f1") {
		t.Errorf("the home lost its files between starts: %q", out)
	}
	// A member's own home, removed when the member leaves: its file system goes with it.
	alice := sandbox.Spec{TeamID: "team-a", UserID: "alice"}
	aliceHome, _ := b.Home(alice)
	t.Cleanup(func() { _ = syscall.Unmount(aliceHome, syscall.MNT_DETACH) })
	if _, out := run(t, b, alice, `echo mine > "$HOME/f" && echo ok`); out != "ok\n" {
		t.Fatalf("alice's home: %q", out)
	}
	if err := b.RemoveUserHome("team-a", "alice"); err != nil {
		t.Fatal(err)
	}
	if exists(aliceHome) || exists(aliceHome+".img") {
		t.Error("alice's home or its image is still there")
	}
}
