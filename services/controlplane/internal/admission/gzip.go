package admission

import (
	"compress/gzip"
	"fmt"
	"io"

	"connectrpc.com/connect"
)

// gzipName is the name of gzip compression in every protocol the control plane speaks.
const gzipName = "gzip"

// boundedGzip inflates at most max+1 bytes and then fails. Connect reads one byte past a handler's read
// limit to see that a message is too large, then reads on to measure it for its error message: with plain
// gzip that inflates the rest of a bomb, a gigabyte of CPU work, for nothing. It implements
// connect.Decompressor.
type boundedGzip struct {
	zr  gzip.Reader
	max int64
	n   int64
}

func newBoundedGzipFunc(maxBytes int64) func() connect.Decompressor {
	return func() connect.Decompressor { return &boundedGzip{max: maxBytes} }
}

func newGzipCompressor() connect.Compressor { return gzip.NewWriter(io.Discard) }

// Read inflates into p, failing with a resource_exhausted error once more than max+1 bytes came out.
func (d *boundedGzip) Read(p []byte) (int, error) {
	if d.n > d.max {
		return 0, connect.NewError(connect.CodeResourceExhausted,
			fmt.Errorf("the message inflates to more than %d bytes", d.max))
	}
	if room := d.max + 1 - d.n; int64(len(p)) > room {
		p = p[:room]
	}
	n, err := d.zr.Read(p)
	d.n += int64(n)
	return n, err
}

// Reset starts inflating r.
func (d *boundedGzip) Reset(r io.Reader) error {
	d.n = 0
	return d.zr.Reset(r)
}

// Close releases the reader.
func (d *boundedGzip) Close() error { return d.zr.Close() }
