// Package logging builds the services' slog loggers: colored text through tint on a terminal, JSON
// otherwise, so people read logs easily and machines parse them reliably.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/lmittmann/tint"
	"golang.org/x/term"
)

// Formats accepted by New.
const (
	FormatAuto = "auto"
	FormatText = "text"
	FormatJSON = "json"
)

// New returns a logger writing to w in format ("auto", "text" or "json"; empty means auto) at level.
// Auto picks text when w is a terminal.
func New(w io.Writer, format string, level slog.Level) (*slog.Logger, error) {
	switch format {
	case "", FormatAuto:
		format = FormatJSON
		if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			format = FormatText
		}
	case FormatText, FormatJSON:
	default:
		return nil, fmt.Errorf("log format %q: want auto, text or json", format)
	}
	if format == FormatText {
		return slog.New(tint.NewHandler(w, &tint.Options{Level: level, TimeFormat: time.TimeOnly})), nil
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})), nil
}

// ParseLevel reads a level name (debug, info, warn, error); empty means info.
func ParseLevel(name string) (slog.Level, error) {
	var l slog.Level
	if name == "" {
		return slog.LevelInfo, nil
	}
	if err := l.UnmarshalText([]byte(name)); err != nil {
		return 0, fmt.Errorf("log level %q: want debug, info, warn or error", name)
	}
	return l, nil
}
