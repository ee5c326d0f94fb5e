package server_test

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/durationpb"

	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	"github.com/orrery/orrery/gen/orrery/api/v1/apiv1connect"
	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/gen/orrery/satellite/v1/satellitev1connect"
	"github.com/orrery/orrery/services/controlplane/internal/instanceapi"
)

// These are the tests an attacker would write: bodies that inflate a thousandfold, bodies that never end,
// bodies sent without credentials and bodies that trickle, against a real replica on loopback, in every
// protocol the replica speaks.

var bombMiB = flag.Int64("bomb-mib", 1024, "how far the gzip bombs of TestGzipBombsAreBounded inflate, in MiB")

// maxHeapGrowth is how far the heap may rise above idle while a replica refuses one hostile request.
const maxHeapGrowth = 64 << 20

// gzipZeros returns a gzip stream that inflates to prefix followed by n zero bytes, n a multiple of 1 MiB.
// It compresses one MiB of zeros once and repeats that deflate block, so a bomb of 1 GiB costs about 1 MB and
// a few milliseconds to make. prefix must hold no zero byte, or the block could refer back into it.
func gzipZeros(prefix []byte, n int64) []byte {
	const chunk = 1 << 20
	var deflated bytes.Buffer
	fw, _ := flate.NewWriter(&deflated, flate.BestCompression)
	_, _ = fw.Write(prefix)
	_ = fw.Flush()
	start := deflated.Len()
	zeros := make([]byte, chunk)
	_, _ = fw.Write(zeros)
	_ = fw.Flush() // ends the block on a byte boundary, so it can be repeated as it is
	block := bytes.Clone(deflated.Bytes()[start:])
	deflated.Truncate(start)

	out := bytes.NewBuffer(make([]byte, 0, 32+deflated.Len()+int(n/chunk)*len(block)))
	out.Write([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff}) // gzip header: deflate, no name, no time
	out.Write(deflated.Bytes())
	crc := crc32.ChecksumIEEE(prefix)
	for range n / chunk {
		out.Write(block)
		crc = crc32.Update(crc, crc32.IEEETable, zeros)
	}
	out.Write([]byte{0x03, 0x00}) // an empty final block
	_ = binary.Write(out, binary.LittleEndian, crc)
	_ = binary.Write(out, binary.LittleEndian, uint32(int64(len(prefix))+n))
	return out.Bytes()
}

// protoString is the protobuf encoding of a string field's tag and length, for a field of n bytes that
// follow. Its bytes are never zero for a length of at least 1 MiB.
func protoString(field int, n int64) []byte {
	return binary.AppendUvarint([]byte{byte(field<<3 | 2)}, uint64(n))
}

// heapGrowth runs f and returns how far the heap in use rose above its level before f, at the highest of
// samples taken every millisecond while f ran. The replica runs in this process, so this is its heap.
func heapGrowth(f func()) uint64 {
	samples := []metrics.Sample{
		{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/unused:bytes"},
	}
	inUse := func() uint64 {
		metrics.Read(samples)
		return samples[0].Value.Uint64() + samples[1].Value.Uint64()
	}
	runtime.GC()
	idle := inUse()
	var peak atomic.Uint64
	peak.Store(idle)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				if v := inUse(); v > peak.Load() {
					peak.Store(v)
				}
			}
		}
	})
	f()
	close(done)
	wg.Wait()
	if v := inUse(); v > peak.Load() {
		peak.Store(v)
	}
	return peak.Load() - idle
}

// wire is one RPC protocol, spoken by hand so that a test controls every byte of the body.
type wire struct {
	name string
	h2c  bool
	// contentType and encodingHeader are how the protocol names the message's codec and compression.
	contentType, encodingHeader string
	enveloped                   bool
}

var wires = []wire{
	{name: "connect", contentType: "application/proto", encodingHeader: "Content-Encoding"},
	{name: "grpc", h2c: true, contentType: "application/grpc+proto", encodingHeader: "Grpc-Encoding", enveloped: true},
	{name: "grpc-web", contentType: "application/grpc-web+proto", encodingHeader: "Grpc-Encoding", enveloped: true},
}

