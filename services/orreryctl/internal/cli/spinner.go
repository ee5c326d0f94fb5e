package cli

import (
	"fmt"
	"sync"
	"time"
)

// spinner shows what a wait is waiting for on the terminal; off a terminal it prints each new state once,
// so logs of scripted runs stay readable.
type spinner struct {
	app  *App
	mu   sync.Mutex
	msg  string
	done chan struct{}
	once sync.Once
}

var spinnerFrames = []rune("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏")

func (a *App) newSpinner(msg string) *spinner {
	s := &spinner{app: a, msg: msg, done: make(chan struct{})}
	if !a.Interactive {
		fmt.Fprintln(a.Err, msg)
		return s
	}
	go func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for i := 0; ; i++ {
			select {
			case <-s.done:
				fmt.Fprint(a.Err, "\r\033[K")
				return
			case <-t.C:
				s.mu.Lock()
				fmt.Fprintf(a.Err, "\r\033[K%c %s", spinnerFrames[i%len(spinnerFrames)], s.msg)
				s.mu.Unlock()
			}
		}
	}()
	return s
}

func (s *spinner) set(msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if msg == s.msg {
		return
	}
	s.msg = msg
	if !s.app.Interactive {
		fmt.Fprintln(s.app.Err, msg)
	}
}

func (s *spinner) stop() {
	s.once.Do(func() {
		close(s.done)
		if s.app.Interactive {
			time.Sleep(10 * time.Millisecond) // let the line clear before the next output
		}
	})
}
