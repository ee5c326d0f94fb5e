package main

import (
	"bytes"
	"debug/buildinfo"
	"debug/elf"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/orrery/orrery/internal/aptget"
)

// repoRoot is the repository the tests build from: the working tree, uncommitted changes included.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "services", "controlplane")); err != nil {
		t.Fatalf("%s is not the repository root: %v", root, err)
	}
	return root
}

// worktreeFiles lists the files git would commit from the working tree: tracked ones and untracked ones
// that .gitignore does not exclude, leaving out any deleted but not yet staged.
func worktreeFiles(t *testing.T, root string) []string {
	t.Helper()
	var files []string
	listing := command(t, "git", "-C", root, "ls-files", "--cached", "--others", "--exclude-standard", "-z")
	for name := range strings.SplitSeq(strings.TrimRight(listing, "\x00"), "\x00") {
		if _, err := os.Lstat(filepath.Join(root, name)); err == nil {
			files = append(files, name)
		}
	}
	return files
}

// need finds a program, installing its Debian package with apt-get when the test runs as root.
func need(t *testing.T, program, pkg string) string {
	t.Helper()
	present := func() bool { _, err := exec.LookPath(program); return err == nil }
	if err := aptget.Install(t.Context(), nil, pkg, present); err != nil {
		if errors.Is(err, aptget.ErrNotRoot) {
			t.Fatalf("%s is missing: install it with `apt-get install %s` (the test does so itself when run as root)", program, pkg)
		}
		t.Fatalf("install %s: %v", pkg, err)
	}
	path, _ := exec.LookPath(program)
	return path
}