// client returns an HTTP client of its own for the protocol, so that no test shares a connection with another.
func (w wire) client(t *testing.T) *http.Client {
	tr := &http.Transport{DisableCompression: true}
	if w.h2c {
		tr.Protocols = new(http.Protocols)
		tr.Protocols.SetUnencryptedHTTP2(true)
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// rawCall is one request written by hand.
type rawCall struct {
	procedure string
	// message is the message as sent, compressed when gzip is set; size is its length.
	message io.Reader
	size    int64
	gzip    bool
	header  http.Header
}

// outcome is what the client saw: the RPC code ("ok" for success) and the message that came with it.
type outcome struct {
	code    string
	message string
}

// do sends c and reads the RPC status the way the protocol's clients do. With declared, the request
// carries a Content-Length.
func (w wire) do(t *testing.T, client *http.Client, baseURL string, c rawCall, declared bool) (outcome, error) {
	t.Helper()
	body := c.message
	size := c.size
	if w.enveloped {
		prefix := make([]byte, 5)
		if c.gzip {
			prefix[0] = 1
		}
		binary.BigEndian.PutUint32(prefix[1:], uint32(c.size))
		body, size = io.MultiReader(bytes.NewReader(prefix), c.message), c.size+5
		if closer, ok := c.message.(io.Closer); ok {
			body = struct {
				io.Reader
				io.Closer
			}{body, closer}
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, baseURL+c.procedure, body)
	if err != nil {
		t.Fatal(err)
	}
	if declared {
		req.ContentLength = size
	}
	req.Header.Set("Content-Type", w.contentType)
	if w.name == "connect" {
		req.Header.Set("Connect-Protocol-Version", "1")
	}
	if w.h2c {
		req.Header.Set("Te", "trailers")
	}
	if c.gzip {
		req.Header.Set(w.encodingHeader, "gzip")
	}
	for k, v := range c.header {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		return outcome{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return outcome{}, fmt.Errorf("read response: %w", err)
	}
	if !w.enveloped {
		if resp.StatusCode == http.StatusOK {
			return outcome{code: "ok"}, nil
		}
		var e struct{ Code, Message string }
		if err := json.Unmarshal(data, &e); err != nil {
			return outcome{}, fmt.Errorf("status %d without a Connect error: %q", resp.StatusCode, data)
		}
		return outcome{code: e.Code, message: e.Message}, nil
	}
	status, message := resp.Header.Get("Grpc-Status"), resp.Header.Get("Grpc-Message")
	if status == "" {
		status, message = resp.Trailer.Get("Grpc-Status"), resp.Trailer.Get("Grpc-Message")
	}
	if status == "" && w.name == "grpc-web" {
		status, message = grpcWebTrailer(data)
	}
	if status == "" {
		return outcome{}, fmt.Errorf("HTTP status %d without a gRPC status", resp.StatusCode)
	}
	n, err := strconv.Atoi(status)
	if err != nil {
		return outcome{}, fmt.Errorf("gRPC status %q", status)
	}
	if n == 0 {
		return outcome{code: "ok"}, nil
	}
	return outcome{code: connect.Code(n).String(), message: message}, nil
}

// grpcWebTrailer finds grpc-status and grpc-message in the trailer frame of a gRPC-Web response body.
func grpcWebTrailer(body []byte) (status, message string) {
	for len(body) >= 5 {
		n := int(binary.BigEndian.Uint32(body[1:5]))
		if 5+n > len(body) {
			return "", ""
		}
		frame := body[5 : 5+n]
		if body[0]&0x80 != 0 {
			for line := range strings.SplitSeq(string(frame), "\r\n") {
				k, v, _ := strings.Cut(line, ":")
				switch strings.ToLower(strings.TrimSpace(k)) {
				case "grpc-status":
					status = strings.TrimSpace(v)
				case "grpc-message":
					message = strings.TrimSpace(v)
				}
			}
		}
		body = body[5+n:]
	}
	return status, message
}

// loginProcedure is the one procedure of the user-facing API that anyone may call.
const loginProcedure = "/orrery.api.v1.AccountService/Login"

// TestGzipBombsAreBounded sends, in every protocol, a gzip body of about 1 MB that inflates to a 1 GiB
// field: to Login, which anyone may call, with and without a Content-Length, and to EmitEvents with a
// satellite's key, whose 16 MiB limit lets the whole bomb arrive, so that only inflation stops it. It checks
// that the replica refuses each as too large with its heap barely moved. The test is not parallel, so the
// heap it measures is the replica's work on the bomb alone.
func TestGzipBombsAreBounded(t *testing.T) {
	b := setup(t, setupOpts{})
	base := b.replicas[0].url
	sat := b.activeSatellite(t, "")
	inflated := *bombMiB << 20
	message := gzipZeros(protoString(1, inflated), inflated)
	t.Logf("bomb: %d bytes of gzip inflating to %d MiB", len(message), *bombMiB)
	for _, w := range wires {
		for _, tc := range []struct {
			name, procedure, key string
			declared             bool
		}{
			{"Login", loginProcedure, "", true},
			{"Login chunked", loginProcedure, "", false},
			{"EmitEvents", "/orrery.satellite.v1.SatelliteService/EmitEvents", sat.apiKey, true},
		} {
			t.Run(w.name+" "+tc.name, func(t *testing.T) {
				client := w.client(t)
				call := rawCall{procedure: tc.procedure, message: bytes.NewReader(message), size: int64(len(message)), gzip: true,
					header: http.Header{}}
				if !tc.declared {
					call.message = io.MultiReader(call.message) // hides the length from the transport
				}
				if tc.key != "" {
					call.header.Set("Authorization", "Bearer "+tc.key)
				}
				var got outcome
				var err error
				start := time.Now()
				grew := heapGrowth(func() { got, err = w.do(t, client, base, call, tc.declared) })
				t.Logf("peak heap %d KiB above idle, answered in %v: %v, %v", grew>>10, time.Since(start).Round(time.Millisecond), got, err)
				if err != nil {
					t.Fatal(err)
				}
				if got.code != connect.CodeResourceExhausted.String() {
					t.Errorf("answer %v, want resource_exhausted", got)
				}
				if grew > maxHeapGrowth {
					t.Errorf("heap rose %d MiB above idle, want at most %d MiB", grew>>20, maxHeapGrowth>>20)
				}
			})
		}
	}
	// REST: the same bomb as a JSON body, on a GET and on the PATCH route, signed in and not.
	team := uuid.NewString()
	rest := []struct {
		name, method, path, token string
		want                      int
	}{
		{"rest GET signed in", http.MethodGet, "/api/teams/" + team + "/mcp/instances", adminToken, http.StatusRequestEntityTooLarge},
		{"rest PATCH signed in", http.MethodPatch, "/api/teams/" + team + "/mcp/installations/" + uuid.NewString() + "/settings", adminToken, http.StatusRequestEntityTooLarge},
		{"rest GET anonymous", http.MethodGet, "/api/teams/" + team + "/mcp/instances", "", http.StatusUnauthorized},
	}
	jsonBomb := gzipZeros([]byte(`{"x":"`), inflated)
	for _, tc := range rest {
		t.Run(tc.name, func(t *testing.T) {
			client := wires[0].client(t)
			var status int
			var err error
			start := time.Now()
			grew := heapGrowth(func() {
				status, err = restCall(t, client, tc.method, base+tc.path, tc.token, bytes.NewReader(jsonBomb), int64(len(jsonBomb)), true)
			})
			t.Logf("peak heap %d KiB above idle, answered in %v: status %d, %v", grew>>10, time.Since(start).Round(time.Millisecond), status, err)
			if err != nil {
				t.Fatal(err)
			}
			if status != tc.want {
				t.Errorf("status %d, want %d", status, tc.want)
			}
			if grew > maxHeapGrowth {
				t.Errorf("heap rose %d MiB above idle, want at most %d MiB", grew>>20, maxHeapGrowth>>20)
			}
		})
	}
}

// restCall sends one REST request with a JSON body and returns the HTTP status.
func restCall(t *testing.T, client *http.Client, method, url, token string, body io.Reader, size int64, gzip bool) (int, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/json")
	if gzip {
		req.Header.Set("Content-Encoding", "gzip")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, nil
}

// TestGzipZeros checks the bombs themselves: a valid gzip stream of the announced size, checksum included.
func TestGzipZeros(t *testing.T) {
	t.Parallel()
	const n = 3 << 20
	prefix := protoString(1, n)
	zr, err := gzip.NewReader(bytes.NewReader(gzipZeros(prefix, n)))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if want := append(bytes.Clone(prefix), make([]byte, n)...); !bytes.Equal(got, want) {
		t.Fatalf("inflated to %d bytes, want the prefix and %d zeros", len(got), n)
	}
}

// zeros is a body of n zero bytes made as it is read. It counts what it handed out and closes done when
// the transport is finished with it.
type zeros struct {
	prefix []byte
	left   int64
	read   atomic.Int64
	once   sync.Once
	done   chan struct{}
}

func newZeros(prefix []byte, n int64) *zeros {
	return &zeros{prefix: prefix, left: n, done: make(chan struct{})}
}

func (z *zeros) Read(p []byte) (int, error) {
	if len(z.prefix) > 0 {
		n := copy(p, z.prefix)
		z.prefix = z.prefix[n:]
		z.read.Add(int64(n))
		return n, nil
	}
	if z.left == 0 {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), z.left))
	clear(p[:n])
	z.left -= int64(n)
	z.read.Add(int64(n))
	return n, nil
}

func (z *zeros) Close() error {
	z.once.Do(func() { close(z.done) })
	return nil
}

// handedOut waits until the transport is done with the body and returns how much of it was read.
func (z *zeros) handedOut(t *testing.T) int64 {
	t.Helper()
	select {
	case <-z.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the transport still reads the body 10 s after the answer")
	}
	return z.read.Load()
}

// TestOversizedBodiesAreRefused sends 100 MiB to Login, which anyone may call, in every protocol, with and
// without a Content-Length: each is refused as too large, and the transport stops sending long before the
// end.
func TestOversizedBodiesAreRefused(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	const size = 100 << 20
	for _, w := range wires {
		for _, declared := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s declared=%v", w.name, declared), func(t *testing.T) {
				t.Parallel()
				body := newZeros(protoString(1, size), size)
				got, err := w.do(t, w.client(t), b.replicas[0].url, rawCall{
					procedure: loginProcedure, message: body, size: size + int64(len(protoString(1, size))),
				}, declared)
				if err != nil {
					t.Fatal(err)
				}
				if got.code != connect.CodeResourceExhausted.String() {
					t.Errorf("answer %v, want resource_exhausted", got)
				}
				// Whatever the socket buffers took before the connection or stream was closed, not the body.
				if n := body.handedOut(t); n > 32<<20 {
					t.Errorf("the client sent %d MiB of the 100 MiB body", n>>20)
				}
			})
		}
	}
	t.Run("rest", func(t *testing.T) {
		t.Parallel()
		body := newZeros(nil, size)
		status, err := restCall(t, wires[0].client(t), http.MethodPatch,
			b.replicas[0].url+"/api/teams/"+uuid.NewString()+"/mcp/installations/"+uuid.NewString()+"/settings",
			adminToken, body, -1, false)
		if err != nil {
			t.Fatal(err)
		}
		if status != http.StatusRequestEntityTooLarge {
			t.Errorf("status %d, want 413", status)
		}
		if n := body.handedOut(t); n > 32<<20 {
			t.Errorf("the client sent %d MiB of the 100 MiB body", n>>20)
		}
	})
}

