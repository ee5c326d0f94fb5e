package sandbox

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Limits bounds the resources of one server process and everything it starts. A zero field takes its default.
type Limits struct {
	// MemoryBytes caps the memory of the server's processes together. Default 100 MiB.
	MemoryBytes int64
	// Processes caps how many processes and threads the server may run at once. Default 50.
	Processes int
	// CPU is the share of one CPU the server may use over time. Default 0.1.
	CPU float64
	// CPUTime is the CPU time each of the server's processes may consume before the kernel kills it. Default 60 s.
	CPUTime time.Duration
	// OpenFiles caps each process's open file descriptors. Default 1024.
	OpenFiles int
	// FileSizeBytes caps the size of any file a process writes. Default 50 MiB.
	FileSizeBytes int64
}

// DefaultLimits are the limits of a server whose configuration sets none.
var DefaultLimits = Limits{
	MemoryBytes:   100 << 20,
	Processes:     50,
	CPU:           0.1,
	CPUTime:       60 * time.Second,
	OpenFiles:     1024,
	FileSizeBytes: 50 << 20,
}

// DefaultCeilings are the most a server may be given when the satellite's operator sets no ceilings: a
// template asking for more gets these. They leave room for a heavy server (a browser, a language server)
// without letting one template take a satellite that runs many teams' servers.
var DefaultCeilings = Limits{
	MemoryBytes:   2 << 30,
	Processes:     512,
	CPU:           2,
	CPUTime:       time.Hour,
	OpenFiles:     8192,
	FileSizeBytes: 1 << 30,
}

// Clamp returns l with every field above its ceiling in c lowered to it, and a note for each, such as
// "memory limit 64 GiB lowered to the satellite's ceiling of 2 GiB". Zero fields of c bound nothing.
func (l Limits) Clamp(c Limits) (Limits, []string) {
	var notes []string
	note := func(what, asked, ceiling string) {
		notes = append(notes, fmt.Sprintf("%s %s lowered to the satellite's ceiling of %s", what, asked, ceiling))
	}
	if c.MemoryBytes > 0 && l.MemoryBytes > c.MemoryBytes {
		note("memory limit", formatBytes(l.MemoryBytes), formatBytes(c.MemoryBytes))
		l.MemoryBytes = c.MemoryBytes
	}
	if c.Processes > 0 && l.Processes > c.Processes {
		note("process limit", strconv.Itoa(l.Processes), strconv.Itoa(c.Processes))
		l.Processes = c.Processes
	}
	if c.CPU > 0 && l.CPU > c.CPU {
		note("CPU share", strconv.FormatFloat(l.CPU, 'g', -1, 64), strconv.FormatFloat(c.CPU, 'g', -1, 64))
		l.CPU = c.CPU
	}
	if c.CPUTime > 0 && l.CPUTime > c.CPUTime {
		note("CPU time limit", l.CPUTime.String(), c.CPUTime.String())
		l.CPUTime = c.CPUTime
	}
	if c.OpenFiles > 0 && l.OpenFiles > c.OpenFiles {
		note("open file limit", strconv.Itoa(l.OpenFiles), strconv.Itoa(c.OpenFiles))
		l.OpenFiles = c.OpenFiles
	}
	if c.FileSizeBytes > 0 && l.FileSizeBytes > c.FileSizeBytes {
		note("file size limit", formatBytes(l.FileSizeBytes), formatBytes(c.FileSizeBytes))
		l.FileSizeBytes = c.FileSizeBytes
	}
	return l, notes
}

// WithDefaults returns l with every zero field set from DefaultLimits.
func (l Limits) WithDefaults() Limits { return l.Or(DefaultLimits) }

// Or returns l with every zero field set from d.
func (l Limits) Or(d Limits) Limits {
	if l.MemoryBytes == 0 {
		l.MemoryBytes = d.MemoryBytes
	}
	if l.Processes == 0 {
		l.Processes = d.Processes
	}
	if l.CPU == 0 {
		l.CPU = d.CPU
	}
	if l.CPUTime == 0 {
		l.CPUTime = d.CPUTime
	}
	if l.OpenFiles == 0 {
		l.OpenFiles = d.OpenFiles
	}
	if l.FileSizeBytes == 0 {
		l.FileSizeBytes = d.FileSizeBytes
	}
	return l
}

// formatBytes writes a limit in GiB or MiB where it is a whole number of them, as limits usually are.
func formatBytes(n int64) string {
	if n > 0 && n%(1<<30) == 0 {
		return fmt.Sprintf("%d GiB", n>>30)
	}
	if n > 0 && n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}

// ParseLimits parses limits written as comma-separated key=value pairs, the form of the satellite's
// ceilings setting: memory=2GiB,processes=512,cpu=2,cpu_time=1h,open_files=8192,file_size=1GiB. Sizes take
// the suffixes KiB, MiB and GiB (or none, for bytes); cpu is a share of one CPU; cpu_time a Go duration.
// Keys left out stay zero.
func ParseLimits(s string) (Limits, error) {
	var l Limits
	for kv := range strings.SplitSeq(s, ",") {
		kv = strings.TrimSpace(kv)
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return Limits{}, fmt.Errorf("limit %q is not key=value", kv)
		}
		var err error
		switch k = strings.TrimSpace(k); k {
		case "memory":
			l.MemoryBytes, err = parseBytes(v)
		case "file_size":
			l.FileSizeBytes, err = parseBytes(v)
		case "processes":
			l.Processes, err = strconv.Atoi(v)
		case "open_files":
			l.OpenFiles, err = strconv.Atoi(v)
		case "cpu":
			l.CPU, err = strconv.ParseFloat(v, 64)
		case "cpu_time":
			l.CPUTime, err = time.ParseDuration(v)
		default:
			return Limits{}, fmt.Errorf("unknown limit %q: want memory, processes, cpu, cpu_time, open_files or file_size", k)
		}
		if err == nil && (l.MemoryBytes < 0 || l.FileSizeBytes < 0 || l.Processes < 0 || l.OpenFiles < 0 || l.CPU < 0 || l.CPUTime < 0) {
			err = errors.New("negative")
		}
		if err != nil {
			return Limits{}, fmt.Errorf("limit %s=%s: %w", k, v, err)
		}
	}
	return l, nil
}

func parseBytes(s string) (int64, error) {
	s = strings.TrimSpace(s)
	mult := int64(1)
	for suffix, m := range map[string]int64{"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30} {
		if n, ok := strings.CutSuffix(s, suffix); ok {
			s, mult = strings.TrimSpace(n), m
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, err
	}
	if n > (1<<62)/mult {
		return 0, errors.New("too large")
	}
	return n * mult, nil
}
