package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// SandboxHome is where a bwrap server finds its home, its working directory too.
const SandboxHome = "/home/sandbox"

// sandboxPath is the PATH a bwrap server gets unless its configuration sets one.
const sandboxPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// BwrapPassEnv are the satellite's environment variables a bwrap server inherits: only the locale and time
// zone. PATH, HOME, USER and TMPDIR are the sandbox's own.
var BwrapPassEnv = []string{"LANG", "LC_ALL", "LC_CTYPE", "LC_MESSAGES", "TZ"}

// blockedEnv are variables a server's configuration may not set: each makes a program load code or options
// from somewhere other than its command line, which turns a harmless-looking configuration into arbitrary
// code, or into a way around the sandbox's PATH and HOME.
var blockedEnv = []string{
	"BASH_ENV", "ENV", "SHELLOPTS", "BASHOPTS", "PS4", "IFS", "CDPATH", "GLOBIGNORE",
	"NODE_OPTIONS", "NODE_PATH", "NODE_REPL_EXTERNAL_MODULE",
	"PYTHONPATH", "PYTHONSTARTUP", "PYTHONHOME", "PYTHONINSPECT", "PYTHONUSERBASE", "PYTHONBREAKPOINT",
	"PERL5OPT", "PERL5LIB", "PERLLIB", "PERL5DB",
	"RUBYOPT", "RUBYLIB",
	"JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS", "JDK_JAVA_OPTIONS", "CLASSPATH",
	"GCONV_PATH", "LOCPATH", "NLSPATH", "HOSTALIASES", "LOCALDOMAIN", "RES_OPTIONS", "TMPDIR", "HOME", OwnerEnv,
}

// blockedEnvPrefixes are prefixes of blocked variables: the dynamic linker's (LD_PRELOAD, LD_LIBRARY_PATH,
// LD_AUDIT ...), macOS's equivalents, and glibc's tunables and malloc settings.
var blockedEnvPrefixes = []string{"LD_", "DYLD_", "GLIBC_TUNABLES", "MALLOC_"}

// ErrBlockedEnv is returned by Bwrap.Start for a configuration that sets a blocked environment variable.
var ErrBlockedEnv = errors.New("environment variable not allowed in a sandbox")

// validName is what team and user ids must look like to name a directory.
var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// BwrapConfig configures a Bwrap driver.
type BwrapConfig struct {
	// Path is the bwrap executable. Empty: bwrap in the satellite's PATH (see FindBwrap).
	Path string
	// HomeRoot holds the servers' homes: <HomeRoot>/<team>/home, and <HomeRoot>/<team>/users/<user> for
	// servers whose spec names a user. Required. Only each home is mounted into a sandbox, never HomeRoot or
	// a parent of it, so HomeRoot may lie in the satellite's state directory beside its key.
	HomeRoot string
	// ReadOnly are further host paths every server sees read-only at the same place, such as where server
	// packages are installed. The system (/usr, /bin, /lib*) and a few files of /etc are always there.
	ReadOnly []string
	// Owner marks the sandboxes started, as Direct.Owner does, so that Sweep finds what a crashed satellite
	// left behind. Empty: not marked.
	Owner string
	// Limits fill in what a spec's Limits leave zero; zero fields here take DefaultLimits.
	Limits Limits
	// NoCgroups leaves cgroups alone: memory, process count and CPU share go unenforced.
	NoCgroups bool
	// StartCPU is the share of one CPU a server may use while it starts, until Process.Started, where its
	// CPU limit is lower. Default DefaultStartCPU; negative: none beyond the limit.
	StartCPU float64
}

// DefaultStartCPU is the CPU share a server may use while it starts. Starting is the costly part of a
// server's life: node loads and compiles its modules, a first npx run downloads and unpacks a package. At
// the default limit of a tenth of a CPU, server-everything takes about 4 s to answer its initialize instead
// of 0.25 s, and a first npx run of it needs some 70 s of wall time, more than the runtime's start
// timeout. A whole CPU while starting keeps both quick; the allowance is bounded all the same, by the start
// timeout of each attempt and by the crash policy's limit on attempts, and the CPU-time rlimit still applies.
const DefaultStartCPU = 1.0

// Enforcement says which limits a Bwrap driver can enforce on this machine.
type Enforcement struct {
	// Memory, Processes and CPU are enforced through cgroups.
	Memory, Processes, CPU bool
	// CPUTime, OpenFiles and FileSize are enforced through rlimits.
	CPUTime, OpenFiles, FileSize bool
	// Cgroups names the cgroup version in use: "v2", "v1" or "" for none.
	Cgroups string
}

