package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/orrery/orrery/internal/toolselect"
	"github.com/orrery/orrery/services/satellite/internal/gateway"
	"github.com/orrery/orrery/services/satellite/internal/mcpruntime"
)

// runtimeBackend shows the MCP runtime to the gateway as its Backend, and carries its task requests.
type runtimeBackend struct {
	rt *mcpruntime.Runtime
}

var (
	_ gateway.TaskBackend      = runtimeBackend{}
	_ gateway.SessionRequester = runtimeBackend{}
)

// Instances lists a user's instances in a team. The team is always given: an empty one would mean all teams.
func (b runtimeBackend) Instances(teamID, userID string) []gateway.Instance {
	infos := b.rt.Instances(teamID, userID)
	out := make([]gateway.Instance, len(infos))
	for i, in := range infos {
		out[i] = gateway.Instance{
			ID: in.ID, InstallationID: in.InstallationID, TeamID: in.TeamID, UserID: in.UserID,
			ServerSlug: in.ServerSlug, ServerName: in.ServerName, Prefix: in.ToolPrefix, Online: in.Available(), Status: mcpruntime.StatusName(in.Status),
			Tools: in.Tools, Resources: in.Resources, ResourceTemplates: in.ResourceTemplates, Prompts: in.Prompts,
			RequestLoggingEnabled: in.RequestLoggingEnabled, EmergencyStop: in.EmergencyStop,
			ConnectAccountURL: in.ConnectAccountURL,
			Selection: toolselect.Selection{
				Allow: in.ToolSelection.GetAllow(), Deny: in.ToolSelection.GetDeny(),
				Hidden: in.ToolSelection.GetHidden(), Descriptions: in.ToolSelection.GetDescriptions(),
			},
		}
	}
	return out
}

// Session returns the instance's shared client session, waking a dormant instance and waiting for one
// that is starting.
func (b runtimeBackend) Session(ctx context.Context, instanceID string) (*mcp.ClientSession, error) {
	cs, err := b.rt.Session(ctx, instanceID)
	if errors.Is(err, mcpruntime.ErrStarting) {
		return nil, fmt.Errorf("%w: %w", gateway.ErrInstanceStarting, err)
	}
	return cs, err
}

// ModernSession returns the instance's client session in the 2026-07-28 era, or nil when the server does
// not speak it.
func (b runtimeBackend) ModernSession(ctx context.Context, instanceID string) (*mcp.ClientSession, error) {
	cs, err := b.rt.ModernSession(ctx, instanceID)
	if errors.Is(err, mcpruntime.ErrStarting) {
		return nil, fmt.Errorf("%w: %w", gateway.ErrInstanceStarting, err)
	}
	return cs, err
}

// Request carries a request the SDK's client has no method for, such as tasks/get, to the instance.
func (b runtimeBackend) Request(ctx context.Context, instanceID, method string, params json.RawMessage) (json.RawMessage, error) {
	res, err := b.rt.Request(ctx, instanceID, method, params)
	if errors.Is(err, mcpruntime.ErrStarting) {
		return nil, fmt.Errorf("%w: %w", gateway.ErrInstanceStarting, err)
	}
	return res, err
}

// SessionRequest carries a request over the instance's session's connection without the SDK's client.
func (b runtimeBackend) SessionRequest(ctx context.Context, instanceID string, session *mcp.ClientSession, method string, params json.RawMessage) (json.RawMessage, error) {
	res, err := b.rt.SessionRequest(ctx, instanceID, session, method, params)
	switch {
	case errors.Is(err, mcpruntime.ErrNoRawChannel):
		return nil, fmt.Errorf("%w: %w", gateway.ErrNoSessionRequest, err)
	case errors.Is(err, mcpruntime.ErrStarting):
		return nil, fmt.Errorf("%w: %w", gateway.ErrInstanceStarting, err)
	}
	return res, err
}

// Capability returns a capability the instance's running server declared, as written.
func (b runtimeBackend) Capability(instanceID, name string) json.RawMessage {
	return b.rt.Capability(instanceID, name)
}

// ToolTaskSupport returns the execution.taskSupport a tool of the instance's server declared.
func (b runtimeBackend) ToolTaskSupport(instanceID, tool string) string {
	return b.rt.ToolTaskSupport(instanceID, tool)
}

// Subscribe signals every change of any instance's status or catalogue.
func (b runtimeBackend) Subscribe() (<-chan struct{}, func()) { return b.rt.Subscribe("", "") }
