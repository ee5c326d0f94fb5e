package store

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"strings"

	"github.com/google/uuid"

	"github.com/orrery/orrery/services/controlplane/internal/store/internal/dbsqlc"
)

// Setting is one named value of env, headers or query parameters. Secret values are sealed before they are
// stored.
type Setting struct {
	Value  string
	Secret bool
}

// Settings maps names to values.
type Settings map[string]Setting

// storedSetting is a Setting as it lies in a jsonb column: a plain value, or a sealed one.
type storedSetting struct {
	Value  string `json:"value,omitempty"`
	Sealed string `json:"sealed,omitempty"`
	Secret bool   `json:"secret"`
}

// seal encodes settings for storage, sealing the secret ones.
func (s *Store) seal(settings Settings) ([]byte, error) { return s.sealOver(nil, settings) }

// sealOver encodes settings for storage over the previously stored ones, sealing the secret values. A secret
// without a value keeps the sealed value stored before under its name, or is dropped when there is none, so
// a form shown with masked secrets can be submitted again without wiping them.
func (s *Store) sealOver(prior []byte, settings Settings) ([]byte, error) {
	old, err := decodeStored(prior)
	if err != nil {
		return nil, err
	}
	stored := make(map[string]storedSetting, len(settings))
	for name, v := range settings {
		switch {
		case !v.Secret:
			stored[name] = storedSetting{Value: v.Value}
		case v.Value == "":
			if o, ok := old[name]; ok && o.Secret {
				stored[name] = o
			}
		default:
			sealed, err := s.keyring.Seal(v.Value)
			if err != nil {
				return nil, fmt.Errorf("seal %q: %w", name, err)
			}
			stored[name] = storedSetting{Sealed: sealed, Secret: true}
		}
	}
	return json.Marshal(stored)
}

func decodeStored(raw []byte) (map[string]storedSetting, error) {
	var stored map[string]storedSetting
	if len(raw) == 0 {
		return stored, nil
	}
	if err := json.Unmarshal(raw, &stored); err != nil {
		return nil, fmt.Errorf("decode settings: %w", err)
	}
	return stored, nil
}

// mask decodes stored settings without opening secrets: a secret comes back with an empty value.
func mask(raw []byte) (Settings, error) {
	stored, err := decodeStored(raw)
	if err != nil {
		return nil, err
	}
	out := make(Settings, len(stored))
	for name, v := range stored {
		out[name] = Setting{Value: v.Value, Secret: v.Secret}
		if v.Secret {
			out[name] = Setting{Secret: true}
		}
	}
	return out, nil
}

// open decodes stored settings into plain values, decrypting secret ones.
func (s *Store) open(raw []byte) (map[string]string, error) {
	stored, err := decodeStored(raw)
	if err != nil {
		return nil, err
	}
	plain := make(map[string]string, len(stored))
	for name, v := range stored {
		if !v.Secret {
			plain[name] = v.Value
			continue
		}
		value, err := s.keyring.Open(v.Sealed)
		if err != nil {
			return nil, fmt.Errorf("open %q: %w", name, err)
		}
		plain[name] = value
	}
	return plain, nil
}

// DesiredInstance is one instance a satellite must run, with its configuration merged from template, team
// installation and user configuration, secrets decrypted.
type DesiredInstance struct {
	ID                    string
	InstallationID        uuid.UUID
	TeamID                uuid.UUID
	TeamSlug              string
	UserID                uuid.UUID
	UserSlug              string
	ServerSlug            string
	ServerName            string
	Transport             string
	Command               string
	Args                  []string
	Env                   map[string]string
	URL                   string
	Headers               map[string]string
	QueryParams           map[string]string
	RequestLoggingEnabled bool
	// ToolPrefix goes before the instance's tool and prompt names at the team endpoint; empty means none.
	ToolPrefix string
	// Sandbox is the template's orrery.satellite.v1.Sandbox in protobuf JSON.
	Sandbox json.RawMessage
	// Source is the template's orrery.satellite.v1.Source in protobuf JSON; empty for none.
	Source json.RawMessage
	// Tools is the team's selection of the installation's tools; HiddenTools are the patterns of the tools
	// the instance's user hid.
	Tools       ToolSelection
	HiddenTools []string
	// EmergencyStop, when set, says why the instance must not run: an emergency stop of its template or
	// installation. Such an instance carries no arguments, environment or secrets.
	EmergencyStop string
	// AccountRequired reports a remote server that authorizes each member, whose member has no live
	// connection there (package remoteauth): the instance cannot be used until they connect.
	AccountRequired bool
}