// Bwrap runs every server in a bubblewrap sandbox: new PID, IPC, UTS and mount namespaces (and network, unless
// the spec allows it); the system read-only; a writable home of the team's (or the user's) own and a private
// /tmp; no capabilities; nothing else of the host. Resource limits come from cgroups where the satellite may
// create them, and from rlimits.
//
// The sandbox leads its own session inside the namespaces, so signals to the Process reach bwrap, not the
// server: SIGTERM ends bwrap and the kernel then kills everything in the sandbox. Closing stdin is the
// graceful way to end an MCP server.
type Bwrap struct {
	log       *slog.Logger
	cfg       BwrapConfig
	bwrap     string
	prlimit   string
	cgroups   cgroupParents
	enforced  Enforcement
	etcPasswd string
	etcGroup  string
}

// NewBwrap checks that bwrap can be run and what limits can be enforced, logging a warning for each one that
// cannot. log nil discards.
func NewBwrap(log *slog.Logger, cfg BwrapConfig) (*Bwrap, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.HomeRoot == "" || !filepath.IsAbs(cfg.HomeRoot) {
		return nil, fmt.Errorf("sandbox: bwrap: HomeRoot %q must be an absolute path", cfg.HomeRoot)
	}
	b := &Bwrap{log: log, cfg: cfg, bwrap: cfg.Path}
	b.cfg.Limits = cfg.Limits.WithDefaults()
	if b.cfg.StartCPU == 0 {
		b.cfg.StartCPU = DefaultStartCPU
	}
	if b.bwrap == "" {
		p, err := FindBwrap(context.Background(), log, false)
		if err != nil {
			return nil, err
		}
		b.bwrap = p
	}
	if out, err := exec.Command(b.bwrap, "--version").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("sandbox: %s --version: %w: %s", b.bwrap, err, strings.TrimSpace(string(out)))
	}
	if p, err := exec.LookPath("prlimit"); err == nil {
		b.prlimit = p
		b.enforced.CPUTime, b.enforced.OpenFiles, b.enforced.FileSize = true, true, true
	} else {
		log.Warn("prlimit not found (package util-linux): CPU time, open files and file size are not limited")
	}
	if !cfg.NoCgroups {
		b.cgroups = detectCgroups()
	}
	_, b.enforced.Memory = b.cgroups.dirs["memory"]
	_, b.enforced.Processes = b.cgroups.dirs["pids"]
	_, b.enforced.CPU = b.cgroups.dirs["cpu"]
	if len(b.cgroups.dirs) > 0 {
		b.enforced.Cgroups = "v1"
		if b.cgroups.v2 {
			b.enforced.Cgroups = "v2"
		}
	}
	// Without a pids cgroup, RLIMIT_NPROC is the fallback; the kernel does not apply it to root.
	if !b.enforced.Processes && b.prlimit != "" && os.Geteuid() != 0 {
		b.enforced.Processes = true
	}
	for name, ok := range map[string]bool{"memory": b.enforced.Memory, "process count": b.enforced.Processes, "CPU share": b.enforced.CPU} {
		if !ok {
			log.Warn("sandbox limit not enforced: no writable cgroup for it", slog.String("limit", name))
		}
	}
	if err := b.writeEtc(); err != nil {
		return nil, err
	}
	return b, nil
}

// Enforced reports which limits b enforces.
func (b *Bwrap) Enforced() Enforcement { return b.enforced }

// writeEtc writes the passwd and group files the sandboxes see: the host's would tell them its accounts.
func (b *Bwrap) writeEtc() error {
	dir := filepath.Join(b.cfg.HomeRoot, ".etc")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("sandbox: bwrap: %w", err)
	}
	uid, gid := os.Geteuid(), os.Getegid()
	b.etcPasswd, b.etcGroup = filepath.Join(dir, "passwd"), filepath.Join(dir, "group")
	passwd := fmt.Sprintf("sandbox:x:%d:%d:sandbox:%s:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n", uid, gid, SandboxHome)
	group := fmt.Sprintf("sandbox:x:%d:\nnogroup:x:65534:\n", gid)
	if uid == 0 {
		passwd = "root:x:0:0:sandbox:" + SandboxHome + ":/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
		group = "root:x:0:\nnogroup:x:65534:\n"
	}
	if err := os.WriteFile(b.etcPasswd, []byte(passwd), 0o644); err != nil {
		return fmt.Errorf("sandbox: bwrap: %w", err)
	}
	if err := os.WriteFile(b.etcGroup, []byte(group), 0o644); err != nil {
		return fmt.Errorf("sandbox: bwrap: %w", err)
	}
	return nil
}

