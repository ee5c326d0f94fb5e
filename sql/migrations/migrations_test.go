package migrations

import (
	"testing"

	"github.com/jackc/tern/v2/migrate"
)

// TestMigrationsAreNumberedOnce catches, without a database, two migrations given one number or a number
// left out, as happens when branches that each add a migration meet; tern refuses to migrate then.
func TestMigrationsAreNumberedOnce(t *testing.T) {
	t.Parallel()
	paths, err := migrate.FindMigrations(files)
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatal("no migrations found")
	}
}
