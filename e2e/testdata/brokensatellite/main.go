// Command brokensatellite stands in for a satellite release that crashes on start, for the self-update
// rollback test.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "brokensatellite: failing on start, as a broken release would")
	os.Exit(3)
}
