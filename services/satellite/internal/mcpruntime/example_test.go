package mcpruntime_test

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/orrery/orrery/services/satellite/internal/desired"
	"github.com/orrery/orrery/services/satellite/internal/mcpruntime"
)

// An MCP endpoint lists a user's tools from every instance, keeps the list fresh, and calls through the
// runtime, which starts dormant instances on demand.
func Example() {
	ctx := context.Background()
	view := desired.New() // the configuration sync fills it
	rt, err := mcpruntime.New(slog.Default(), mcpruntime.Config{Desired: view})
	if err != nil {
		panic(err)
	}
	go rt.Run(ctx)

	teamID, userID := "team-uuid", "user-uuid"
	changes, stop := rt.Subscribe(teamID, userID)
	defer stop()
	go func() {
		for range changes {
			for _, in := range rt.Instances(teamID, userID) {
				fmt.Println(in.ServerSlug, in.Status, len(in.Tools), "tools, revision", in.Revision)
			}
		}
	}()

	res, err := rt.CallTool(ctx, "github-platform-ada-7c1e", &mcp.CallToolParams{
		Name:      "search_issues",
		Arguments: map[string]any{"query": "is:open"},
	}, func(_ context.Context, p *mcp.ProgressNotificationParams) {
		fmt.Println("progress", p.Progress, "of", p.Total)
	})
	if err != nil {
		fmt.Println("call failed:", err)
		return
	}
	fmt.Println(len(res.Content), "content items")
}
