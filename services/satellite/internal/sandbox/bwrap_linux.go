package sandbox

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/orrery/orrery/internal/egress"
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
	// Ceilings cap every limit, a spec's and Limits alike: a server asking for more gets the ceiling, and
	// its Process's Notes say so. Zero fields take DefaultCeilings.
	Ceilings Limits
	// RequireLimits refuses to start a server whose memory, process count and CPU share cannot all be
	// enforced through cgroups, rather than run it unlimited. See also Bwrap.RequireLimits.
	RequireLimits bool
	// HomeQuota, when positive, bounds each home's size: every home becomes a file system of its own of that
	// size (see quota_linux.go). It needs a satellite running as root. Zero: homes are unbounded.
	HomeQuota int64
	// Egress is the policy of servers whose spec lets them reach the network. The zero Policy allows the
	// public internet only; see egress.Denied.
	Egress egress.Policy
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

// Bwrap runs every server in a bubblewrap sandbox: new user, PID, IPC, UTS, mount and network namespaces; the
// system read-only; a writable home of the team's (or the user's) own and a private /tmp; no capabilities;
// a seccomp filter; nothing else of the host. The network namespace holds only a loopback of its own, or,
// when the spec lets the server reach the network, a user-mode link to the public internet under the egress
// policy (see netns_linux.go). A satellite running as root runs each team's servers as an unprivileged
// uid of the team's own (TeamUID). Resource limits come from cgroups where
// the satellite may create them, and from rlimits, each capped by the ceilings.
//
// The sandbox leads its own session inside the namespaces, so signals to the Process reach bwrap, not the
// server: SIGTERM ends bwrap and the kernel then kills everything in the sandbox. Closing stdin is the
// graceful way to end an MCP server.
type Bwrap struct {
	log        *slog.Logger
	cfg        BwrapConfig
	bwrap      string
	prlimit    string
	setpriv    string   // when the satellite runs as root, to become the team's uid inside the sandbox
	env        string   // with setpriv, to enter the home as that uid
	ownNetns   *os.File // when root: the satellite's network namespace, to return to after making a sandbox's
	mkfs       string   // with a home quota, to make a home's file system
	mount      string   // with a home quota, to mount it
	quotas     quotaLocks
	net        netTools
	seccomp    []byte
	cgroups    cgroupParents
	enforced   Enforcement
	resolvConf string
	strict     atomic.Bool // RequireLimits
}

// Sandbox uids: a satellite running as root runs team T's servers as TeamUID(T), from a range that
// systemd's conventions leave unused (above the container ranges, below 2^31), so that no account of the
// host owns what a server might reach through a hole in the sandbox.
const (
	firstTeamUID = 0x70000000
	teamUIDs     = 1 << 27
)

// TeamUID returns the host uid (and gid) of team's sandboxes when the satellite runs as root: a hash of
// the team id into a range of 2^27, so that teams' files and processes belong to different users.
func TeamUID(team string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(team))
	return firstTeamUID + int(h.Sum32()%teamUIDs)
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
	b.cfg.Ceilings = cfg.Ceilings.Or(DefaultCeilings)
	b.cfg.Limits, _ = cfg.Limits.WithDefaults().Clamp(b.cfg.Ceilings)
	b.strict.Store(cfg.RequireLimits)
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
	tools, err := findNetTools()
	if err != nil {
		return nil, err
	}
	b.net = tools
	if os.Geteuid() == 0 {
		p, err := exec.LookPath("setpriv")
		if err != nil {
			return nil, errors.New("sandbox: setpriv not found (package util-linux): servers would run as root")
		}
		b.setpriv = p
		if b.env, err = exec.LookPath("env"); err != nil {
			return nil, errors.New("sandbox: env not found (package coreutils)")
		}
		if b.ownNetns, err = ownNetns(); err != nil {
			return nil, fmt.Errorf("sandbox: %w", err)
		}
	}
	if cfg.HomeQuota > 0 {
		if os.Geteuid() != 0 {
			return nil, errors.New("sandbox: a home quota needs a satellite running as root, to mount the homes' file systems")
		}
		if b.mkfs, err = lookSbin("mkfs.ext4"); err != nil {
			return nil, errors.New("sandbox: a home quota needs mkfs.ext4 (package e2fsprogs)")
		}
		if b.mount, err = lookSbin("mount"); err != nil {
			return nil, errors.New("sandbox: a home quota needs mount (package mount)")
		}
	}
	if b.seccomp, err = seccompProgram(); err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
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

