// Command mcpload is the satellite benchmarks' load generator: MCP clients in a process of their own, so
// that the satellite's CPU time is measured without theirs. It opens -sessions Go SDK client sessions to
// a Streamable HTTP endpoint in protocol -version, prints "ready", and waits for a line on stdin; it then
// calls -tool with a short message through every session concurrently for -duration and prints one JSON
// line: the calls made and its own CPU time meanwhile.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Result is what mcpload prints when the window ends.
type Result struct {
	Calls   int64         `json:"calls"`
	Elapsed time.Duration `json:"elapsed"`
	CPU     time.Duration `json:"cpu"`
	Error   string        `json:"error,omitempty"`
}

type bearer struct {
	token string
	base  http.RoundTripper
}

func (t bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+t.token)
	return t.base.RoundTrip(r)
}

func main() {
	url := flag.String("url", "", "the Streamable HTTP endpoint")
	token := flag.String("token", "", "bearer token")
	version := flag.String("version", "", "protocol version")
	sessions := flag.Int("sessions", 16, "concurrent client sessions")
	duration := flag.Duration("duration", 10*time.Second, "length of the window")
	tool := flag.String("tool", "", "tool to call")
	flag.Parse()

	ctx := context.Background()
	hc := &http.Client{Transport: bearer{token: *token, base: &http.Transport{
		MaxIdleConns: 256, MaxIdleConnsPerHost: 256, IdleConnTimeout: time.Minute,
	}}}
	var css []*mcp.ClientSession
	for range *sessions {
		client := mcp.NewClient(&mcp.Implementation{Name: "mcpload", Version: "1"}, nil)
		cs, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: *url, HTTPClient: hc},
			&mcp.ClientSessionOptions{ProtocolVersion: *version})
		if err != nil {
			log.Fatalf("connect: %v", err)
		}
		defer cs.Close()
		css = append(css, cs)
	}
	fmt.Println("ready")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		log.Fatalf("waiting for the start: %v", err)
	}

	cpu0 := cpuTime()
	start := time.Now()
	end := start.Add(*duration)
	var calls atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	for _, cs := range css {
		wg.Go(func() {
			for time.Now().Before(end) {
				res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: *tool, Arguments: map[string]any{"message": "hello"}})
				if err == nil && (res.IsError || len(res.Content) == 0) {
					err = fmt.Errorf("%s answered %+v", *tool, res)
				}
				if err != nil {
					failed.CompareAndSwap(nil, err.Error())
					return
				}
				calls.Add(1)
			}
		})
	}
	wg.Wait()
	r := Result{Calls: calls.Load(), Elapsed: time.Since(start), CPU: cpuTime() - cpu0}
	r.Error, _ = failed.Load().(string)
	if err := json.NewEncoder(os.Stdout).Encode(r); err != nil {
		log.Fatal(err)
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