// Home returns the host directory a spec's server gets as its home.
func (b *Bwrap) Home(spec Spec) (string, error) {
	if !validName.MatchString(spec.TeamID) {
		return "", fmt.Errorf("sandbox: bwrap: invalid team id %q", spec.TeamID)
	}
	if spec.UserID == "" {
		return filepath.Join(b.cfg.HomeRoot, spec.TeamID, "home"), nil
	}
	if !validName.MatchString(spec.UserID) {
		return "", fmt.Errorf("sandbox: bwrap: invalid user id %q", spec.UserID)
	}
	return filepath.Join(b.cfg.HomeRoot, spec.TeamID, "users", spec.UserID), nil
}

// RemoveUserHome deletes the home a member of a team had for servers with per-user homes.
func (b *Bwrap) RemoveUserHome(teamID, userID string) error {
	home, err := b.Home(Spec{TeamID: teamID, UserID: userID})
	if err != nil {
		return err
	}
	if err := os.RemoveAll(home); err != nil {
		return fmt.Errorf("sandbox: remove home: %w", err)
	}
	return nil
}

// Start starts spec's command in a new sandbox. It refuses a spec whose Env sets a blocked variable
// (ErrBlockedEnv). Spec.Dir is not visible inside: the server starts in its home.
func (b *Bwrap) Start(spec Spec) (*Process, error) {
	// The command is resolved by bwrap inside the sandbox, with the sandbox's PATH: a server runs what it
	// could see, and nothing of the host is looked at on a tenant's behalf. A command the sandbox lacks makes
	// bwrap exit with status 1 and say so on stderr, for a host file outside the sandbox as for a missing one.
	if spec.Command == "" {
		return nil, errors.New("sandbox: no command")
	}
	env, err := b.environ(spec.Env)
	if err != nil {
		return nil, err
	}
	home, err := b.Home(spec)
	if err != nil {
		return nil, err
	}
	// The team directory stays private to the satellite's user; homes are created on first use.
	if err := os.MkdirAll(filepath.Dir(home), 0o700); err != nil {
		return nil, fmt.Errorf("sandbox: home: %w", err)
	}
	if err := os.MkdirAll(home, 0o700); err != nil {
		return nil, fmt.Errorf("sandbox: home: %w", err)
	}
	limits := b.cfg.Limits
	if spec.Limits != nil {
		limits = spec.Limits.Or(limits)
	}

	var cg *cgroup
	if len(b.cgroups.dirs) > 0 {
		name := spec.InstanceID
		if !validName.MatchString(name) {
			name = "server"
		}
		starting := limits
		starting.CPU = max(limits.CPU, b.cfg.StartCPU)
		cg, err = b.cgroups.newCgroup(cgroupPrefix(b.cfg.Owner), name, starting)
		if err != nil {
			b.log.Warn("sandbox: some cgroup limits not applied", slog.String("instance", spec.InstanceID), slog.Any("error", err))
		}
	}

	// sh joins the cgroups and prlimit sets the rlimits, each then exec'ing the next: limits are in place
	// before bwrap runs, and bwrap and everything in the sandbox inherit them. Doing this in the one process
	// that becomes bwrap keeps the Process's pid that of bwrap.
	var argv []string
	if cg != nil {
		files := cg.procsFiles()
		argv = append(argv, "/bin/sh", "-c", joinScript, "sh", strconv.Itoa(len(files)))
		argv = append(argv, files...)
	}
	if b.prlimit != "" {
		cpu := max(int64(limits.CPUTime.Seconds()), 1)
		argv = append(argv, b.prlimit,
			fmt.Sprintf("--cpu=%d:%d", cpu, cpu+1), // SIGXCPU at the soft limit, SIGKILL a second later
			fmt.Sprintf("--nofile=%d", limits.OpenFiles),
			fmt.Sprintf("--fsize=%d", limits.FileSizeBytes))
		if os.Geteuid() != 0 && (cg == nil || cg.dirs["pids"] == "") {
			argv = append(argv, fmt.Sprintf("--nproc=%d", limits.Processes))
		}
		argv = append(argv, "--")
	}
	argv = append(argv, b.bwrap)
	argv = append(argv, b.args(spec, home)...)
	argv = append(argv, "--", spec.Command)
	argv = append(argv, spec.Args...)

	cmd := exec.Command(argv[0], argv[1:]...)
	// bwrap passes its environment on rather than take it as --setenv arguments, which any local user could
	// read in its command line. sh, prlimit and bwrap run outside the sandbox with it, which is one more
	// reason for the blocked variables. The owner mark is for Sweep, outside, and is removed inside.
	cmd.Env = env
	if b.cfg.Owner != "" {
		cmd.Env = append(slices.Clone(env), OwnerEnv+"="+b.cfg.Owner)
	}
	cmd.Dir = "/"
	onExit := func(state *os.ProcessState) string {
		var used usage
		if cg != nil {
			used.oom, used.pidsMaxed = cg.oomKilled(), cg.pidsMaxed()
			used.cpu, used.cpuKnown = cg.cpuUsage()
			cg.remove()
		}
		return exitReason(state, limits, used)
	}
	p, err := launch(cmd, onExit)
	if err != nil {
		if cg != nil {
			cg.remove()
		}
		return nil, err
	}
	// The server runs in a session of its own inside the sandbox, out of the Process's group, so its
	// memory is read from the cgroup that holds the whole sandbox.
	if cg != nil {
		p.memory = cg.memoryUsage
	}
	if cg != nil && b.cfg.StartCPU > limits.CPU {
		p.settle = func() {
			// A server that exited meanwhile has no cgroup left to write to, and needs no limit.
			if err := cg.setCPU(limits.CPU); err != nil && !errors.Is(err, os.ErrNotExist) {
				b.log.Warn("sandbox: cannot lower a started server's CPU share to its limit",
					slog.String("instance", spec.InstanceID), slog.Any("error", err))
			}
		}
	}
	return p, nil
}

