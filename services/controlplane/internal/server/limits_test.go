package server_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/protobuf/proto"

	"github.com/orrery/orrery/services/controlplane/internal/access"
	"github.com/orrery/orrery/services/controlplane/internal/admission"
)

// TestEveryProcedureIsBounded checks that the gate knows every procedure the replica serves, and keeps how
// each is admitted readable as a golden file, so that a change of limit shows in review.
func TestEveryProcedureIsBounded(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	procedures := b.replicas[0].srv.Procedures()
	for procedure := range userAPIMethods() {
		if _, ok := procedures[procedure]; !ok {
			t.Errorf("%s is served but unknown to the gate", procedure)
		}
	}
	var lines []string
	for procedure, p := range procedures {
		who := "anyone"
		if p.Authenticate != nil {
			who = "caller checked before the body"
		}
		if p.MaxBytes <= 0 || p.Authenticate == nil && p.MaxBytes > admission.AnonymousMaxBytes {
			t.Errorf("%s reads %d bytes for %s", procedure, p.MaxBytes, who)
		}
		lines = append(lines, fmt.Sprintf("%-70s %6d KiB  %s", procedure, p.MaxBytes>>10, who))
	}
	rest := b.replicas[0].srv.REST()
	if rest.Authenticate == nil {
		t.Error("REST routes are admitted without checking the caller")
	}
	for procedure, m := range userAPIMethods() {
		if proto.HasExtension(m.Options(), annotations.E_Http) && procedures[procedure].MaxBytes > rest.MaxBytes {
			t.Errorf("%s reads %d bytes; its REST route reads at most %d", procedure, procedures[procedure].MaxBytes, rest.MaxBytes)
		}
	}
	slices.Sort(lines)
	lines = append(lines, fmt.Sprintf("%-70s %6d KiB  %s", "REST routes (/api/...)", rest.MaxBytes>>10, "caller checked before the body"))
	got := strings.Join(lines, "\n") + "\n"
	golden := filepath.Join("testdata", "limits.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("the read limits changed; if that is intended, run go test -run %s -update and review the diff\n%s",
			t.Name(), got)
	}
}

// TestRESTRoutesNeedSignIn checks what the gate assumes of the REST routes, which it admits before knowing
// their procedure: every procedure with an HTTP rule needs a caller. (TestEveryProcedureIsBounded checks
// that the REST limit covers each.)
func TestRESTRoutesNeedSignIn(t *testing.T) {
	t.Parallel()
	for procedure, m := range userAPIMethods() {
		if !proto.HasExtension(m.Options(), annotations.E_Http) {
			continue
		}
		if access.APIPolicy[procedure] == access.Public {
			t.Errorf("%s is served over REST and open to anyone; the gate would refuse it without credentials", procedure)
		}
	}
}
