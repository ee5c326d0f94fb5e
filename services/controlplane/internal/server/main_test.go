package server_test

import (
	"os"
	"testing"

	"github.com/orrery/orrery/services/controlplane/internal/password"
)

func TestMain(m *testing.M) {
	password.LowerCostForTests()
	os.Exit(m.Run())
}
