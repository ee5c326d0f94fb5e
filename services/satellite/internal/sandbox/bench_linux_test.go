package sandbox_test

import (
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/orrery/orrery/internal/mcptest"
	"github.com/orrery/orrery/services/satellite/internal/sandbox"
)

// BenchmarkSpawnToOnline starts server-everything, initializes it and lists its tools, once per iteration,
// with each driver; it reports the median time to online, the resident memory of the server's whole
// process tree once online (for bwrap, bwrap's own processes included) and, with a network, that of the
// slirp4netns process serving the sandbox.
func BenchmarkSpawnToOnline(b *testing.B) {
	node, args := mcptest.Everything(b)
	pkg := mcptest.EverythingDir(b)
	path, err := sandbox.FindBwrap(b.Context(), nil, true)
	if err != nil {
		b.Fatal(err)
	}
	bw, err := sandbox.NewBwrap(nil, sandbox.BwrapConfig{Path: path, HomeRoot: b.TempDir(), ReadOnly: []string{pkg}})
	if err != nil {
		b.Fatal(err)
	}
	strict, err := sandbox.NewBwrap(nil, sandbox.BwrapConfig{Path: path, HomeRoot: b.TempDir(), ReadOnly: []string{pkg}, StartCPU: -1})
	if err != nil {
		b.Fatal(err)
	}
	for _, d := range []struct {
		name    string
		driver  sandbox.Driver
		limits  *sandbox.Limits
		network bool
	}{
		{"direct", sandbox.Direct{}, nil, false},
		// A full CPU, so that the figure compares the drivers, not the CPU share.
		{"bwrap", bw, &sandbox.Limits{CPU: 1}, false},
		// The same with public egress: a slirp4netns link and the namespace's firewall rules.
		{"bwrap-network", bw, &sandbox.Limits{CPU: 1}, true},
		// The default limits, a tenth of a CPU once online and DefaultStartCPU until then.
		{"bwrap-default-limits", bw, nil, false},
		// The default limits without the start-up allowance: a tenth of a CPU from the first instruction.
		{"bwrap-default-limits-no-start-allowance", strict, nil, false},
	} {
		b.Run(d.name, func(b *testing.B) {
			var rss, linkRSS uint64
			var took []time.Duration
			for b.Loop() {
				begin := time.Now()
				p, err := d.driver.Start(sandbox.Spec{TeamID: "bench", Command: node, Args: args, Limits: d.limits, Network: d.network})
				if err != nil {
					b.Fatal(err)
				}
				client := mcp.NewClient(&mcp.Implementation{Name: "sandbox-bench", Version: "0"}, nil)
				session, err := client.Connect(b.Context(), &mcp.IOTransport{Reader: p.Stdout, Writer: p.Stdin}, nil)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := session.ListTools(b.Context(), nil); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				took = append(took, time.Since(begin))
				p.Started() // as the runtime does once a server is online
				rss += treeRSS(p.Pid())
				linkRSS += childRSS("slirp4netns")
				_ = session.Close()
				p.Stop(time.Second)
				b.StartTimer()
			}
			b.ReportMetric(float64(rss)/float64(b.N)/(1<<20), "MiB-rss")
			if d.network {
				b.ReportMetric(float64(linkRSS)/float64(b.N)/(1<<20), "MiB-rss-link")
			}
			slices.Sort(took)
			b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "ms-p50")
		})
	}
}

// childRSS sums the resident memory of this process's children named name.
func childRSS(name string) uint64 {
	var total uint64
	for pid, rss := range tree(os.Getpid()) {
		if comm, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm"); strings.TrimSpace(string(comm)) == name {
			total += rss
		}
	}
	return total
}

// treeRSS sums the resident memory of pid and all its descendants.
func treeRSS(pid int) uint64 {
	var total uint64
	for _, rss := range tree(pid) {
		total += rss
	}
	return total
}

// tree returns pid and its live descendants with their resident memory.
func tree(pid int) map[int]uint64 {
	entries, _ := os.ReadDir("/proc")
	parent := map[int]int{}
	rss := map[int]uint64{}
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(stat)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) < 22 || f[0] == "Z" {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		pages, _ := strconv.ParseUint(f[21], 10, 64)
		parent[n], rss[n] = ppid, pages*uint64(os.Getpagesize())
	}
	found := map[int]uint64{}
	for n := range rss {
		for p := n; p > 1; p = parent[p] {
			if p == pid {
				found[n] = rss[n]
				break
			}
		}
	}
	return found
}

// BenchmarkSandboxStart measures the time from Start to a sandboxed shell's first output, with and without
// a network: what the network namespace's link and rules add to every server's start, without the noise
// of a node server's own start-up.
func BenchmarkSandboxStart(b *testing.B) {
	path, err := sandbox.FindBwrap(b.Context(), nil, true)
	if err != nil {
		b.Fatal(err)
	}
	bw, err := sandbox.NewBwrap(nil, sandbox.BwrapConfig{Path: path, HomeRoot: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	for _, network := range []bool{false, true} {
		b.Run(map[bool]string{false: "none", true: "public"}[network], func(b *testing.B) {
			var took []time.Duration
			for b.Loop() {
				begin := time.Now()
				p, err := bw.Start(sandbox.Spec{TeamID: "bench", Command: "echo", Args: []string{"up"}, Network: network, Limits: &sandbox.Limits{CPU: 1}})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := p.Stdout.Read(make([]byte, 8)); err != nil {
					b.Fatal(err)
				}
				took = append(took, time.Since(begin))
				b.StopTimer()
				p.Stop(time.Second)
				b.StartTimer()
			}
			slices.Sort(took)
			b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "ms-p50")
		})
	}
}