// stalled is a body that hands out n zero bytes and then blocks until it is closed or the test ends, as
// a client sending a large body slowly would: an answer that arrives at all was made without the rest of
// the body.
type stalled struct {
	left    int64
	read    atomic.Int64
	release chan struct{}
	once    sync.Once
}

func newStalled(t *testing.T, n int64) *stalled {
	s := &stalled{left: n, release: make(chan struct{})}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func (s *stalled) Read(p []byte) (int, error) {
	if s.left == 0 {
		<-s.release
		return 0, errors.New("the body was closed")
	}
	n := int(min(int64(len(p)), s.left))
	clear(p[:n])
	s.left -= int64(n)
	s.read.Add(int64(n))
	return n, nil
}

// Close ends a Read that waits, as the HTTP/2 transport does when it abandons a request.
func (s *stalled) Close() error {
	s.once.Do(func() { close(s.release) })
	return nil
}

// TestBodiesWithoutCredentialsAreNotRead sends a request that announces 100 MiB but stalls after its first
// 64 KiB to procedures that need a caller, without credentials and with wrong ones, in every protocol: the
// answer is unauthenticated, given while the body is still stalled.
func TestBodiesWithoutCredentialsAreNotRead(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	const size, sent = 100 << 20, 64 << 10
	procedures := map[string]string{
		"/orrery.api.v1.TeamService/CreateTeam":            "Bearer not-a-token",
		"/orrery.satellite.v1.SatelliteService/EmitEvents": "Bearer orsat_000000000000000000000000_" + strings.Repeat("x", 43),
	}
	for _, w := range wires {
		for procedure, wrong := range procedures {
			for _, authorization := range []string{"", wrong} {
				t.Run(fmt.Sprintf("%s %s %q", w.name, procedure, authorization), func(t *testing.T) {
					t.Parallel()
					body := newStalled(t, sent)
					got, err := w.do(t, w.client(t), b.replicas[0].url, rawCall{
						procedure: procedure, message: body, size: size, header: http.Header{"Authorization": {authorization}},
					}, true)
					if err != nil {
						t.Fatal(err)
					}
					if got.code != connect.CodeUnauthenticated.String() {
						t.Errorf("answer %v, want unauthenticated", got)
					}
					if n := body.read.Load(); n > sent {
						t.Errorf("the body handed out %d bytes", n)
					}
				})
			}
		}
	}
	t.Run("rest", func(t *testing.T) {
		t.Parallel()
		body := newStalled(t, sent)
		status, err := restCall(t, wires[0].client(t), http.MethodPatch,
			b.replicas[0].url+"/api/teams/"+uuid.NewString()+"/mcp/installations/"+uuid.NewString()+"/settings",
			"", body, size, false)
		if err != nil {
			t.Fatal(err)
		}
		if status != http.StatusUnauthorized {
			t.Errorf("status %d, want 401", status)
		}
	})
}

// TestSlowBodiesTimeOut sends the first bytes of a body and then nothing: the replica gives up when the
// body timeout passes, in every protocol.
func TestSlowBodiesTimeOut(t *testing.T) {
	t.Parallel()
	const timeout = 500 * time.Millisecond
	b := setup(t, setupOpts{bodyTimeout: timeout})
	for _, w := range wires {
		t.Run(w.name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			got, err := w.do(t, w.client(t), b.replicas[0].url, rawCall{
				procedure: loginProcedure, message: newStalled(t, 10), size: 1000,
			}, true)
			if err != nil {
				t.Fatal(err)
			}
			if got.code != connect.CodeDeadlineExceeded.String() {
				t.Errorf("answer %v, want deadline_exceeded", got)
			}
			if elapsed := time.Since(start); elapsed < timeout {
				t.Errorf("answered after %v, before the body timeout", elapsed)
			}
		})
	}
	t.Run("rest", func(t *testing.T) {
		t.Parallel()
		status, err := restCall(t, wires[0].client(t), http.MethodPatch,
			b.replicas[0].url+"/api/teams/"+uuid.NewString()+"/mcp/installations/"+uuid.NewString()+"/settings",
			adminToken, newStalled(t, 10), 1000, false)
		if err != nil {
			t.Fatal(err)
		}
		if status != http.StatusRequestTimeout {
			t.Errorf("status %d, want 408", status)
		}
	})
}

