package lines_test

import (
	"strings"
	"testing"

	"github.com/orrery/orrery/services/satellite/internal/lines"
)

func TestReadBoundsEachLine(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 10000)
	var got []string
	if err := lines.Read(strings.NewReader("one\r\n"+long+"\nthree"), 100, func(s string) { got = append(got, s) }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0] != "one" || len(got[1]) != 100 || got[2] != "three" {
		t.Errorf("lines %q", got)
	}
}
