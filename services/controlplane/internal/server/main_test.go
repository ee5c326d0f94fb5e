package server_test

import (
	"net/http"
	"os"
	"testing"

	"github.com/orrery/orrery/services/controlplane/internal/password"
)

// testClient carries the tests' requests, on a transport of its own: every httptest.Server that closes
// closes http.DefaultTransport's idle connections, which breaks a request of a parallel test that has just
// taken one ("CloseIdleConnections called").
var testClient = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}

func TestMain(m *testing.M) {
	password.LowerCostForTests()
	os.Exit(m.Run())
}
