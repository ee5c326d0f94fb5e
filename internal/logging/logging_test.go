package logging_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/orrery/orrery/internal/logging"
)

func TestNewLogger(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	// A buffer is not a terminal, so auto means JSON for log collectors.
	logger, err := logging.New(&buf, "auto", "warn")
	if err != nil {
		t.Fatal(err)
	}
	logger.Info("hidden")
	logger.Warn("shown", "k", "v")
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("auto off a terminal did not log one JSON line: %q", buf.String())
	}
	if rec["msg"] != "shown" || rec["k"] != "v" {
		t.Errorf("record = %v", rec)
	}

	buf.Reset()
	logger, err = logging.New(&buf, "text", "info")
	if err != nil {
		t.Fatal(err)
	}
	logger.Info("hello", "k", "v")
	if got := buf.String(); !strings.Contains(got, "hello") || !strings.Contains(got, "k=v") || strings.Contains(got, "\x1b[") {
		t.Errorf("text output off a terminal = %q, want plain text without colors", got)
	}

	if _, err := logging.New(&buf, "text", "loud"); err == nil {
		t.Error("an unknown level was accepted")
	}
}