// TestLongCallsOutliveTheBodyTimeout holds a long poll and a server stream open for three times the body
// timeout, over HTTP/1.1 and over h2c: the deadline that bounds a body ends with it.
func TestLongCallsOutliveTheBodyTimeout(t *testing.T) {
	t.Parallel()
	const timeout = time.Second
	b := setup(t, setupOpts{bodyTimeout: timeout, instances: instanceapi.Config{KeepAlive: 100 * time.Millisecond}})
	v := seedViewers(t, b, "long")
	sat := b.activeSatellite(t, v.team.ID.String())
	for _, w := range []wire{wires[0], wires[1]} {
		t.Run(w.name, func(t *testing.T) {
			t.Parallel()
			opts := []connect.ClientOption{connect.WithInterceptors(withBearer(sat.apiKey))}
			if w.h2c {
				opts = append(opts, connect.WithGRPC())
			}
			poller := satellitev1connect.NewSatelliteServiceClient(w.client(t), b.replicas[0].url, opts...)
			start := time.Now()
			if _, err := poller.PollCommands(t.Context(), connect.NewRequest(&satellitev1.PollCommandsRequest{
				Wait: durationpb.New(3 * timeout),
			})); err != nil {
				t.Fatalf("long poll: %v", err)
			}
			if elapsed := time.Since(start); elapsed < 2*timeout {
				t.Errorf("the long poll answered after %v, want it held for about %v", elapsed, 3*timeout)
			}

			signed := &http.Client{Transport: bearerTransport{v.aliceToken, w.client(t).Transport}}
			logs := apiv1connect.NewInstanceServiceClient(signed, b.replicas[0].url, opts[1:]...)
			stream, err := logs.StreamServerLogs(t.Context(), connect.NewRequest(&apiv1.StreamServerLogsRequest{
				TeamId: v.team.ID.String(), InstallationId: v.installation.ID.String(),
			}))
			if err != nil {
				t.Fatal(err)
			}
			defer stream.Close()
			start = time.Now()
			for time.Since(start) < 3*timeout {
				if !stream.Receive() {
					t.Fatalf("the stream ended after %v: %v", time.Since(start), stream.Err())
				}
			}
		})
	}
}

