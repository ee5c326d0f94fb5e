package admission_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"

	"github.com/orrery/orrery/services/controlplane/internal/admission"
)

// echo answers with the length and Content-Encoding of the body it read, or the error reading it.
var echo = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		http.Error(w, "too large for the handler", http.StatusRequestEntityTooLarge)
		return
	}
	fmt.Fprintf(w, "%d %q", len(body), r.Header.Get("Content-Encoding"))
})

func serve(t *testing.T, cfg admission.Config) (*admission.Gate, string) {
	t.Helper()
	gate, err := admission.New(nil, cfg)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/", echo)
	mux.Handle(grpchealth.NewHandler(grpchealth.NewStaticChecker(), gate.Admit(func(string) admission.Procedure {
		return admission.Procedure{MaxBytes: 1 << 20} // asks for more than anonymous callers get
	})))
	srv := httptest.NewServer(gate.Handler(mux))
	t.Cleanup(srv.Close)
	return gate, srv.URL
}

func gzipped(n int) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, _ = zw.Write(bytes.Repeat([]byte("a"), n))
	_ = zw.Close()
	return buf.Bytes()
}

func post(t *testing.T, url string, body io.Reader, header http.Header) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}

func TestRESTBodiesAreInflatedWithinTheLimit(t *testing.T) {
	t.Parallel()
	_, url := serve(t, admission.Config{RESTPrefix: "/api/", REST: admission.Procedure{MaxBytes: 1000}})
	gz := http.Header{"Content-Encoding": {"gzip"}}
	if status, out := post(t, url+"/api/x", bytes.NewReader(gzipped(1000)), gz); status != http.StatusOK || out != `1000 ""` {
		t.Errorf("1000 bytes gzipped: %d %s, want them inflated and passed on without Content-Encoding", status, out)
	}
	for name, body := range map[string]io.Reader{
		"inflating past the limit": bytes.NewReader(gzipped(1001)),
		"declared past the limit":  bytes.NewReader(make([]byte, 4000)),
		"chunked past the limit":   io.MultiReader(bytes.NewReader(make([]byte, 1001))),
	} {
		header := http.Header{}
		if strings.HasPrefix(name, "inflating") {
			header = gz
		}
		status, out := post(t, url+"/api/x", body, header)
		var e struct{ Code int }
		_ = json.Unmarshal([]byte(out), &e)
		if status != http.StatusRequestEntityTooLarge || connect.Code(e.Code) != connect.CodeResourceExhausted {
			t.Errorf("%s: %d %s, want 413 with code resource_exhausted", name, status, out)
		}
	}
}

func TestRESTNeedsItsAuthenticator(t *testing.T) {
	t.Parallel()
	refuse := func(*http.Request, string) (context.Context, error) {
		return nil, connect.NewError(connect.CodeUnauthenticated, errors.New("sign in"))
	}
	_, url := serve(t, admission.Config{RESTPrefix: "/api/", REST: admission.Procedure{MaxBytes: 1000, Authenticate: refuse}})
	if status, out := post(t, url+"/api/x", strings.NewReader("{}"), nil); status != http.StatusUnauthorized ||
		!strings.Contains(out, `"code":16`) {
		t.Errorf("%d %s, want 401 with code unauthenticated", status, out)
	}
}

func TestOtherBodiesAreBounded(t *testing.T) {
	t.Parallel()
	_, url := serve(t, admission.Config{OtherMaxBytes: 100})
	if status, out := post(t, url+"/form", strings.NewReader(strings.Repeat("a", 100)), nil); status != http.StatusOK || out != `100 ""` {
		t.Errorf("100 bytes: %d %s", status, out)
	}
	if status, _ := post(t, url+"/form", strings.NewReader(strings.Repeat("a", 101)), nil); status != http.StatusRequestEntityTooLarge {
		t.Errorf("101 bytes declared: %d, want 413 from the gate", status)
	}
	if status, out := post(t, url+"/form", io.MultiReader(strings.NewReader(strings.Repeat("a", 101))), nil); status != http.StatusRequestEntityTooLarge ||
		!strings.Contains(out, "handler") {
		t.Errorf("101 bytes chunked: %d %s, want the handler's read to fail", status, out)
	}
}

func TestAnonymousProceduresReadLittle(t *testing.T) {
	t.Parallel()
	gate, _ := serve(t, admission.Config{})
	p, ok := gate.Procedures()["/grpc.health.v1.Health/Check"]
	if !ok || p.MaxBytes != admission.AnonymousMaxBytes {
		t.Errorf("health check admitted as %+v, want %d bytes", p, admission.AnonymousMaxBytes)
	}
}
