package pglocal

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// childDataDirEnv makes the test binary act as a parent process that starts a cluster and exits without Stop.
const childDataDirEnv = "PGLOCAL_TEST_CHILD_DATA_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(childDataDirEnv); dir != "" {
		os.Exit(runChild(dir))
	}
	os.Exit(m.Run())
}

func runChild(dir string) int {
	c, err := Start(context.Background(), Config{DataDir: dir})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("pid=%d\n", c.proc.Pid)
	return 0
}

// newDataDir returns an empty directory the postgres user can reach, unlike t.TempDir() when running as root.
func newDataDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "pglocal-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
}

func start(t *testing.T, dir string) *Cluster {
	t.Helper()
	c, err := Start(t.Context(), Config{DataDir: dir, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop() })
	return c
}

func exec1(t *testing.T, c *Cluster, sql string) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), c.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(t.Context(), sql); err != nil {
		t.Fatal(err)
	}
}

// queryRow returns the one value sql selects.
func queryRow[T any](t *testing.T, c *Cluster, sql string) T {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), c.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var v T
	if err := conn.QueryRow(t.Context(), sql).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestRestartKeepsData(t *testing.T) {
	t.Parallel()
	dir := newDataDir(t)
	c := start(t, dir)
	exec1(t, c, "create table kept (n int); insert into kept values (42)")
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "postmaster.pid")); !os.IsNotExist(err) {
		t.Fatalf("postmaster.pid after Stop: %v", err)
	}

	c = start(t, dir)
	if n := queryRow[int](t, c, "select n from kept"); n != 42 {
		t.Fatalf("after restart got %d, want 42", n)
	}
}

// TestDurableByDefault checks the settings a private cluster runs with, and that a commit it acknowledged
// survives the server being killed at once, as it is when a control plane dies with it.
func TestDurableByDefault(t *testing.T) {
	t.Parallel()
	dir := newDataDir(t)
	c := start(t, dir)
	for _, setting := range []string{"fsync", "synchronous_commit", "full_page_writes"} {
		if got := queryRow[string](t, c, "show "+setting); got != "on" {
			t.Errorf("%s = %q, want on", setting, got)
		}
	}
	exec1(t, c, "create table kept (n int); insert into kept values (42)")
	if err := c.proc.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-c.done
	c = start(t, dir)
	if n := queryRow[int](t, c, "select n from kept"); n != 42 {
		t.Fatalf("after a kill and a restart got %d, want 42", n)
	}
}

func TestThrowawayTradesDurability(t *testing.T) {
	t.Parallel()
	c, err := Start(t.Context(), Config{DataDir: newDataDir(t), Logger: testLogger(t), Throwaway: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop() })
	if got := queryRow[string](t, c, "show fsync"); got != "off" {
		t.Fatalf("fsync = %q, want off", got)
	}
}

func TestLongDataDirUsesShortSocketDir(t *testing.T) {
	t.Parallel()
	parent := newDataDir(t)
	if err := os.Chmod(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(parent, strings.Repeat("d", maxSocketPath))
	c := start(t, dir)
	if c.socketDir == dir || len(c.socketDir)+len(socketName()) >= maxSocketPath {
		t.Fatalf("socket dir %q for data dir of %d bytes", c.socketDir, len(dir))
	}
	if n := queryRow[int](t, c, "select 1"); n != 1 {
		t.Fatalf("select 1 = %d", n)
	}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(c.socketDir); !os.IsNotExist(err) {
		t.Fatalf("socket dir after Stop: %v", err)
	}
}

// TestNoOrphanAfterParentExit proves that the parent-death signal survives the switch to the postgres user, and
// that the next start recovers the data directory of a server that was shut down that way.
func TestNoOrphanAfterParentExit(t *testing.T) {
	t.Parallel()
	dir := newDataDir(t)
	cmd := exec.CommandContext(t.Context(), os.Args[0])
	cmd.Env = append(os.Environ(), childDataDirEnv+"="+dir)
	cmd.Stderr = t.Output()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child: %v", err)
	}
	line, _, _ := strings.Cut(string(out), "\n")
	pid, err := strconv.Atoi(strings.TrimPrefix(line, "pid="))
	if err != nil {
		t.Fatalf("child printed %q", out)
	}
	deadline := time.Now().Add(10 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("postgres (pid %d) still runs 10s after its parent exited", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}

	c := start(t, dir)
	if n := queryRow[int](t, c, "select 1"); n != 1 {
		t.Fatalf("select 1 = %d", n)
	}
}

// TestStaleLockOfReusedPid covers a postmaster.pid whose pid now belongs to another live process of the same
// user, which PostgreSQL alone would take for a running server.
func TestStaleLockOfReusedPid(t *testing.T) {
	t.Parallel()
	dir := newDataDir(t)
	c := start(t, dir)
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}

	owner, err := serverOwner(t.Context(), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	sleep := exec.Command("sleep", "60")
	sleep.SysProcAttr = initdbProcAttr(owner)
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = sleep.Process.Kill()
		_ = sleep.Wait()
	})
	// The second line of a real lock file names the data directory; PostgreSQL checks only the pid.
	lock := fmt.Sprintf("%d\n%s\n", sleep.Process.Pid, dir)
	if err := os.WriteFile(filepath.Join(dir, "postmaster.pid"), []byte(lock), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir+socketName()+".lock", []byte(lock), 0o600); err != nil {
		t.Fatal(err)
	}
	if owner != nil {
		for _, name := range []string{filepath.Join(dir, "postmaster.pid"), dir + socketName() + ".lock"} {
			if err := os.Chown(name, owner.uid, owner.gid); err != nil {
				t.Fatal(err)
			}
		}
	}

	c = start(t, dir)
	if n := queryRow[int](t, c, "select 1"); n != 1 {
		t.Fatalf("select 1 = %d", n)
	}
}

func TestStartRefusesDataDirInUse(t *testing.T) {
	t.Parallel()
	dir := newDataDir(t)
	start(t, dir)
	_, err := Start(t.Context(), Config{DataDir: dir})
	if err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second Start on %s: %v, want in-use error", dir, err)
	}
}

func TestUnreachableDataDir(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only root hands the data dir to another user")
	}
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	_, err := Start(t.Context(), Config{DataDir: dir})
	if err == nil || !strings.Contains(err.Error(), "os.MkdirTemp") {
		t.Fatalf("Start under t.TempDir(): %v, want advice to use os.MkdirTemp", err)
	}
}

func TestCompareVersions(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		a, b string
		want int // sign
	}{
		{"15", "9.6", 1},
		{"9.6", "10", -1},
		{"16", "16", 0},
		{"9.5", "9.6", -1},
	} {
		got := compareVersions(tc.a, tc.b)
		if (got > 0) != (tc.want > 0) || (got < 0) != (tc.want < 0) {
			t.Errorf("compareVersions(%q, %q) = %d, want sign %d", tc.a, tc.b, got, tc.want)
		}
	}
}

// alive reports whether pid runs; a zombie whose new parent does not reap it counts as gone.
func alive(pid int) bool {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	defer f.Close()
	stat, _ := bufio.NewReader(f).ReadString(0)
	i := strings.LastIndexByte(stat, ')')
	return i < 0 || !strings.HasPrefix(stat[i+1:], " Z")
}
