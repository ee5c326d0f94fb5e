package desired_test

import (
	"fmt"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/services/satellite/internal/desired"
)

// The MCP runtime subscribes, then reconciles against a fresh snapshot after every notification.
func ExampleView_Subscribe() {
	view := desired.New()
	changes, stop := view.Subscribe()
	defer stop()

	// The configuration sync applies what the control plane sent.
	diff, _ := view.Apply([]*satellitev1.Instance{
		{Id: "github-platform-ada-7c1e", ContentHash: "h1"},
		{Id: "slack-platform-ada-9f2d", ContentHash: "h1"},
	})
	fmt.Println("added:", diff.Added)

	<-changes
	for _, in := range view.Snapshot().Instances {
		fmt.Println("run", in.GetId(), in.GetContentHash())
	}
	// Output:
	// added: [github-platform-ada-7c1e slack-platform-ada-9f2d]
	// run github-platform-ada-7c1e h1
	// run slack-platform-ada-9f2d h1
}
