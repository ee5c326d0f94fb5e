package sandbox

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// OwnerEnv is the environment variable that marks the processes a Direct driver with an Owner starts.
const OwnerEnv = "ORRERY_SANDBOX_OWNER"

// DefaultPassEnv are the satellite's environment variables a server inherits when Direct.PassEnv is nil:
// what programs need to find executables, their home and temporary directories, the locale, CA certificates
// and proxies. Anything else, the satellite's own secrets in particular, stays out.
var DefaultPassEnv = []string{
	"PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR",
	"SSL_CERT_FILE", "SSL_CERT_DIR", "NODE_EXTRA_CA_CERTS",
	"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
}

// Direct runs servers as plain subprocesses of the satellite, without isolation: for development and for
// satellites whose servers are all trusted. It is the driver of last resort, not a security boundary.
type Direct struct {
	// PassEnv names the satellite's environment variables that servers inherit; a server's own Env
	// overrides them. Nil means DefaultPassEnv.
	PassEnv []string
	// Owner marks every process started, through the OwnerEnv variable, so that Sweep can find processes a
	// crashed satellite left behind. Use a value unique to the satellite, such as its state directory.
	// Empty: processes are not marked and Sweep finds nothing.
	Owner string
}

// Start starts spec's command with the environment described on Direct. A command that cannot be run
// fails with ErrCommandUnavailable, whatever the reason.
func (d Direct) Start(spec Spec) (*Process, error) {
	env := d.environ(spec.Env)
	command := spec.Command
	if spec.App != "" {
		spec.Dir = spec.App
		if strings.Contains(command, "/") && !filepath.IsAbs(command) {
			// The program lies in its tree, wherever the satellite runs from.
			command = filepath.Join(spec.App, command)
		}
	}
	path, err := lookPath(command, envValue(env, "PATH"))
	if err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	cmd := exec.Command(path, spec.Args...)
	cmd.Args[0] = spec.Command
	cmd.Env = env
	cmd.Dir = spec.Dir
	if cmd.Dir == "" {
		cmd.Dir = "/"
	}
	p, err := Launch(cmd)
	var pathErr *fs.PathError
	if errors.As(err, &pathErr) && pathErr.Op == "fork/exec" {
		// execve's own errno (ENOENT, EACCES, ENOEXEC ...) would say as much as a stat.
		return nil, fmt.Errorf("sandbox: %w", unavailable(spec.Command))
	}
	return p, err
}

// environ merges the passed-through variables, the server's own and the owner mark, sorted by name.
func (d Direct) environ(own map[string]string) []string {
	pass := d.PassEnv
	if pass == nil {
		pass = DefaultPassEnv
	}
	vars := make(map[string]string, len(pass)+len(own)+1)
	for _, name := range pass {
		if v, ok := os.LookupEnv(name); ok {
			vars[name] = v
		}
	}
	for k, v := range own {
		vars[k] = v
	}
	if d.Owner != "" {
		vars[OwnerEnv] = d.Owner
	} else {
		delete(vars, OwnerEnv)
	}
	env := make([]string, 0, len(vars))
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	slices.Sort(env)
	return env
}

// Sweep kills every process marked with d's Owner other than the calling process: what a satellite that
// crashed left behind (the parent-death signal reaches only a server itself, not the helpers it started). Call
// it before starting any server. It returns how many processes it killed.
func (d Direct) Sweep() (int, error) {
	if d.Owner == "" {
		return 0, nil
	}
	return sweep(OwnerEnv + "=" + d.Owner)
}

func envValue(env []string, name string) string {
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, name+"="); ok {
			return v
		}
	}
	return ""
}

// ErrCommandUnavailable is the one answer to a command that cannot be started: it does not exist, is a
// directory, is not executable, or may not be read. One answer for all, because the configuration that
// names the command comes from a tenant, and telling these apart would tell the tenant which files exist
// on the host.
var ErrCommandUnavailable = errors.New("not found or not executable")

func unavailable(name string) error {
	return fmt.Errorf("command %q: %w", name, ErrCommandUnavailable)
}

// lookPath finds name in path, the server's PATH rather than the satellite's, the way a shell would.
// Direct runs servers on the host, so this looks at host files; every failure is ErrCommandUnavailable.
func lookPath(name, path string) (string, error) {
	if name == "" {
		return "", errors.New("no command")
	}
	if strings.Contains(name, "/") {
		if !executable(name) {
			return "", unavailable(name)
		}
		return name, nil
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" || !filepath.IsAbs(dir) {
			continue // relative PATH entries would resolve against the satellite's working directory
		}
		p := filepath.Join(dir, name)
		if executable(p) {
			return p, nil
		}
	}
	return "", unavailable(name)
}

func executable(path string) bool {
	info, err := os.Stat(path)
	return err == nil && !info.IsDir() && info.Mode().Perm()&0o111 != 0
}