// usage is what a sandbox's cgroups counted by the time it ended.
type usage struct {
	oom, pidsMaxed bool
	cpu            time.Duration
	cpuKnown       bool
}

// exitReason says which limit ended a sandbox, from how bwrap ended and what the cgroups counted; empty when
// no limit is to blame. bwrap exits with 128 plus the signal that killed the server.
func exitReason(state *os.ProcessState, l Limits, used usage) string {
	code := -1
	if state != nil {
		code = state.ExitCode()
	}
	switch {
	case used.oom:
		return fmt.Sprintf("killed: out of memory (memory limit %s)", formatBytes(l.MemoryBytes))
	case code == 128+int(syscall.SIGXCPU):
		return fmt.Sprintf("killed: CPU time limit exceeded (%v of CPU time)", l.CPUTime)
	case code == 128+int(syscall.SIGKILL) && used.cpuKnown && l.CPUTime > 0 && used.cpu >= l.CPUTime:
		// The kernel's SIGKILL a second after a SIGXCPU the server ignored. The limit is per process and
		// the count is the whole sandbox's, so this is the likely cause rather than a certain one.
		return fmt.Sprintf("killed: CPU time limit exceeded (%v of CPU time; SIGXCPU ignored)", l.CPUTime)
	case code == 128+int(syscall.SIGXFSZ):
		return fmt.Sprintf("killed: file size limit exceeded (%s per file)", formatBytes(l.FileSizeBytes))
	case used.pidsMaxed:
		// Reaching the limit only makes fork fail; the server may have ended for that or for another reason.
		return fmt.Sprintf("process limit reached (%d processes)", l.Processes)
	}
	return ""
}

// joinScript writes the shell's pid into the cgroup.procs files given as its first arguments, then execs the
// rest. A failure to join aborts the start rather than run the server unbounded.
const joinScript = `n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ >"$1" || exit 125; shift; n=$((n-1)); done; exec "$@"`

// args are bwrap's options for spec.
func (b *Bwrap) args(spec Spec, home string) []string {
	a := []string{
		"--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
		"--hostname", "sandbox",
		"--die-with-parent", "--new-session",
		"--cap-drop", "ALL",
		"--unsetenv", OwnerEnv,
	}
	if !spec.Network {
		a = append(a, "--unshare-net")
	}
	a = append(a, "--ro-bind", "/usr", "/usr")
	// Merged-/usr systems have these as symlinks into /usr; others as directories of their own.
	for _, dir := range []string{"/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"} {
		info, err := os.Lstat(dir)
		switch {
		case err != nil:
		case info.Mode()&os.ModeSymlink != 0:
			if target, err := os.Readlink(dir); err == nil {
				a = append(a, "--symlink", target, dir)
			}
		case info.IsDir():
			a = append(a, "--ro-bind", dir, dir)
		}
	}
	// Name resolution, CA certificates, the dynamic linker's cache, Debian's alternatives (/usr/bin/node may
	// be one) and the time zone; nothing else of /etc.
	for _, f := range []string{
		"/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/host.conf", "/etc/gai.conf",
		"/etc/ssl", "/etc/ca-certificates", "/etc/pki", "/etc/alternatives",
		"/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime", "/etc/mime.types",
	} {
		a = append(a, "--ro-bind-try", f, f)
	}
	a = append(a, "--ro-bind", b.etcPasswd, "/etc/passwd", "--ro-bind", b.etcGroup, "/etc/group")
	for _, p := range b.cfg.ReadOnly {
		a = append(a, "--ro-bind", p, p)
	}
	a = append(a,
		"--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
		"--bind", home, SandboxHome, "--chdir", SandboxHome,
	)
	return a
}

