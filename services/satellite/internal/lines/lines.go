// Package lines reads the output of processes the satellite runs (servers' stderr, build logs) a line at a
// time, with a bound on what one line may take.
package lines

import (
	"bufio"
	"errors"
	"io"
	"os"
	"strings"
)

// Read passes each line of r to line, without its line ending, until r ends or its pipe is closed. It keeps
// at most limit bytes of any one line, so a process cannot make the satellite buffer an endless line.
func Read(r io.Reader, limit int, line func(string)) error {
	br := bufio.NewReaderSize(r, 4096)
	var buf []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if room := limit - len(buf); room > 0 {
			buf = append(buf, chunk[:min(len(chunk), room)]...)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err == nil || len(buf) > 0 {
			line(strings.TrimRight(string(buf), "\r\n"))
			buf = buf[:0]
		}
		switch {
		case err == nil:
		case errors.Is(err, io.EOF), errors.Is(err, os.ErrClosed):
			return nil
		default:
			return err
		}
	}
}