// RequireLimits sets whether a server whose cgroup limits cannot all be set up is refused (see
// BwrapConfig.RequireLimits); a satellite learns only after registering whether it serves many teams.
func (b *Bwrap) RequireLimits(require bool) { b.strict.Store(require) }

// writeEtc writes the resolv.conf the sandboxes see: the host's may name a resolver that the egress
// policy forbids, such as one on its loopback or its private network.
func (b *Bwrap) writeEtc() error {
	dir := filepath.Join(b.cfg.HomeRoot, ".etc")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("sandbox: bwrap: %w", err)
	}
	b.resolvConf = filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(b.resolvConf, []byte(resolvEtc), 0o644); err != nil {
		return fmt.Errorf("sandbox: bwrap: %w", err)
	}
	return nil
}

// ownHome gives home to uid when it belongs to someone else, everything in it included: homes written
// before sandboxes ran unprivileged belong to root. Symbolic links are changed, never followed.
func ownHome(home string, uid int) error {
	info, err := os.Lstat(home)
	if err != nil {
		return err
	}
	if st, ok := info.Sys().(*syscall.Stat_t); ok && int(st.Uid) == uid && int(st.Gid) == uid {
		return nil
	}
	return filepath.WalkDir(home, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, uid, uid)
	})
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
	if b.cfg.HomeQuota > 0 {
		if err := b.unmountHome(home); err != nil {
			return fmt.Errorf("sandbox: remove home: %w", err)
		}
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
	// The team directory stays private to the satellite's user; homes are created on first use, and belong
	// to the uid the team's sandboxes run as.
	if err := os.MkdirAll(filepath.Dir(home), 0o700); err != nil {
		return nil, fmt.Errorf("sandbox: home: %w", err)
	}
	if err := os.MkdirAll(home, 0o700); err != nil {
		return nil, fmt.Errorf("sandbox: home: %w", err)
	}
	if b.cfg.HomeQuota > 0 {
		if err := b.quotaHome(home, b.cfg.HomeQuota, TeamUID(spec.TeamID)); err != nil {
			return nil, fmt.Errorf("sandbox: home: %w", err)
		}
	}
	if b.setpriv != "" {
		if err := ownHome(home, TeamUID(spec.TeamID)); err != nil {
			return nil, fmt.Errorf("sandbox: home: %w", err)
		}
		if spec.App != "" && spec.AppWritable {
			// A build runs as the team's uid and writes its tree.
			if err := ownHome(spec.App, TeamUID(spec.TeamID)); err != nil {
				return nil, fmt.Errorf("sandbox: app: %w", err)
			}
		}
	}
	limits := b.cfg.Limits
	if spec.Limits != nil {
		limits = spec.Limits.Or(limits)
	}
	limits, notes := limits.Clamp(b.cfg.Ceilings)
	var dests []netip.AddrPort
	if spec.Network && len(spec.EgressAllow) > 0 {
		var dropped []string
		if dests, dropped, err = resolveAllowList(spec.EgressAllow, b.cfg.Egress); err != nil {
			return nil, fmt.Errorf("sandbox: egress allow-list: %w", err)
		}
		for _, d := range dropped {
			notes = append(notes, "egress allow-list: "+d+" is forbidden by the satellite's egress policy")
		}
	}
	for _, n := range notes {
		b.log.Warn("sandbox: "+n, slog.String("instance", spec.InstanceID))
	}

	strict := b.strict.Load()
	if strict && !(b.enforced.Memory && b.enforced.Processes && b.enforced.CPU && len(b.cgroups.dirs) > 0) {
		return nil, fmt.Errorf("sandbox: %w: no writable cgroup for %s", ErrLimitsUnenforced, b.missingLimits())
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
		if err != nil && strict {
			cg.remove()
			return nil, fmt.Errorf("sandbox: %w: %v", ErrLimitsUnenforced, err)
		}
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
		if cg == nil || cg.dirs["pids"] == "" { // the sandbox never runs as root, so the kernel applies it
			argv = append(argv, fmt.Sprintf("--nproc=%d", limits.Processes))
		}
		argv = append(argv, "--")
	}
	// Descriptors bwrap inherits: the seccomp filter, the passwd and group files, and with a network the
	// pipes of the hand-over described below.
	var files []*os.File
	closeFiles := func() {
		for _, f := range files {
			_ = f.Close()
		}
	}
	// abandon undoes what was prepared for a start that fails before bwrap runs.
	abandon := func(err error) (*Process, error) {
		closeFiles()
		if cg != nil {
			cg.remove()
		}
		return nil, err
	}
	fd := func(f *os.File) string {
		files = append(files, f)
		return strconv.Itoa(2 + len(files))
	}
	data := func(content []byte) (string, error) {
		f, err := dataFile(content)
		if err != nil {
			return "", fmt.Errorf("sandbox: %w", err)
		}
		return fd(f), nil
	}
	// The network namespace is made before bwrap runs rather than by bwrap, which would still be
	// configuring its loopback over netlink while the namespace's rules and link go in. A satellite that
	// is root makes it itself and starts the sandbox in it, so that its rules and link are set up while the
	// sandbox starts; one that is not needs a user namespace with it, which only a new process can make.
	var ns *os.File
	if spec.Network && b.ownNetns != nil {
		if ns, err = newNetns(b.ownNetns); err != nil {
			return abandon(fmt.Errorf("sandbox: network namespace: %w", err))
		}
		defer ns.Close()
	} else if spec.Network {
		// Root in the new user namespace, to set the network namespace up from outside the sandbox.
		argv = append(argv, b.net.unshare, "--net", "--user", "--map-root-user", "--")
	}
	argv = append(argv, b.bwrap)
	args, err := b.args(spec, home, limits.MemoryBytes, data)
	if err != nil {
		return abandon(err)
	}
	argv = append(argv, args...)
	filter, err := dataFile(b.seccomp)
	if err != nil {
		return abandon(fmt.Errorf("sandbox: seccomp: %w", err))
	}
	argv = append(argv, "--seccomp", fd(filter))
	// With a network, bwrap waits for the namespace's rules and link before it goes on to run the server;
	// where the satellite did not make the namespace, bwrap tells which process holds it.
	var infoR, blockW *os.File
	if spec.Network {
		var infoW, blockR *os.File
		if blockR, blockW, err = os.Pipe(); err == nil && ns == nil {
			if infoR, infoW, err = os.Pipe(); err != nil {
				_ = blockR.Close()
				_ = blockW.Close()
			}
		}
		if err != nil {
			return abandon(fmt.Errorf("sandbox: %w", err))
		}
		argv = append(argv, "--block-fd", fd(blockR))
		if infoW != nil {
			argv = append(argv, "--info-fd", fd(infoW))
		}
	}
	argv = append(argv, "--")
	if b.setpriv != "" {
		// bwrap runs as root, which lets it mount what lies below the satellite's private directories; the
		// server runs as the team's uid, without capabilities, bounding set or a way to regain them.
		uid := strconv.Itoa(TeamUID(spec.TeamID))
		// Root without capabilities may not enter the home, so the server's uid moves into it.
		argv = append(argv, b.setpriv, "--reuid="+uid, "--regid="+uid, "--clear-groups",
			"--bounding-set=-all", "--inh-caps=-all", "--", b.env, "--chdir="+workDir(spec), "--")
	}
	argv = append(argv, spec.Command)
	argv = append(argv, spec.Args...)

	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.ExtraFiles = files
	// bwrap passes its environment on rather than take it as --setenv arguments, which any local user could
	// read in its command line. sh, prlimit and bwrap run outside the sandbox with it, which is one more
	// reason for the blocked variables. The owner mark is for Sweep, outside, and is removed inside.
	cmd.Env = env
	if b.cfg.Owner != "" {
		cmd.Env = append(slices.Clone(env), OwnerEnv+"="+b.cfg.Owner)
	}
	cmd.Dir = "/"
	l := &link{}
	onExit := func(state *os.ProcessState) exitCause {
		l.close()
		var used usage
		if cg != nil {
			used.oom, used.pidsMaxed = cg.oomKilled(), cg.pidsMaxed()
			used.cpu, used.cpuKnown = cg.cpuUsage()
			cg.remove()
		}
		return exitReason(state, limits, used)
	}
	var into *netnsSwitch
	if ns != nil {
		into = &netnsSwitch{target: ns, home: b.ownNetns}
	}
	p, err := launch(cmd, onExit, into)
	closeFiles() // bwrap has its copies
	if err != nil {
		if infoR != nil {
			_ = infoR.Close()
		}
		if blockW != nil {
			_ = blockW.Close()
		}
		if cg != nil {
			cg.remove()
		}
		return nil, err
	}
	p.notes = notes
	if spec.Network {
		err := b.connect(ns, p.Pid(), infoR, blockW, nftRules(b.cfg.Egress, len(spec.EgressAllow) > 0, dests), cmd.Env, l)
		if infoR != nil {
			_ = infoR.Close()
		}
		_ = blockW.Close()
		if err != nil {
			p.Stop(0)
			// bwrap's own complaint, when it is the one that failed, says more than a missing namespace.
			if out, _ := io.ReadAll(io.LimitReader(p.Stderr, 4096)); len(out) > 0 {
				err = fmt.Errorf("%w (%s)", err, strings.TrimSpace(string(out)))
			}
			return nil, fmt.Errorf("sandbox: network: %w", err)
		}
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
func exitReason(state *os.ProcessState, l Limits, used usage) exitCause {
	code := -1
	if state != nil {
		code = state.ExitCode()
	}
	switch {
	case used.oom:
		return exitCause{fmt.Sprintf("killed: out of memory (memory limit %s)", formatBytes(l.MemoryBytes)), KillMemory}
	case code == 128+int(syscall.SIGXCPU):
		return exitCause{fmt.Sprintf("killed: CPU time limit exceeded (%v of CPU time)", l.CPUTime), KillCPUTime}
	case code == 128+int(syscall.SIGKILL) && used.cpuKnown && l.CPUTime > 0 && used.cpu >= l.CPUTime:
		// The kernel's SIGKILL a second after a SIGXCPU the server ignored. The limit is per process and
		// the count is the whole sandbox's, so this is the likely cause rather than a certain one.
		return exitCause{fmt.Sprintf("killed: CPU time limit exceeded (%v of CPU time; SIGXCPU ignored)", l.CPUTime), KillCPUTime}
	case code == 128+int(syscall.SIGXFSZ):
		return exitCause{fmt.Sprintf("killed: file size limit exceeded (%s per file)", formatBytes(l.FileSizeBytes)), KillFileSize}
	case used.pidsMaxed:
		// Reaching the limit only makes fork fail; the server may have ended for that or for another reason.
		return exitCause{text: fmt.Sprintf("process limit reached (%d processes)", l.Processes)}
	}
	return exitCause{}
}

// joinScript writes the shell's pid into the cgroup.procs files given as its first arguments, then execs the
// rest. A failure to join aborts the start rather than run the server unbounded.
const joinScript = `n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ >"$1" || exit 125; shift; n=$((n-1)); done; exec "$@"`

// systemTops are the top-level directories a sandbox gets from the system, whose parents need no making.
var systemTops = []string{"usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc", "proc", "dev", "tmp"}

// connect gives the sandbox's network namespace, ns or else the one bwrap, process pid, runs in, its rules
// and link, and lets the sandbox go on.
func (b *Bwrap) connect(ns *os.File, pid int, infoR, blockW *os.File, rules string, env []string, l *link) error {
	deadline := time.Now().Add(netSetup)
	target := netnsRef{file: ns}
	if ns == nil {
		// Once bwrap reports its child, pid, which unshare became, is bwrap, in the network namespace and
		// the user namespace that owns it (its child is in a user namespace of bwrap's below that one).
		if _, err := readInfo(infoR, deadline); err != nil {
			return err
		}
		target.pid = pid
	}
	if err := b.net.connect(target, rules, env, l, deadline); err != nil {
		return err
	}
	if _, err := blockW.Write([]byte{1}); err != nil {
		return fmt.Errorf("release the sandbox: %w", err)
	}
	return nil
}

// ErrLimitsUnenforced is returned by Bwrap.Start when RequireLimits is set and the server's limits cannot
// all be enforced.
var ErrLimitsUnenforced = errors.New("resource limits cannot be enforced on this satellite, so the server is not started")

// missingLimits names the cgroup limits b cannot enforce.
func (b *Bwrap) missingLimits() string {
	var missing []string
	for _, c := range []struct {
		name string
		ok   bool
	}{{"memory", b.enforced.Memory}, {"process count", b.enforced.Processes}, {"CPU share", b.enforced.CPU}} {
		if !c.ok || len(b.cgroups.dirs) == 0 {
			missing = append(missing, c.name)
		}
	}
	return strings.Join(missing, ", ")
}

// args are bwrap's options for spec. data returns the descriptor bwrap reads content from. /tmp holds at
// most tmpSize bytes.
func (b *Bwrap) args(spec Spec, home string, tmpSize int64, data func([]byte) (string, error)) ([]string, error) {
	a := []string{
		"--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
		"--hostname", "sandbox",
		"--die-with-parent", "--new-session",
		"--cap-drop", "ALL",
		"--unsetenv", OwnerEnv,
	}
	if !spec.Network {
		a = append(a, "--unshare-net") // a loopback of its own and nothing else
	}
	uid := os.Geteuid()
	if b.setpriv != "" {
		// Only for setpriv, which drops them with root's uid before the server runs.
		a = append(a, "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_SETPCAP")
		uid = TeamUID(spec.TeamID)
	} else {
		// bwrap runs unprivileged in a user namespace of its own, where the server may make no other and
		// keeps the satellite's uid, whatever the namespace around bwrap maps it to.
		a = append(a, "--unshare-user", "--disable-userns", "--uid", strconv.Itoa(uid), "--gid", strconv.Itoa(os.Getegid()))
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
	// be one) and the time zone; nothing else of /etc. Directories bwrap makes are private to root unless
	// told otherwise, and the server is not root.
	a = append(a, "--perms", "0755", "--dir", "/etc")
	for _, f := range []string{
		"/etc/hosts", "/etc/nsswitch.conf", "/etc/host.conf", "/etc/gai.conf",
		"/etc/ssl", "/etc/ca-certificates", "/etc/pki", "/etc/alternatives",
		"/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime", "/etc/mime.types",
	} {
		a = append(a, "--ro-bind-try", f, f)
	}
	// The host's passwd and group would tell the sandbox the host's accounts.
	passwd := fmt.Sprintf("sandbox:x:%d:%d:sandbox:%s:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n", uid, uid, SandboxHome)
	group := fmt.Sprintf("sandbox:x:%d:\nnogroup:x:65534:\n", uid)
	for _, f := range []struct{ content, dest string }{{passwd, "/etc/passwd"}, {group, "/etc/group"}} {
		fd, err := data([]byte(f.content))
		if err != nil {
			return nil, err
		}
		a = append(a, "--ro-bind-data", fd, f.dest)
	}
	a = append(a, "--ro-bind", b.resolvConf, "/etc/resolv.conf")
	// Before the read-only paths, which may lie below /tmp. Its pages count against the memory cgroup;
	// the size bounds it where there is none.
	a = append(a, "--proc", "/proc", "--dev", "/dev", "--perms", "01777", "--size", strconv.FormatInt(tmpSize, 10), "--tmpfs", "/tmp")
	// bwrap makes the missing parents of a mount point private to root, which a server that is not root
	// could not pass through.
	made := map[string]bool{}
	parents := func(dest string) {
		var dirs []string
		for d := filepath.Dir(dest); d != "/" && !made[d]; d = filepath.Dir(d) {
			dirs = append(dirs, d)
		}
		for _, d := range slices.Backward(dirs) {
			made[d] = true
			if top := strings.Split(d, "/")[1]; !slices.Contains(systemTops, top) {
				a = append(a, "--perms", "0755", "--dir", d)
			}
		}
	}
	for _, p := range b.cfg.ReadOnly {
		parents(p)
		a = append(a, "--ro-bind", p, p)
	}
	parents(SandboxHome)
	a = append(a, "--bind", home, SandboxHome)
	if spec.App != "" {
		bind := "--ro-bind"
		if spec.AppWritable {
			bind = "--bind"
		}
		a = append(a, bind, spec.App, AppDir)
	}
	if b.setpriv == "" {
		a = append(a, "--chdir", workDir(spec))
	}
	return a, nil
}

// workDir is where a spec's server starts inside the sandbox: its program's tree when it has one, else
// its home.
func workDir(spec Spec) string {
	if spec.App != "" {
		return AppDir
	}
	return SandboxHome
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

// Probe starts an empty sandbox with a network and reports whether it ran: a bwrap that is installed may
// still fail where user namespaces are disabled or a container forbids them, and so may the sandbox's
// network, and that is better learned at start than at the first server's.
func (b *Bwrap) Probe() error {
	p, err := b.Start(Spec{TeamID: probeTeam, Command: "true", Network: true})
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
	b, err := NewBwrap(log, BwrapConfig{
		HomeRoot: cfg.HomeRoot, ReadOnly: cfg.ReadOnly, Owner: cfg.Owner,
		Egress: cfg.Egress, Ceilings: cfg.Ceilings, RequireLimits: cfg.RequireLimits, HomeQuota: cfg.HomeQuota,
	})
	if err != nil {
		return nil, err
	}
	if err := b.Probe(); err != nil {
		return nil, err
	}
	return b, nil
}
