package admission

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"testing"

	"connectrpc.com/connect"
)

func gzipped(t *testing.T, n int) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(make([]byte, n)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestBoundedGzipStopsJustPastTheLimit(t *testing.T) {
	t.Parallel()
	const limit = 64 << 10
	d := newBoundedGzipFunc(limit)()
	bomb := gzipped(t, 4<<20)
	for range 2 { // a pooled decompressor is reset and used again
		if err := d.Reset(bytes.NewReader(bomb)); err != nil {
			t.Fatal(err)
		}
		n, err := io.Copy(io.Discard, d)
		if n != limit+1 || connect.CodeOf(err) != connect.CodeResourceExhausted {
			t.Fatalf("inflated %d bytes, then %v; want %d bytes, then resource_exhausted", n, err, limit+1)
		}
	}
	if err := d.Reset(bytes.NewReader(gzipped(t, limit))); err != nil {
		t.Fatal(err)
	}
	if n, err := io.Copy(io.Discard, d); n != limit || err != nil {
		t.Fatalf("a message of exactly the limit: %d bytes, %v", n, err)
	}
	if err := d.Reset(bytes.NewReader([]byte("not gzip"))); err == nil || errors.Is(err, io.EOF) {
		t.Errorf("Reset on a body that is not gzip: %v", err)
	}
}
