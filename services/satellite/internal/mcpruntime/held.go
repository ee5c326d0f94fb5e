package mcpruntime

import (
	"fmt"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
)

// heldInstance is a desired instance the runtime does not run: one under an emergency stop, or one whose
// user has yet to connect their account at a server that authorizes each person (it has no credential).
type heldInstance struct {
	spec *satellitev1.Instance
	// ownTools are the tools the instance itself last offered, when it ran before being held or left a
	// kept catalogue; tools of another member's instance of the same installation take precedence.
	ownTools []*mcp.Tool
	// message is the status message last reported for it, guarded by Runtime.mu.
	message string
}

// held reports whether the runtime must not run spec.
func held(spec *satellitev1.Instance) bool {
	return spec.GetEmergencyStop() != "" || spec.GetConnectAccountUrl() != ""
}

// awaitsAccount reports whether the held instance waits for its user to connect their account.
func (h *heldInstance) awaitsAccount() bool {
	return h.spec.GetEmergencyStop() == "" && h.spec.GetConnectAccountUrl() != ""
}

// status is the held instance's status and why, given the tools it can list.
func (h *heldInstance) status(tools []*mcp.Tool) (satellitev1.InstanceStatus, string) {
	if !h.awaitsAccount() {
		return satellitev1.InstanceStatus_INSTANCE_STATUS_OFFLINE, cut(h.spec.GetEmergencyStop(), 4096)
	}
	msg := fmt.Sprintf("%s must connect their account at %s: %s", h.spec.GetUserSlug(), serverLabel(h.spec),
		h.spec.GetConnectAccountUrl())
	if len(tools) == 0 {
		msg += "; no tools are listed until a member of the team has connected"
	}
	return satellitev1.InstanceStatus_INSTANCE_STATUS_REQUIRES_REAUTH, cut(msg, 4096)
}

// serverLabel names spec's server for people: its display name, else its slug.
func serverLabel(spec *satellitev1.Instance) string {
	if spec.GetServerName() != "" {
		return spec.GetServerName()
	}
	return spec.GetServerSlug()
}

// knownTools are the tools a held instance that awaits its user's account lists: those of a running
// instance of the same team's installation (another member's, who connected), else its own from before.
// A server that authorizes each person offers everyone the same tools; what it answers stays per person.
func (r *Runtime) knownTools(h *heldInstance) []*mcp.Tool {
	if !h.awaitsAccount() {
		return nil
	}
	for _, in := range r.all() {
		spec := in.currentSpec()
		if spec.GetTeamId() != h.spec.GetTeamId() || spec.GetInstallationId() != h.spec.GetInstallationId() {
			continue
		}
		if tools := in.tools(); len(tools) > 0 {
			return tools
		}
	}
	return h.ownTools
}

// tools returns the instance's tools from its last discovery.
func (in *instance) tools() []*mcp.Tool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.cat.tools
}

// heldInfo describes a held instance: it offers nothing but, while it awaits its user's account, the
// tools known of its server, whose calls the gateway answers with the link to connect.
func (r *Runtime) heldInfo(h *heldInstance) InstanceInfo {
	spec := h.spec
	tools := r.knownTools(h)
	status, message := h.status(tools)
	info := InstanceInfo{
		ID: spec.GetId(), InstallationID: spec.GetInstallationId(), TeamID: spec.GetTeamId(), TeamSlug: spec.GetTeamSlug(),
		UserID: spec.GetUserId(), UserSlug: spec.GetUserSlug(), ServerSlug: spec.GetServerSlug(),
		ServerName: spec.GetServerName(), Transport: spec.GetTransport(), ToolPrefix: spec.GetToolPrefix(),
		RequestLoggingEnabled: spec.GetRequestLoggingEnabled(), Status: status, Message: message,
		EmergencyStop: spec.GetEmergencyStop(),
	}
	if h.awaitsAccount() {
		info.ConnectAccountURL, info.ToolSelection, info.Tools = spec.GetConnectAccountUrl(), spec.GetToolSelection(), tools
	}
	return info
}

// reportHeld reports the status of the held instances that match, each when it differs from the one last
// reported, and tells their users' endpoints. Reports are serialized, so the last one sent is the latest.
func (r *Runtime) reportHeld(match func(*heldInstance) bool) {
	r.heldReportMu.Lock()
	defer r.heldReportMu.Unlock()
	r.mu.Lock()
	var list []*heldInstance
	for _, h := range r.held {
		if match(h) {
			list = append(list, h)
		}
	}
	r.mu.Unlock()
	for _, h := range list {
		status, message := h.status(r.knownTools(h))
		r.mu.Lock()
		changed := h.message != message
		h.message = message
		r.mu.Unlock()
		if !changed {
			continue
		}
		r.cfg.Events.Emit(&satellitev1.Event{
			TeamId: h.spec.GetTeamId(), InstallationId: h.spec.GetInstallationId(), InstanceId: h.spec.GetId(),
			Payload: &satellitev1.Event_StatusChanged{StatusChanged: &satellitev1.StatusChanged{Status: status, Message: message}},
		})
		r.notify(h.spec.GetTeamId(), h.spec.GetUserId())
	}
}

// reportHeldOf reports again the held instances that await an account at the installation of spec, whose
// catalogue just changed: the tools they list come from it.
func (r *Runtime) reportHeldOf(spec *satellitev1.Instance) {
	r.reportHeld(func(h *heldInstance) bool {
		return h.awaitsAccount() && h.spec.GetTeamId() == spec.GetTeamId() && h.spec.GetInstallationId() == spec.GetInstallationId()
	})
}
