package sandbox

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cgroupControllers are the controllers a server's limits need: memory for MemoryBytes, pids for Processes,
// cpu for CPU; and cpuacct, on cgroup v1 only, to tell the CPU time the server used (see cpuUsage).
var cgroupControllers = []string{"memory", "pids", "cpu", "cpuacct"}

// cgroupParents says where each controller's per-server cgroups go: below the satellite's own cgroup of that
// controller, so that whatever bounds the satellite bounds its servers as well. A controller without a
// writable place is missing.
type cgroupParents struct {
	v2   bool
	dirs map[string]string // controller → parent directory
}

// detectCgroups finds, for each controller, the satellite's own cgroup and whether a child can be made in it:
// cgroup v2 where it offers the controllers, v1 otherwise (hybrid hosts mount both). On v2 the satellite's
// cgroup must be able to hand controllers to children, which it cannot while it holds processes itself
// (the satellite among them) unless it is the root: a satellite under systemd needs Delegate=yes and a
// cgroup of its own below the service's; without that, v2 limits go unenforced and NewBwrap says so.
func detectCgroups() cgroupParents {
	own, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return cgroupParents{}
	}
	mounts, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return cgroupParents{}
	}
	defer mounts.Close()
	type mount struct{ root, point, fstype, opts string }
	var ms []mount
	sc := bufio.NewScanner(mounts)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		sep := -1
		for i, x := range f {
			if x == "-" {
				sep = i
				break
			}
		}
		if sep < 5 || sep+3 > len(f) {
			continue
		}
		if t := f[sep+1]; t == "cgroup" || t == "cgroup2" {
			ms = append(ms, mount{root: f[3], point: f[4], fstype: t, opts: f[sep+3]})
		}
	}
	// path of the satellite's cgroup per hierarchy: "" for v2, the controller list for v1
	paths := map[string]string{}
	for line := range strings.Lines(string(own)) {
		parts := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(parts) == 3 {
			paths[parts[1]] = parts[2]
		}
	}
	inMount := func(m mount, path string) string {
		rel, ok := strings.CutPrefix(path, m.root)
		if !ok && m.root != "/" {
			return ""
		}
		if !ok {
			rel = path
		}
		return filepath.Join(m.point, rel)
	}

	// v2 first: a delegated unified hierarchy offering every controller.
	if path, ok := paths[""]; ok {
		for _, m := range ms {
			if m.fstype != "cgroup2" {
				continue
			}
			dir := inMount(m, path)
			if dir == "" {
				continue
			}
			avail, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
			if err != nil {
				continue
			}
			p := cgroupParents{v2: true, dirs: map[string]string{}}
			for _, c := range cgroupControllers {
				if !strings.Contains(" "+strings.TrimSpace(string(avail))+" ", " "+c+" ") {
					continue
				}
				// Children get a controller only when the parent enables it for its subtree.
				if os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("+"+c), 0) == nil {
					p.dirs[c] = dir
				}
			}
			// Hybrid hosts mount the unified hierarchy with no controllers in it; those are left to v1.
			if len(p.dirs) > 0 {
				return p
			}
		}
	}
	p := cgroupParents{dirs: map[string]string{}}
	for _, c := range cgroupControllers {
		for _, m := range ms {
			if m.fstype != "cgroup" || !hasOption(m.opts, c) {
				continue
			}
			for list, path := range paths {
				if list != "" && hasOption(list, c) {
					if dir := inMount(m, path); dir != "" && writableDir(dir) {
						p.dirs[c] = dir
					}
				}
			}
		}
	}
	return p
}

func hasOption(list, name string) bool {
	for o := range strings.SplitSeq(list, ",") {
		if o == name {
			return true
		}
	}
	return false
}

func writableDir(dir string) bool {
	return syscall.Access(dir, 0x2 /* W_OK */) == nil
}

// cgroup is one server's set of cgroups, one directory per hierarchy.
type cgroup struct {
	v2   bool
	dirs map[string]string // controller → the server's directory
}

// cgroupPrefix starts the names of the cgroups a satellite with the given owner mark makes, so that Sweep
// removes its own leftovers and never another satellite's.
func cgroupPrefix(owner string) string {
	if owner == "" {
		return "orrery-"
	}
	sum := sha256.Sum256([]byte(owner))
	return "orrery-" + hex.EncodeToString(sum[:4]) + "-"
}

// newCgroup makes the server's cgroups below parents and writes limits into them. Controllers that cannot
// be set up are left out and named in the returned error, which is only a warning: the others still apply.
func (parents cgroupParents) newCgroup(prefix, name string, l Limits) (*cgroup, error) {
	var suffix [4]byte
	_, _ = rand.Read(suffix[:])
	name = prefix + name + "-" + hex.EncodeToString(suffix[:])
	cg := &cgroup{v2: parents.v2, dirs: map[string]string{}}
	var errs []error
	made := map[string]bool{}
	for _, c := range cgroupControllers {
		parent, ok := parents.dirs[c]
		if !ok {
			continue
		}
		dir := filepath.Join(parent, name)
		if !made[dir] {
			if err := os.Mkdir(dir, 0o755); err != nil {
				errs = append(errs, fmt.Errorf("%s cgroup: %w", c, err))
				continue
			}
			made[dir] = true
		}
		if err := cg.limit(c, dir, l); err != nil {
			errs = append(errs, fmt.Errorf("%s cgroup: %w", c, err))
			continue
		}
		cg.dirs[c] = dir
	}
	return cg, errors.Join(errs...)
}

