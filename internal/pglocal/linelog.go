package pglocal

import (
	"bytes"
	"log/slog"
	"slices"
	"strings"
	"sync"
)

// tailLines is how much recent output errors quote.
const tailLines = 30

// lineLogger is an io.Writer that logs each line of a child's output at debug level and keeps the last lines,
// which explain a failure better than an exit status.
type lineLogger struct {
	log    *slog.Logger
	source string

	mu      sync.Mutex
	partial []byte
	last    []string
}

func newLineLogger(log *slog.Logger, source string) *lineLogger {
	return &lineLogger{log: log, source: source}
}

func (w *lineLogger) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		w.add(string(w.partial[:i]))
		w.partial = w.partial[i+1:]
	}
	return len(p), nil
}

func (w *lineLogger) add(line string) {
	line = strings.TrimRight(line, "\r")
	w.log.Debug(line, slog.String("source", w.source))
	if len(w.last) == tailLines {
		w.last = append(w.last[:0], w.last[1:]...)
	}
	w.last = append(w.last, line)
}

// tail returns the last lines written, including an unterminated one.
func (w *lineLogger) tail() string {
	if w == nil {
		return ""
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	lines := w.last
	if len(w.partial) > 0 {
		lines = append(slices.Clone(lines), string(w.partial))
	}
	return strings.Join(lines, "\n")
}
