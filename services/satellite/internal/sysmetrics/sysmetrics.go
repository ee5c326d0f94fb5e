// Package sysmetrics measures the satellite's machine for its heartbeats: CPU use since the previous
// sample, memory, load and the disk holding the state directory, read from Linux's /proc and statfs.
package sysmetrics

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Metrics is one sample. A field the machine could not report is zero.
type Metrics struct {
	// CPUPercent is the machine's CPU use since the previous sample, 0 to 100.
	CPUPercent float64
	// MemoryUsedBytes is MemTotal minus MemAvailable: memory that cannot be handed to a new process
	// without swapping, which is what capacity decisions need (page cache does not count).
	MemoryUsedBytes uint64
	// MemoryTotalBytes is MemTotal.
	MemoryTotalBytes uint64
	// DiskUsedBytes is space in use on the file system holding the disk path.
	DiskUsedBytes uint64
	// DiskTotalBytes is that file system's size.
	DiskTotalBytes uint64
	// LoadAverage1m is the one-minute load average.
	LoadAverage1m float64
	// Uptime is how long the satellite process has run.
	Uptime time.Duration
}

// Sampler takes samples. It remembers the previous CPU counters, so CPU use covers the time between two
// samples; the first sample covers the time since boot, since a window of the few milliseconds between
// start-up and the first heartbeat would only measure start-up itself. It is safe for concurrent use.
type Sampler struct {
	procRoot string
	diskPath string
	start    time.Time

	mu      sync.Mutex
	prevCPU cpuTimes
}

// New returns a Sampler that measures the file system holding diskPath, typically the state directory, and
// counts uptime from now.
func New(diskPath string) *Sampler {
	return newSampler("/proc", diskPath, time.Now())
}

func newSampler(procRoot, diskPath string, start time.Time) *Sampler {
	return &Sampler{procRoot: procRoot, diskPath: diskPath, start: start}
}

// Sample measures the machine. It returns every metric it could read, and an error naming those it could
// not; a heartbeat with partial metrics is better than none.
func (s *Sampler) Sample() (Metrics, error) {
	m := Metrics{Uptime: time.Since(s.start)}
	var errs []error

	cur, err := readCPU(filepath.Join(s.procRoot, "stat"))
	if err != nil {
		errs = append(errs, err)
	} else {
		s.mu.Lock()
		m.CPUPercent = cur.percentSince(s.prevCPU)
		s.prevCPU = cur
		s.mu.Unlock()
	}

	if err := readMemory(filepath.Join(s.procRoot, "meminfo"), &m); err != nil {
		errs = append(errs, err)
	}

	if load, err := readLoad(filepath.Join(s.procRoot, "loadavg")); err != nil {
		errs = append(errs, err)
	} else {
		m.LoadAverage1m = load
	}

	if s.diskPath != "" {
		var st syscall.Statfs_t
		if err := syscall.Statfs(s.diskPath, &st); err != nil {
			errs = append(errs, fmt.Errorf("statfs %s: %w", s.diskPath, err))
		} else {
			bsize := uint64(st.Bsize)
			m.DiskTotalBytes = st.Blocks * bsize
			m.DiskUsedBytes = (st.Blocks - st.Bfree) * bsize
		}
	}
	return m, errors.Join(errs...)
}

// cpuTimes are the aggregate jiffies of /proc/stat's "cpu" line.
type cpuTimes struct {
	idle, total uint64
}

func (c cpuTimes) percentSince(prev cpuTimes) float64 {
	// Counters only grow; anything else means the previous read failed or the counters were reset.
	if c.total <= prev.total || c.idle < prev.idle {
		return 0
	}
	total := c.total - prev.total
	idle := c.idle - prev.idle
	if idle > total {
		return 0
	}
	return min(100, max(0, 100*float64(total-idle)/float64(total)))
}

func readCPU(path string) (cpuTimes, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return cpuTimes{}, fmt.Errorf("read cpu times: %w", err)
	}
	line, _, _ := bytes.Cut(data, []byte("\n"))
	fields := strings.Fields(string(line))
	if len(fields) < 5 || fields[0] != "cpu" {
		return cpuTimes{}, fmt.Errorf("read cpu times: unexpected first line %q in %s", line, path)
	}
	var t cpuTimes
	// user nice system idle iowait irq softirq steal guest guest_nice; guest time is already counted in
	// user and nice, so it is left out of the total.
	for i, f := range fields[1:] {
		if i >= 8 {
			break
		}
		v, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return cpuTimes{}, fmt.Errorf("read cpu times: %w", err)
		}
		t.total += v
		if i == 3 || i == 4 { // idle, iowait
			t.idle += v
		}
	}
	return t, nil
}

func readMemory(path string, m *Metrics) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("read memory: %w", err)
	}
	defer f.Close()
	var total, available uint64
	var haveTotal, haveAvailable bool
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || (name != "MemTotal" && name != "MemAvailable") {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseUint(fields[0], 10, 64)
		if err != nil {
			return fmt.Errorf("read memory: %s: %w", name, err)
		}
		if len(fields) > 1 && fields[1] == "kB" {
			v *= 1024
		}
		if name == "MemTotal" {
			total, haveTotal = v, true
		} else {
			available, haveAvailable = v, true
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read memory: %w", err)
	}
	if !haveTotal || !haveAvailable {
		return fmt.Errorf("read memory: MemTotal or MemAvailable missing from %s", path)
	}
	m.MemoryTotalBytes = total
	if available < total {
		m.MemoryUsedBytes = total - available
	}
	return nil
}

func readLoad(path string) (float64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read load average: %w", err)
	}
	fields := strings.Fields(string(data))
	if len(fields) == 0 {
		return 0, fmt.Errorf("read load average: %s is empty", path)
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("read load average: unexpected value %q", fields[0])
	}
	return v, nil
}
