package mcpruntime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
)

// remoteTransport adds an instance's headers and query parameters, and the traceparent of the call a
// request serves, to every request for the server's origin, and remembers whether the server refused them.
// Requests for other origins, such as a redirect elsewhere, get none of them.
type remoteTransport struct {
	base    http.RoundTripper
	origin  string // scheme://host[:port]
	headers map[string]string
	query   map[string]string
	refused atomic.Int32 // the last 401 or 403 status seen
	// maxAnswer bounds an answer that is not an event stream: maxLineBytes.
	maxAnswer int64
}

func newRemoteTransport(base *http.Client, endpoint *url.URL, headers, query map[string]string) *remoteTransport {
	rt := base.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	return &remoteTransport{base: rt, origin: origin(endpoint), headers: headers, query: query, maxAnswer: maxLineBytes}
}

func origin(u *url.URL) string {
	return strings.ToLower(u.Scheme) + "://" + strings.ToLower(u.Host)
}

func (t *remoteTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	sc := trace.SpanContextFromContext(req.Context())
	same := origin(req.URL) == t.origin
	if same && (len(t.headers) > 0 || len(t.query) > 0 || sc.IsValid()) {
		req = req.Clone(req.Context()) // RoundTrip must not change the caller's request
	}
	if same && (len(t.headers) > 0 || len(t.query) > 0) {
		for k, v := range t.headers {
			if strings.EqualFold(k, "Host") {
				// The Host header decides where a proxy or a shared front end sends the request: configured,
				// it would reach what the URL, and the egress check of its address, do not name.
				continue
			}
			req.Header.Set(k, v)
		}
		if len(t.query) > 0 {
			q := req.URL.Query()
			added := false
			for k, v := range t.query {
				if !q.Has(k) {
					q.Set(k, v)
					added = true
				}
			}
			if added {
				req.URL.RawQuery = q.Encode()
			}
		}
	}
	if same && sc.IsValid() {
		// The call's trace goes on to the server, as W3C Trace Context headers do over HTTP.
		propagation.TraceContext{}.Inject(req.Context(), propagation.HeaderCarrier(req.Header))
	}
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		t.refused.Store(int32(resp.StatusCode))
	}
	// The SDK reads a JSON answer, or an error's body, whole: a server must not make the satellite hold an
	// answer without end. An event stream it bounds itself, one event at a time.
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "text/event-stream" {
		resp.Body = &boundedBody{ReadCloser: resp.Body, left: t.maxAnswer}
	}
	return resp, nil
}

// errAnswerTooLarge fails the reading of an answer longer than the bound.
var errAnswerTooLarge = fmt.Errorf("the MCP server's answer is larger than %d MiB", maxLineBytes>>20)

// boundedBody is an answer's body that fails with errAnswerTooLarge past left bytes.
type boundedBody struct {
	io.ReadCloser
	left int64
}

func (b *boundedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// One byte more tells a body of exactly the bound from a longer one.
		var one [1]byte
		if n, _ := b.ReadCloser.Read(one[:]); n > 0 {
			return 0, errAnswerTooLarge
		}
		return b.ReadCloser.Read(p)
	}
	p = p[:min(int64(len(p)), b.left)]
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	return n, err
}

// endpointURL is a remote server's URL with its query parameters, which override any the URL carries.
func endpointURL(spec *satellitev1.Instance) (*url.URL, error) {
	u, err := url.Parse(spec.GetUrl())
	if err != nil {
		return nil, fmt.Errorf("server URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("a remote server needs an http:// or https:// URL with a host")
	}
	if len(spec.GetQueryParams()) > 0 {
		q := u.Query()
		for k, v := range spec.GetQueryParams() {
			q.Set(k, v)
		}
		u.RawQuery = q.Encode()
	}
	return u, nil
}

// authWords are what servers say when they refuse credentials without a 401 or 403.
var authWords = []string{"unauthorized", "unauthorised", "forbidden", "auth", "credential", "invalid token",
	"expired token", "token expired", "api key", "apikey"}

// classify turns a failed connection to a remote server into a status: requires_reauth when the server
// refused the credentials (HTTP 401 or 403, or an error that says so), else error.
func classify(err error, c *conn) (satellitev1.InstanceStatus, string) {
	var refused int32
	if c != nil && c.remote != nil {
		refused = c.remote.refused.Load()
	}
	return classifyRefusal(err, refused)
}

func classifyRefusal(err error, refused int32) (satellitev1.InstanceStatus, string) {
	if refused != 0 {
		return satellitev1.InstanceStatus_INSTANCE_STATUS_REQUIRES_REAUTH,
			fmt.Sprintf("the server refused the credentials (HTTP %d): update them to reconnect", refused)
	}
	msg := err.Error()
	lower := strings.ToLower(msg)
	for _, w := range authWords {
		if strings.Contains(lower, w) {
			return satellitev1.InstanceStatus_INSTANCE_STATUS_REQUIRES_REAUTH, "the server refused the credentials: " + msg
		}
	}
	return satellitev1.InstanceStatus_INSTANCE_STATUS_ERROR, "cannot reach the server: " + msg
}

// checkCredentials validates a remote instance's credentials the way a client would use them: it connects
// afresh with them and lists tools, within CredentialCheckTimeout. Success means online; a refusal means
// requires_reauth; any other failure means error.
func (in *instance) checkCredentials(ctx context.Context) (satellitev1.InstanceStatus, string, error) {
	spec := in.currentSpec()
	endpoint, err := endpointURL(spec)
	if err != nil {
		return satellitev1.InstanceStatus_INSTANCE_STATUS_ERROR, "invalid configuration: " + err.Error(), nil
	}
	ctx, cancel := context.WithTimeoutCause(ctx, in.rt.cfg.CredentialCheckTimeout,
		fmt.Errorf("no answer within %v", in.rt.cfg.CredentialCheckTimeout))
	defer cancel()
	rt := newRemoteTransport(in.rt.cfg.HTTPClient, endpoint, spec.GetHeaders(), spec.GetQueryParams())
	httpClient := &http.Client{Transport: rt}
	var transport mcp.Transport = &mcp.StreamableClientTransport{
		Endpoint: endpoint.String(), HTTPClient: httpClient, MaxRetries: -1, DisableStandaloneSSE: true,
	}
	if spec.GetTransport() == satellitev1.Transport_TRANSPORT_SSE {
		transport = &mcp.SSEClientTransport{Endpoint: endpoint.String(), HTTPClient: httpClient}
	}
	client := mcp.NewClient(in.rt.cfg.ClientInfo, nil)
	session, err := client.Connect(ctx, transport, nil)
	if err == nil {
		_, err = session.ListTools(ctx, nil)
		_ = session.Close()
	}
	if err == nil {
		return satellitev1.InstanceStatus_INSTANCE_STATUS_ONLINE, "", nil
	}
	if ctx.Err() != nil && context.Cause(ctx) != nil && !errors.Is(context.Cause(ctx), context.Canceled) {
		err = fmt.Errorf("%w: %v", context.Cause(ctx), err)
	} else if ctx.Err() != nil {
		return 0, "", ctx.Err()
	}
	status, msg := classifyRefusal(err, rt.refused.Load())
	return status, "credential check: " + msg, nil
}
