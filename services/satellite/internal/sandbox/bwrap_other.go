//go:build !linux

package sandbox

import (
	"errors"
	"log/slog"
)

// newProbedBwrap fails: bubblewrap needs Linux namespaces.
func newProbedBwrap(*slog.Logger, SelectConfig) (Driver, error) {
	return nil, errors.New("sandbox: bwrap needs Linux")
}
