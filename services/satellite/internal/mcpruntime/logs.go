package mcpruntime

import (
	"fmt"
	"sync"
	"time"
	"unicode/utf8"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
)

// logLimiter passes a server's log lines on at most perSecond lines a second, each cut to maxBytes. Lines
// beyond the rate are counted, and the count is reported as a log line of its own once the second is over,
// so a flood costs a bounded number of events and is never lost silently.
type logLimiter struct {
	perSecond int
	maxBytes  int
	emit      func(level satellitev1.LogLevel, message string)

	mu          sync.Mutex
	windowStart time.Time
	passed      int
	dropped     int    // in the current window, not reported yet
	total       uint64 // dropped since the instance was created
	timer       *time.Timer
}

func newLogLimiter(perSecond, maxBytes int, emit func(satellitev1.LogLevel, string)) *logLimiter {
	return &logLimiter{perSecond: perSecond, maxBytes: maxBytes, emit: emit}
}

// line passes on or counts one line.
func (l *logLimiter) line(level satellitev1.LogLevel, text string) {
	l.mu.Lock()
	now := time.Now()
	if now.Sub(l.windowStart) >= time.Second {
		l.flushLocked()
		l.windowStart, l.passed = now, 0
	}
	if l.passed >= l.perSecond {
		l.dropped++
		l.total++
		if l.timer == nil {
			l.timer = time.AfterFunc(l.windowStart.Add(time.Second).Sub(now), l.flush)
		}
		l.mu.Unlock()
		return
	}
	l.passed++
	l.mu.Unlock()
	l.emit(level, cut(text, l.maxBytes))
}

// flush reports lines dropped in the window that ended.
func (l *logLimiter) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.flushLocked()
}

func (l *logLimiter) flushLocked() {
	if l.timer != nil {
		l.timer.Stop()
		l.timer = nil
	}
	if l.dropped == 0 {
		return
	}
	n := l.dropped
	l.dropped = 0
	// Emitting under the lock keeps the report after the lines it follows.
	l.emit(satellitev1.LogLevel_LOG_LEVEL_WARN,
		fmt.Sprintf("%d log lines dropped: the server wrote more than %d lines in one second", n, l.perSecond))
}

// droppedTotal returns how many lines were dropped so far.
func (l *logLimiter) droppedTotal() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// cut shortens s to at most n bytes without splitting a UTF-8 sequence, saying that it did.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = " …[cut]"
	end := max(n-len(mark), 0)
	for end > 0 && !utf8.RuneStart(s[end]) {
		end--
	}
	return s[:end] + mark
}