func command(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestReleaseVersion(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"v1.2.3":                    "v1.2.3",
		"v1.2.3-rc.1":               "v1.2.3-rc.1",
		"v1.2.3-4-gabcdef0-dirty":   "v1.2.3-4-gabcdef0-dirty",
		"ebf4978":                   "v0.0.0-ebf4978",
		"ebf4978-dirty":             "v0.0.0-ebf4978-dirty",
		"":                          "",
		"1.2.3":                     "",
		"v1.2":                      "",
		"v1.2.3 -ldflags=-X a.b=c":  "",
		"v1.2.3\n":                  "",
		"v1.2.3-$(touch /tmp/oops)": "",
	} {
		got, err := releaseVersion(in)
		if want == "" {
			if err == nil {
				t.Errorf("releaseVersion(%q) = %q, want an error", in, got)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("releaseVersion(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// TestRelease builds the amd64 artifacts (arm64 differs only in GOARCH) and inspects them as an operator's
// tools would: sha256sum, dpkg-deb, systemd-sysusers and systemd-analyze.
func TestRelease(t *testing.T) {
	t.Parallel()
	dpkgDeb := need(t, "dpkg-deb", "dpkg")
	sha256sum := need(t, "sha256sum", "coreutils")
	systemdAnalyze := need(t, "systemd-analyze", "systemd")
	sysusers := need(t, "systemd-sysusers", "systemd")
	out := t.TempDir()
	artifacts, err := run(t.Context(), config{Version: "v1.2.3-rc.1", Out: out, Repo: repoRoot(t), Arches: []string{"amd64"}})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, a := range artifacts {
		names = append(names, filepath.Base(a))
	}
	wantNames := []string{
		"orrery-controlplane_v1.2.3-rc.1_linux_amd64", "orrery-controlplane_1.2.3-rc.1_amd64.deb",
		"orrery-satellite_v1.2.3-rc.1_linux_amd64", "orrery-satellite_1.2.3-rc.1_amd64.deb",
		"SHA256SUMS",
	}
	if !slices.Equal(names, wantNames) {
		t.Fatalf("artifacts %q, want %q", names, wantNames)
	}

	cmd := exec.CommandContext(t.Context(), sha256sum, "--check", "--strict", "SHA256SUMS")
	cmd.Dir = out
	if output, err := cmd.CombinedOutput(); err != nil || strings.Count(string(output), ": OK") != 4 {
		t.Errorf("sha256sum --check: %v\n%s", err, output)
	}

	for _, s := range services {
		t.Run(s.Name, func(t *testing.T) {
			bin := filepath.Join(out, s.Name+"_v1.2.3-rc.1_linux_amd64")
			checkStaticBinary(t, bin, "v1.2.3-rc.1")

			deb := filepath.Join(out, s.Name+"_1.2.3-rc.1_amd64.deb")
			fields := command(t, dpkgDeb, "--field", deb)
			for _, want := range []string{
				"Package: " + s.Name + "\n", "Version: 1.2.3~rc.1\n", "Architecture: amd64\n",
			} {
				if !strings.Contains(fields, want) {
					t.Errorf("control fields lack %q:\n%s", want, fields)
				}
			}
			for _, dep := range s.Depends {
				if !strings.Contains(fields, dep) {
					t.Errorf("control fields do not depend on %s:\n%s", dep, fields)
				}
			}
			contents := command(t, dpkgDeb, "--contents", deb)
			for _, want := range []*regexp.Regexp{
				regexp.MustCompile(`-rwxr-xr-x root/root .* \./usr/bin/` + s.Name + `\n`),
				regexp.MustCompile(`-rw-r--r-- root/root .* \./usr/lib/systemd/system/` + s.Name + `\.service\n`),
				regexp.MustCompile(`-rw-r--r-- root/root .* \./usr/lib/sysusers\.d/` + s.Name + `\.conf\n`),
				// The environment file holds secrets.
				regexp.MustCompile(`-rw------- root/root .* \./etc/orrery/` + s.EnvFile + `\n`),
			} {
				if !want.MatchString(contents) {
					t.Errorf("package contents do not match %s:\n%s", want, contents)
				}
			}

			root := t.TempDir()
			command(t, dpkgDeb, "--extract", deb, root)
			control := t.TempDir()
			command(t, dpkgDeb, "--control", deb, control)
			conffiles, _ := os.ReadFile(filepath.Join(control, "conffiles"))
			if !strings.Contains(string(conffiles), "/etc/orrery/"+s.EnvFile) {
				t.Errorf("conffiles %q do not keep the environment file across upgrades", conffiles)
			}
			if _, err := os.Stat(filepath.Join(control, "postinst")); err != nil {
				t.Errorf("no postinst to create the system user: %v", err)
			}

			// The sysusers.d file creates the unit's user in a throwaway root.
			if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
				t.Fatal(err)
			}
			command(t, sysusers, "--root", root)
			passwd, err := os.ReadFile(filepath.Join(root, "etc", "passwd"))
			if err != nil || !regexp.MustCompile(`(?m)^`+s.Name+`:x:[0-9]+:[0-9]+:`).Match(passwd) {
				t.Errorf("systemd-sysusers made no %s user: %v\n%s", s.Name, err, passwd)
			}

			unit, err := os.ReadFile(filepath.Join(root, "usr", "lib", "systemd", "system", s.Name+".service"))
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{
				"User=" + s.Name + "\n", "ExecStart=/usr/bin/" + s.Name + "\n", "EnvironmentFile=/etc/orrery/" + s.EnvFile + "\n",
			} {
				if !strings.Contains(string(unit), want) {
					t.Errorf("unit lacks %q", want)
				}
			}
			if s.Name == "orrery-satellite" {
				if !strings.Contains(string(unit), "\nDelegate=yes\n") {
					t.Error("the satellite's unit does not delegate its cgroup: the servers' limits would go unenforced")
				}
				// Each of these breaks bubblewrap's namespaces or node's JIT.
				for _, breaks := range []string{"RestrictNamespaces=", "PrivateUsers=", "ProtectKernelTunables=", "ProtectProc=",
					"ProtectControlGroups=", "ProtectHostname=", "MemoryDenyWriteExecute=", "SystemCallFilter=", "PrivateDevices="} {
					if strings.Contains(string(unit), "\n"+breaks) {
						t.Errorf("the satellite's unit sets %s, which breaks the sandbox", breaks)
					}
				}
			}
			verifyUnit(t, systemdAnalyze, root, s.Name+".service")
		})
	}
}

// verifyUnit runs systemd-analyze verify on a unit installed under root. verify looks for ExecStart's
// program on the host, so it gets a copy of the unit pointing at the extracted binary.
func verifyUnit(t *testing.T, systemdAnalyze, root, name string) {
	t.Helper()
	unit, err := os.ReadFile(filepath.Join(root, "usr", "lib", "systemd", "system", name))
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(root, "usr", "bin", strings.TrimSuffix(name, ".service"))
	check := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(check, bytes.ReplaceAll(unit, []byte("ExecStart=/usr/bin/"+strings.TrimSuffix(name, ".service")),
		[]byte("ExecStart="+bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), systemdAnalyze, "verify", "--man=no", check)
	output, err := cmd.CombinedOutput()
	// verify complains about the whole system it runs on (other units, no running manager in a container);
	// only lines about this unit count.
	var problems []string
	for line := range strings.Lines(string(output)) {
		if strings.Contains(line, name) {
			problems = append(problems, strings.TrimSpace(line))
		}
	}
	if len(problems) > 0 || (err != nil && len(output) == 0) {
		t.Errorf("systemd-analyze verify %s: %v\n%s", name, err, strings.Join(problems, "\n"))
	}
}

// checkStaticBinary checks that a binary needs no C library and says which version it is.
func checkStaticBinary(t *testing.T, path, version string) {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 {
		t.Errorf("%s is for %v, want x86-64", path, f.Machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s is dynamically linked (it names an interpreter)", path)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("%s needs shared libraries %q", path, libs)
	}
	info, err := buildinfo.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	if settings["CGO_ENABLED"] != "0" || settings["GOOS"] != "linux" || settings["GOARCH"] != "amd64" || settings["-trimpath"] != "true" {
		t.Errorf("%s built with %v", path, settings)
	}
	// Go records no -ldflags in a -trimpath build, and the binary is stripped: the version string itself is
	// what -X put in. Nothing else in the binary names this version, so a -X of a misspelled variable,
	// which the linker ignores, fails here.
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(raw, []byte(version)) {
		t.Errorf("%s does not carry version %s", path, version)
	}
}
