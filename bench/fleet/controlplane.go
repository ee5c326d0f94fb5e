package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/orrery/orrery/internal/pglocal"
)

// database is a private PostgreSQL cluster with one database for the control plane.
type database struct {
	cluster *pglocal.Cluster
	dir     string
	url     string
}

// startDatabase starts a throwaway PostgreSQL from the system's binaries, as the control plane does on zero
// configuration, and creates the database the replica serves.
func startDatabase(ctx context.Context) (*database, error) {
	dir, err := os.MkdirTemp("", "orrery-fleet-")
	if err != nil {
		return nil, err
	}
	// The postgres user, which runs the server when we are root, must pass through to the data directory.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	cluster, err := pglocal.Start(ctx, pglocal.Config{DataDir: filepath.Join(dir, "data"), InstallMissing: true, Throwaway: true})
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	db := &database{cluster: cluster, dir: dir, url: cluster.URL("fleet")}
	conn, err := pgx.Connect(ctx, cluster.URL("postgres"))
	if err == nil {
		_, err = conn.Exec(ctx, "create database fleet")
		_ = conn.Close(ctx)
	}
	if err != nil {
		db.stop()
		return nil, fmt.Errorf("create database: %w", err)
	}
	return db, nil
}

func (d *database) stop() {
	_ = d.cluster.Stop()
	_ = os.RemoveAll(d.dir)
}

// replica is a control-plane process.
type replica struct {
	cmd        *exec.Cmd
	url        string
	adminToken string
	done       chan struct{}
}

// startReplica starts the control-plane binary at bin on a free loopback port against databaseURL, with fresh
// secrets and, unless memoryLimit is empty, that soft memory limit, and returns once it says where it serves.
func startReplica(ctx context.Context, bin, databaseURL, memoryLimit string, log io.Writer) (*replica, error) {
	r := &replica{adminToken: "orrery_admin_" + random(24), done: make(chan struct{})}
	r.cmd = exec.Command(bin, "-listen", "127.0.0.1:0", "-database-url", databaseURL, "-shutdown-timeout", "5s")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ORRERY_") && (memoryLimit == "" || !strings.HasPrefix(kv, "GOMEMLIMIT=")) {
			r.cmd.Env = append(r.cmd.Env, kv)
		}
	}
	r.cmd.Env = append(r.cmd.Env,
		"ORRERY_ADMIN_TOKEN="+r.adminToken,
		"ORRERY_TOKEN_SIGNING_KEY="+random(32),
		"ORRERY_SECRET_KEYS=fleet1:"+base64.StdEncoding.EncodeToString(randomBytes(32)),
		"ORRERY_LOG_FORMAT=json",
		"ORRERY_DRAIN_PERIOD=0s",
	)
	if memoryLimit != "" {
		r.cmd.Env = append(r.cmd.Env, "GOMEMLIMIT="+memoryLimit)
	}
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := r.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	r.cmd.Stderr = r.cmd.Stdout
	if err := r.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start control plane: %w", err)
	}
	go func() {
		_ = r.cmd.Wait()
		close(r.done)
	}()
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var entry struct {
				Level string `json:"level"`
				Msg   string `json:"msg"`
				URL   string `json:"url"`
			}
			if json.Unmarshal(sc.Bytes(), &entry) == nil && entry.Msg == "control plane serving" && entry.URL != "" {
				select {
				case found <- entry.URL:
				default:
				}
				continue
			}
			if entry.Level != "INFO" && entry.Level != "DEBUG" {
				fmt.Fprintf(log, "controlplane: %s\n", sc.Bytes())
			}
		}
	}()
	select {
	case r.url = <-found:
		return r, nil
	case <-r.done:
		return nil, errors.New("control plane exited while starting")
	case <-time.After(60 * time.Second):
		r.stop()
		return nil, errors.New("control plane did not say where it serves within 60 s")
	case <-ctx.Done():
		r.stop()
		return nil, ctx.Err()
	}
}

func (r *replica) stop() {
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(15 * time.Second):
		_ = r.cmd.Process.Kill()
		<-r.done
	}
}

// procStats are a process's resident memory and the CPU time it has used, from /proc.
type procStats struct {
	rss, peakRSS int64 // bytes
	cpu          time.Duration
}

func readProcStats(pid int) (procStats, error) {
	var s procStats
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	for line := range strings.Lines(string(status)) {
		name, value, _ := strings.Cut(line, ":")
		fields := strings.Fields(value)
		if len(fields) == 0 {
			continue
		}
		kib, _ := strconv.ParseInt(fields[0], 10, 64)
		switch name {
		case "VmRSS":
			s.rss = kib << 10
		case "VmHWM":
			s.peakRSS = kib << 10
		}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// Fields after the command name, which is in parentheses and may hold spaces: utime and stime are the
	// 12th and 13th of them, in clock ticks (100 a second on Linux).
	_, rest, _ := strings.Cut(string(stat), ") ")
	f := strings.Fields(rest)
	if len(f) < 13 {
		return s, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	s.cpu = ticks(f[11], f[12])
	return s, nil
}

func ticks(fields ...string) time.Duration {
	var sum int64
	for _, f := range fields {
		n, _ := strconv.ParseInt(f, 10, 64)
		sum += n
	}
	return time.Duration(sum) * 10 * time.Millisecond
}

// cpu is the CPU time PostgreSQL has used: its postmaster's, that of the backends it has reaped and that of
// those still running.
func (db *database) cpu() time.Duration {
	pidFile, err := os.ReadFile(filepath.Join(db.dir, "data", "postmaster.pid"))
	if err != nil {
		return 0
	}
	postmaster, _, _ := strings.Cut(string(pidFile), "\n")
	var total time.Duration
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		stat, err := os.ReadFile(filepath.Join("/proc", p.Name(), "stat"))
		if err != nil {
			continue
		}
		_, rest, _ := strings.Cut(string(stat), ") ")
		f := strings.Fields(rest) // state, ppid, ... utime (12th), stime, cutime, cstime
		switch {
		case len(f) < 15:
		case p.Name() == postmaster:
			total += ticks(f[11], f[12], f[13], f[14])
		case f[1] == postmaster:
			total += ticks(f[11], f[12])
		}
	}
	return total
}

// selfCPU is the CPU time this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func random(n int) string { return base64.RawURLEncoding.EncodeToString(randomBytes(n)) }
