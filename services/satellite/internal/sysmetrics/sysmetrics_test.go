package sysmetrics

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

func writeProc(t *testing.T, dir, stat string) {
	t.Helper()
	files := map[string]string{
		"stat":    stat,
		"meminfo": "MemTotal:       16000000 kB\nMemFree:         1000000 kB\nMemAvailable:    4000000 kB\n",
		"loadavg": "1.25 0.80 0.50 2/900 12345\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSampleFromProc(t *testing.T) {
	t.Parallel()
	proc := t.TempDir()
	// user nice system idle iowait irq softirq steal
	writeProc(t, proc, "cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 1 2 3 4\n")
	s := newSampler(proc, t.TempDir(), time.Now().Add(-time.Minute))

	// The first sample has no predecessor: 200 busy jiffies of 1000 since boot.
	m, err := s.Sample()
	if err != nil {
		t.Fatal(err)
	}
	if m.CPUPercent != 20 {
		t.Errorf("first CPUPercent = %v, want 20", m.CPUPercent)
	}

	// 300 more busy jiffies and 100 more idle ones: 75 % busy since the previous sample.
	writeProc(t, proc, "cpu  300 0 200 750 150 0 0 0 0 0\n")
	m, err = s.Sample()
	if err != nil {
		t.Fatal(err)
	}
	if m.CPUPercent != 75 {
		t.Errorf("CPUPercent = %v, want 75", m.CPUPercent)
	}
	if m.MemoryTotalBytes != 16000000*1024 || m.MemoryUsedBytes != 12000000*1024 {
		t.Errorf("memory = %d used of %d", m.MemoryUsedBytes, m.MemoryTotalBytes)
	}
	if m.LoadAverage1m != 1.25 {
		t.Errorf("LoadAverage1m = %v", m.LoadAverage1m)
	}
	if m.DiskTotalBytes == 0 || m.DiskUsedBytes > m.DiskTotalBytes {
		t.Errorf("disk = %d used of %d", m.DiskUsedBytes, m.DiskTotalBytes)
	}
	if m.Uptime < time.Minute {
		t.Errorf("Uptime = %v, want at least 1m", m.Uptime)
	}

	// Unchanged counters: no time passed, so no use can be claimed.
	m, err = s.Sample()
	if err != nil {
		t.Fatal(err)
	}
	if m.CPUPercent != 0 {
		t.Errorf("CPUPercent with unchanged counters = %v, want 0", m.CPUPercent)
	}
}

func TestSamplePartial(t *testing.T) {
	t.Parallel()
	proc := t.TempDir()
	s := newSampler(proc, "", time.Now())
	if err := os.WriteFile(filepath.Join(proc, "loadavg"), []byte("0.5 0 0 1/1 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := s.Sample()
	if err == nil {
		t.Fatal("Sample with missing files succeeded")
	}
	if m.LoadAverage1m != 0.5 {
		t.Errorf("the readable metric was lost: %+v", m)
	}
}

func TestSampleRealMachine(t *testing.T) {
	t.Parallel()
	if runtime.GOOS != "linux" {
		t.Skip("reads Linux /proc")
	}
	s := New(t.TempDir())
	m, err := s.Sample()
	if err != nil {
		t.Fatal(err)
	}
	if m.MemoryTotalBytes == 0 || m.DiskTotalBytes == 0 || m.CPUPercent < 0 || m.CPUPercent > 100 {
		t.Errorf("implausible metrics: %+v", m)
	}
}