// DesiredInstances returns the instances of one team, or of every team when teamID is nil, ordered by id;
// with placedOn, only those of the teams placed on that global satellite. Args are appended template, team,
// user; maps are merged with later levels overriding earlier ones.
func (s *Store) DesiredInstances(ctx context.Context, teamID, placedOn *uuid.UUID) ([]DesiredInstance, error) {
	rows, err := s.q.ListDesiredInstances(ctx, teamID, placedOn)
	if err != nil {
		return nil, translate(err, "list desired instances")
	}
	out := make([]DesiredInstance, 0, len(rows))
	for _, r := range rows {
		inst := DesiredInstance{
			ID: r.ID, InstallationID: r.InstallationID, TeamID: r.TeamID, TeamSlug: r.TeamSlug, UserID: r.UserID,
			UserSlug: r.UserSlug, ServerSlug: r.ServerSlug, ServerName: r.ServerName, Transport: r.Transport,
			Command: r.Command, URL: r.Url, RequestLoggingEnabled: r.RequestLoggingEnabled, ToolPrefix: r.ToolPrefix,
			Sandbox: r.Sandbox, Source: sourceOrNone(r.Source), Tools: ToolSelection{Allow: r.ToolsAllow, Deny: r.ToolsDeny}, HiddenTools: r.ToolsHidden,
			AccountRequired: r.PerUserAuthorization,
			EmergencyStop:   stopMessage(r.ServerSlug, r.TemplateStopReason, r.InstallationStopReason),
		}
		if err := json.Unmarshal(r.ToolDescriptions, &inst.Tools.Descriptions); err != nil {
			return nil, fmt.Errorf("instance %s tool descriptions: %w", r.ID, err)
		}
		if inst.EmergencyStop != "" {
			// Secrets are opened only for instances that run.
			out = append(out, inst)
			continue
		}
		if inst.Args, err = s.args(r); err != nil {
			return nil, fmt.Errorf("instance %s args: %w", r.ID, err)
		}
		if inst.Env, err = s.merge(r.TemplateEnv, r.TeamEnv, r.UserEnv); err != nil {
			return nil, fmt.Errorf("instance %s env: %w", r.ID, err)
		}
		if inst.Headers, err = s.merge(r.TemplateHeaders, r.TeamHeaders, r.UserHeaders); err != nil {
			return nil, fmt.Errorf("instance %s headers: %w", r.ID, err)
		}
		if inst.QueryParams, err = s.merge(r.TemplateQueryParams, r.TeamQueryParams, r.UserQueryParams); err != nil {
			return nil, fmt.Errorf("instance %s query parameters: %w", r.ID, err)
		}
		out = append(out, inst)
	}
	if err := s.addRemoteAuthorization(ctx, teamID, out); err != nil {
		return nil, err
	}
	return out, nil
}

// addRemoteAuthorization gives each member's instance of a remote server the access token of the account
// that member connected there, and no other instance: a member's token is sent only with their requests.
func (s *Store) addRemoteAuthorization(ctx context.Context, teamID *uuid.UUID, instances []DesiredInstance) error {
	conns, err := s.LiveRemoteOAuthConnections(ctx, teamID)
	if err != nil {
		return err
	}
	type key struct{ installation, user uuid.UUID }
	tokens := make(map[key]string, len(conns))
	for _, c := range conns {
		tokens[key{c.InstallationID, c.UserID}] = c.AccessToken
	}
	for i := range instances {
		inst := &instances[i]
		token, ok := tokens[key{inst.InstallationID, inst.UserID}]
		if !ok || (inst.Transport != "http" && inst.Transport != "sse") {
			continue
		}
		inst.AccountRequired = false
		// Whatever a template or a level set as Authorization would compete with the member's own account.
		for name := range inst.Headers {
			if strings.EqualFold(name, "Authorization") {
				delete(inst.Headers, name)
			}
		}
		inst.Headers["Authorization"] = "Bearer " + token
	}
	return nil
}

// args appends the template's arguments, the team's, the schema's arguments with their values, then the
// user's own.
func (s *Store) args(r dbsqlc.ListDesiredInstancesRow) ([]string, error) {
	schema, err := decodeSchema(r.ConfigSchema)
	if err != nil {
		return nil, err
	}
	team, err := s.open(r.TeamArgValues)
	if err != nil {
		return nil, err
	}
	user, err := s.open(r.UserArgValues)
	if err != nil {
		return nil, err
	}
	args := append(append([]string{}, r.TemplateArgs...), r.TeamArgs...)
	return append(append(args, schema.renderArgs(team, user)...), r.UserArgs...), nil
}

// merge opens each level and lays later levels over earlier ones.
func (s *Store) merge(levels ...[]byte) (map[string]string, error) {
	merged := map[string]string{}
	for _, raw := range levels {
		level, err := s.open(raw)
		if err != nil {
			return nil, err
		}
		maps.Copy(merged, level)
	}
	return merged, nil
}