// TestOAuthBodiesAreBounded checks what dynamic client registration accepts, and that the form endpoints
// refuse bodies over their limit.
func TestOAuthBodiesAreBounded(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	post := func(path, contentType string, body io.Reader) (int, map[string]string) {
		t.Helper()
		resp, err := testClient.Post(b.oauthURL(path), contentType, body)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var e map[string]string
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return resp.StatusCode, e
	}
	for _, tc := range []struct {
		name, path, contentType, body string
		status                        int
		error, says                   string
	}{
		{"form to register", "/oauth/register", "application/x-www-form-urlencoded", "redirect_uris=https://a.example/cb",
			http.StatusUnsupportedMediaType, "invalid_client_metadata", "application/json"},
		{"no content type", "/oauth/register", "", `{"redirect_uris":["https://a.example/cb"]}`,
			http.StatusUnsupportedMediaType, "invalid_client_metadata", "application/json"},
		{"redirect_uris a string", "/oauth/register", "application/json", `{"redirect_uris":"https://a.example/cb"}`,
			http.StatusBadRequest, "invalid_client_metadata", "redirect_uris must be an array of strings"},
		{"unknown grant", "/oauth/register", "application/json; charset=utf-8",
			`{"redirect_uris":["https://a.example/cb"],"grant_types":["password"]}`,
			http.StatusBadRequest, "invalid_client_metadata", "grant_types: password"},
		{"huge metadata", "/oauth/register", "application/json",
			`{"client_name":"` + strings.Repeat("x", 20<<10) + `"}`,
			http.StatusRequestEntityTooLarge, "invalid_client_metadata", "larger than"},
		{"huge token form", "/oauth/token", "application/x-www-form-urlencoded", "scope=" + strings.Repeat("x", 70<<10),
			http.StatusRequestEntityTooLarge, "invalid_request", "larger than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Sent without a Content-Length, the body reaches the endpoint, which reads it within its own limit.
			status, e := post(tc.path, tc.contentType, io.MultiReader(strings.NewReader(tc.body)))
			if status != tc.status || e["error"] != tc.error || !strings.Contains(e["error_description"], tc.says) {
				t.Errorf("%d %v, want %d %s saying %q", status, e, tc.status, tc.error, tc.says)
			}
		})
	}
	// With a Content-Length beyond what any plain HTTP endpoint reads, the replica refuses at once.
	status, _ := post("/oauth/token", "application/x-www-form-urlencoded", bytes.NewReader(make([]byte, 1<<20)))
	if status != http.StatusRequestEntityTooLarge {
		t.Errorf("1 MiB to the token endpoint: %d, want 413", status)
	}
}
