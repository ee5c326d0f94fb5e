package store

import (
	"context"
	"encoding/json"
	"time"

	"github.com/google/uuid"

	"github.com/orrery/orrery/services/controlplane/internal/store/internal/dbsqlc"
)

// Events of configure commands, which tell a satellite why to fetch its configuration again.
const (
	EventInstallationCreated = "mcp_installation_created"
	EventInstallationUpdated = "mcp_installation_updated"
	EventInstallationDeleted = "mcp_installation_deleted"
)

// Command priorities, as stored (satellite.v1.CommandPriority).
const (
	PriorityLow       int16 = 1
	PriorityNormal    int16 = 2
	PriorityHigh      int16 = 3
	PriorityImmediate int16 = 4
)

// configure queues, inside the caller's transaction, a configure command for every satellite serving the
// team: immediate for creations and updates, which a user is waiting for, high for deletions, which free
// resources and expire later.
func configure(ctx context.Context, q *dbsqlc.Queries, teamID uuid.UUID, event string, installationID uuid.UUID) error {
	c := NewCommand{TeamID: &teamID, Type: "configure", Priority: PriorityImmediate, TTL: 5 * time.Minute}
	if event == EventInstallationDeleted {
		c.Priority, c.TTL = PriorityHigh, 10*time.Minute
	}
	c.Payload, _ = json.Marshal(map[string]string{"event": event, "installation_id": installationID.String()})
	_, err := enqueueForTeam(ctx, q, teamID, c)
	return err
}
