package mcpruntime_test

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/orrery/orrery/services/satellite/internal/desired"
	"github.com/orrery/orrery/services/satellite/internal/mcpruntime"
)

// An MCP endpoint lists a user's tools from every instance, keeps the list fresh, and calls on an
// instance's shared session, which the runtime starts or wakes on demand.
func Example() {
	ctx := context.Background()
	view := desired.New() // the configuration sync fills it
	rt, err := mcpruntime.New(slog.Default(), mcpruntime.Config{
		Desired: view,
		OnProgress: func(_ context.Context, req *mcp.ProgressNotificationClientRequest) {
			fmt.Println("progress", req.Params.Progress, "of", req.Params.Total)
		},
	})
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

	session, err := rt.Session(ctx, "github-platform-ada-7c1e")
	if err != nil {
		fmt.Println("instance unavailable:", err)
		return
	}
	res, err := session.CallTool(ctx, &mcp.CallToolParams{
		Name:      "search_issues",
		Arguments: map[string]any{"query": "is:open"},
	})
	if err != nil {
		fmt.Println("call failed:", err)
		return
	}
	fmt.Println(len(res.Content), "content items")
}