func (cg *cgroup) limit(controller, dir string, l Limits) error {
	write := func(file, value string) error {
		return os.WriteFile(filepath.Join(dir, file), []byte(value), 0)
	}
	const period = 100000 // µs
	quota := max(int64(l.CPU*period), 1000)
	switch {
	case controller == "cpuacct": // accounts, limits nothing
		return nil
	case controller == "pids":
		return write("pids.max", strconv.Itoa(l.Processes))
	case controller == "memory" && cg.v2:
		_ = write("memory.swap.max", "0") // absent without swap accounting
		return write("memory.max", strconv.FormatInt(l.MemoryBytes, 10))
	case controller == "memory":
		if err := write("memory.limit_in_bytes", strconv.FormatInt(l.MemoryBytes, 10)); err != nil {
			return err
		}
		// Without it the server could swap instead of hitting the limit; absent without swap accounting.
		_ = write("memory.memsw.limit_in_bytes", strconv.FormatInt(l.MemoryBytes, 10))
		return nil
	case controller == "cpu" && cg.v2:
		return write("cpu.max", fmt.Sprintf("%d %d", quota, period))
	default:
		if err := write("cpu.cfs_period_us", strconv.Itoa(period)); err != nil {
			return err
		}
		return write("cpu.cfs_quota_us", strconv.FormatInt(quota, 10))
	}
}

// memoryUsage returns the memory charged to the cgroup.
func (cg *cgroup) memoryUsage() (uint64, bool) {
	dir, ok := cg.dirs["memory"]
	if !ok {
		return 0, false
	}
	file := "memory.usage_in_bytes"
	if cg.v2 {
		file = "memory.current"
	}
	data, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		return 0, false
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64)
	return n, err == nil
}

// cpuUsage returns the CPU time the cgroup's processes have used. On cgroup v2 every cgroup counts it.
func (cg *cgroup) cpuUsage() (time.Duration, bool) {
	if cg.v2 {
		for _, dir := range cg.dirs {
			data, err := os.ReadFile(filepath.Join(dir, "cpu.stat"))
			if err != nil {
				return 0, false
			}
			for line := range strings.Lines(string(data)) {
				if v, ok := strings.CutPrefix(strings.TrimSpace(line), "usage_usec "); ok {
					us, err := strconv.ParseInt(v, 10, 64)
					return time.Duration(us) * time.Microsecond, err == nil
				}
			}
			return 0, false
		}
		return 0, false
	}
	dir, ok := cg.dirs["cpuacct"]
	if !ok {
		return 0, false
	}
	data, err := os.ReadFile(filepath.Join(dir, "cpuacct.usage"))
	if err != nil {
		return 0, false
	}
	ns, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
	return time.Duration(ns), err == nil
}

// setCPU changes the CPU share of a running server.
func (cg *cgroup) setCPU(share float64) error {
	dir, ok := cg.dirs["cpu"]
	if !ok {
		return nil
	}
	return cg.limit("cpu", dir, Limits{CPU: share})
}

// procsFiles are the files a process writes its pid into to join the server's cgroups.
func (cg *cgroup) procsFiles() []string {
	seen := map[string]bool{}
	var files []string
	for _, c := range cgroupControllers {
		if dir, ok := cg.dirs[c]; ok && !seen[dir] {
			seen[dir] = true
			files = append(files, filepath.Join(dir, "cgroup.procs"))
		}
	}
	return files
}

// oomKilled reports whether the kernel killed a process of the cgroup for want of memory.
func (cg *cgroup) oomKilled() bool {
	dir, ok := cg.dirs["memory"]
	if !ok {
		return false
	}
	file := "memory.oom_control"
	if cg.v2 {
		file = "memory.events"
	}
	data, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		return false
	}
	for line := range strings.Lines(string(data)) {
		if n, ok := strings.CutPrefix(strings.TrimSpace(line), "oom_kill "); ok && n != "0" {
			return true
		}
	}
	if !cg.v2 { // kernels without oom_kill in oom_control: a failed charge is the next best sign
		if n, err := os.ReadFile(filepath.Join(dir, "memory.failcnt")); err == nil && strings.TrimSpace(string(n)) != "0" {
			return true
		}
	}
	return false
}

// pidsMaxed reports whether a fork in the cgroup failed for its process limit.
func (cg *cgroup) pidsMaxed() bool {
	dir, ok := cg.dirs["pids"]
	if !ok {
		return false
	}
	data, err := os.ReadFile(filepath.Join(dir, "pids.events"))
	if err != nil {
		return false
	}
	for line := range strings.Lines(string(data)) {
		if n, ok := strings.CutPrefix(strings.TrimSpace(line), "max "); ok && n != "0" {
			return true
		}
	}
	return false
}

// remove kills whatever is left in the cgroups and deletes them.
func (cg *cgroup) remove() {
	seen := map[string]bool{}
	for _, dir := range cg.dirs {
		if seen[dir] {
			continue
		}
		seen[dir] = true
		deadline := time.Now().Add(groupExitTimeout)
		for {
			procs, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
			for f := range strings.FieldsSeq(string(procs)) {
				if pid, err := strconv.Atoi(f); err == nil {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
			if err := os.Remove(dir); err == nil || errors.Is(err, os.ErrNotExist) || time.Now().After(deadline) {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// sweep removes the cgroups named with prefix that a crashed satellite left behind, killing what is left in
// them, and returns how many it removed.
func (parents cgroupParents) sweep(prefix string) int {
	removed := 0
	seen := map[string]bool{}
	for _, parent := range parents.dirs {
		if seen[parent] {
			continue
		}
		seen[parent] = true
		entries, err := os.ReadDir(parent)
		if err != nil {
			continue
		}
		for _, e := range entries {
			if e.IsDir() && strings.HasPrefix(e.Name(), prefix) {
				dir := filepath.Join(parent, e.Name())
				(&cgroup{dirs: map[string]string{"": dir}}).remove()
				if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
					removed++
				}
			}
		}
	}
	return removed
}
