package sandbox

import (
	"fmt"
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

// formatBytes writes a limit in MiB where it is a whole number of them, as limits usually are.
func formatBytes(n int64) string {
	if n > 0 && n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}