// environ builds a server's environment: the sandbox's PATH, HOME and TMPDIR, the locale passed through,
// and the spec's own variables, none of them blocked.
func (b *Bwrap) environ(own map[string]string) ([]string, error) {
	vars := map[string]string{
		"PATH": sandboxPath, "HOME": SandboxHome, "TMPDIR": "/tmp", "USER": "sandbox", "LOGNAME": "sandbox",
		"SHELL": "/bin/sh",
	}
	for _, name := range BwrapPassEnv {
		if v, ok := os.LookupEnv(name); ok {
			vars[name] = v
		}
	}
	var blocked []string
	for k, v := range own {
		if envBlocked(k) {
			blocked = append(blocked, k)
			continue
		}
		vars[k] = v
	}
	if len(blocked) > 0 {
		slices.Sort(blocked)
		return nil, fmt.Errorf("sandbox: %w: %s", ErrBlockedEnv, strings.Join(blocked, ", "))
	}
	env := make([]string, 0, len(vars))
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	slices.Sort(env)
	return env, nil
}

func envBlocked(name string) bool {
	upper := strings.ToUpper(name)
	if slices.Contains(blockedEnv, upper) || strings.ContainsAny(name, "=\x00") || name == "" {
		return true
	}
	for _, p := range blockedEnvPrefixes {
		if strings.HasPrefix(upper, p) {
			return true
		}
	}
	return false
}

// Sweep kills every sandbox marked with the driver's Owner, and removes the cgroups made for them: what a
// satellite that crashed left behind. Killing bwrap kills its sandbox with it. Call it before starting any
// server; it returns how many processes it killed. Without an Owner it does nothing.
func (b *Bwrap) Sweep() (int, error) {
	if b.cfg.Owner == "" {
		return 0, nil
	}
	killed, err := sweep(OwnerEnv + "=" + b.cfg.Owner)
	b.cgroups.sweep(cgroupPrefix(b.cfg.Owner))
	return killed, err
}

// probeTeam is the team of the sandbox Probe starts; team ids are UUIDs, so no real team has it.
const probeTeam = "sandbox-probe"

// probeTimeout bounds Probe: an empty sandbox starts in milliseconds.
const probeTimeout = 10 * time.Second

// Probe starts an empty sandbox and reports whether it ran: a bwrap that is installed may still fail where
// user namespaces are disabled or a container forbids them, and that is better learned at start than at
// the first server's.
func (b *Bwrap) Probe() error {
	p, err := b.Start(Spec{TeamID: probeTeam, Command: "true"})
	if err != nil {
		return fmt.Errorf("sandbox: bwrap probe: %w", err)
	}
	defer func() { _ = os.RemoveAll(filepath.Join(b.cfg.HomeRoot, probeTeam)) }()
	stderr := make(chan []byte, 1)
	go func() {
		out, _ := io.ReadAll(io.LimitReader(p.Stderr, 4096))
		stderr <- out
	}()
	select {
	case <-p.Done():
	case <-time.After(probeTimeout):
		p.Stop(0)
		return fmt.Errorf("sandbox: bwrap probe: an empty sandbox did not exit within %v", probeTimeout)
	}
	if code := p.ExitCode(); code != 0 {
		return fmt.Errorf("sandbox: bwrap probe: an empty sandbox failed (%s): %s", p.ExitStatus(),
			strings.TrimSpace(string(<-stderr)))
	}
	return nil
}

// newProbedBwrap is NewBwrap followed by Probe.
func newProbedBwrap(log *slog.Logger, cfg SelectConfig) (Driver, error) {
	b, err := NewBwrap(log, BwrapConfig{HomeRoot: cfg.HomeRoot, ReadOnly: cfg.ReadOnly, Owner: cfg.Owner})
	if err != nil {
		return nil, err
	}
	if err := b.Probe(); err != nil {
		return nil, err
	}
	return b, nil
}
