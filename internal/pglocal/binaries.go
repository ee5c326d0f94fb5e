package pglocal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/orrery/orrery/internal/aptget"
)

// binaries are the PostgreSQL programs pglocal runs. pg_ctl is not among them: its daemonized server would
// outlive the Go process.
type binaries struct {
	initdb, postgres string
}

const (
	notFound = "PostgreSQL server binaries (initdb, postgres) not found in /usr/lib/postgresql/*/bin, " +
		"`pg_config --bindir` or PATH"
	// advice tells a developer the two ways forward.
	advice = "install the postgresql package (e.g. `sudo apt-get install postgresql`) " +
		"or set ORRERY_DATABASE_URL to use an existing PostgreSQL server"
)

// findOrInstall looks for the binaries and, when allowed and root, installs them with apt-get.
func findOrInstall(ctx context.Context, log *slog.Logger, install bool) (binaries, error) {
	if bin, ok := findBinaries(); ok {
		return bin, nil
	}
	if !install {
		return binaries{}, errors.New("pglocal: " + notFound + ": " + advice)
	}
	err := aptget.Install(ctx, log, "postgresql", func() bool { _, ok := findBinaries(); return ok })
	if errors.Is(err, aptget.ErrNotRoot) {
		return binaries{}, errors.New("pglocal: " + notFound + ", and only root may install them: " + advice)
	}
	if err != nil {
		return binaries{}, fmt.Errorf("pglocal: install postgresql: %w", err)
	}
	bin, _ := findBinaries()
	log.InfoContext(ctx, "installed PostgreSQL", slog.String("bin", filepath.Dir(bin.postgres)))
	return bin, nil
}

// findBinaries prefers the Debian layout, newest major version first, because PATH often holds only the
// client programs.
func findBinaries() (binaries, bool) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int {
		return -compareVersions(filepath.Base(filepath.Dir(a)), filepath.Base(filepath.Dir(b)))
	})
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		dirs = append(dirs, strings.TrimSpace(string(out)))
	}
	for _, dir := range dirs {
		bin := binaries{initdb: filepath.Join(dir, "initdb"), postgres: filepath.Join(dir, "postgres")}
		if isExecutable(bin.initdb) && isExecutable(bin.postgres) {
			return bin, true
		}
	}
	initdb, err1 := exec.LookPath("initdb")
	postgres, err2 := exec.LookPath("postgres")
	if err1 != nil || err2 != nil {
		return binaries{}, false
	}
	return binaries{initdb: initdb, postgres: postgres}, true
}

// compareVersions orders "9.6" before "10": PostgreSQL major versions compare by number, not text.
func compareVersions(a, b string) int {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(as) && i < len(bs); i++ {
		x, errX := strconv.Atoi(as[i])
		y, errY := strconv.Atoi(bs[i])
		if errX != nil || errY != nil {
			return strings.Compare(as[i], bs[i])
		}
		if x != y {
			return x - y
		}
	}
	return len(as) - len(bs)
}

func isExecutable(path string) bool {
	info, err := os.Stat(path)
	return err == nil && info.Mode().IsRegular() && info.Mode().Perm()&0o111 != 0
}
