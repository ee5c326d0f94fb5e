// Command toolserver is a minimal MCP server over stdio for the satellite's benchmarks: it offers
// TOOLSERVER_TOOLS tools (default 20), tool_00 … tool_NN, each of which echoes its "message" argument.
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"strconv"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

func main() {
	n := 20
	if s := os.Getenv("TOOLSERVER_TOOLS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil {
			log.Fatalf("TOOLSERVER_TOOLS: %v", err)
		}
	}
	server := mcp.NewServer(&mcp.Implementation{Name: "toolserver", Version: "1"}, nil)
	schema := map[string]any{
		"type":       "object",
		"properties": map[string]any{"message": map[string]any{"type": "string", "description": "Text to echo back"}},
		"required":   []string{"message"},
	}
	for i := range n {
		server.AddTool(&mcp.Tool{
			Name:        fmt.Sprintf("tool_%02d", i),
			Description: fmt.Sprintf("Benchmark tool %d: echoes its message.", i),
			InputSchema: schema,
		}, func(_ context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: string(req.Params.Arguments)}}}, nil
		})
	}
	if err := server.Run(context.Background(), &mcp.StdioTransport{}); err != nil {
		log.Fatal(err)
	}
}
