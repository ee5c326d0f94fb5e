package catalogapi

import (
	"encoding/json"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

var transports = map[apiv1.Transport]string{
	apiv1.Transport_TRANSPORT_STDIO: "stdio",
	apiv1.Transport_TRANSPORT_HTTP:  "http",
	apiv1.Transport_TRANSPORT_SSE:   "sse",
}

func transportToProto(t string) apiv1.Transport {
	for k, v := range transports {
		if v == t {
			return k
		}
	}
	return apiv1.Transport_TRANSPORT_UNSPECIFIED
}

var valueTypes = map[apiv1.ValueType]string{
	apiv1.ValueType_VALUE_TYPE_UNSPECIFIED: store.TypeString,
	apiv1.ValueType_VALUE_TYPE_STRING:      store.TypeString,
	apiv1.ValueType_VALUE_TYPE_NUMBER:      store.TypeNumber,
	apiv1.ValueType_VALUE_TYPE_BOOLEAN:     store.TypeBoolean,
	apiv1.ValueType_VALUE_TYPE_FILE_PATH:   store.TypeFilePath,
}

func valueTypeToProto(t string) apiv1.ValueType {
	for k, v := range valueTypes {
		if v == t && k != apiv1.ValueType_VALUE_TYPE_UNSPECIFIED {
			return k
		}
	}
	return apiv1.ValueType_VALUE_TYPE_STRING
}

func scopeFromProto(s apiv1.ConfigScope) string {
	if s == apiv1.ConfigScope_CONFIG_SCOPE_USER {
		return store.ScopeUserField
	}
	return store.ScopeTeamField
}

func scopeToProto(s string) apiv1.ConfigScope {
	if s == store.ScopeUserField {
		return apiv1.ConfigScope_CONFIG_SCOPE_USER
	}
	return apiv1.ConfigScope_CONFIG_SCOPE_TEAM
}

// settingsFromProto reads request values; a secret without a value asks to keep the stored one.
func settingsFromProto(m map[string]*apiv1.SettingValue) store.Settings {
	out := make(store.Settings, len(m))
	for name, v := range m {
		out[name] = store.Setting{Value: v.GetValue(), Secret: v.GetSecret()}
	}
	return out
}

// settingsToProto writes stored values for a response. The store masks secrets already; the value is
// cleared here as well, so no code path can return one.
func settingsToProto(s store.Settings) map[string]*apiv1.SettingValue {
	out := make(map[string]*apiv1.SettingValue, len(s))
	for name, v := range s {
		pv := &apiv1.SettingValue{Value: v.Value, Secret: v.Secret, Set: true}
		if v.Secret {
			pv.Value = ""
		}
		out[name] = pv
	}
	return out
}

func fieldsFromProto(fields []*apiv1.ConfigField) []store.ConfigField {
	out := make([]store.ConfigField, len(fields))
	for i, f := range fields {
		out[i] = store.ConfigField{
			Name: f.Name, Description: f.Description, Scope: scopeFromProto(f.Scope), Required: f.Required,
			Secret: f.Secret, Type: valueTypes[f.Type], Default: f.DefaultValue, Choices: f.Choices, Flag: f.Flag,
		}
	}
	return out
}

func fieldsToProto(fields []store.ConfigField) []*apiv1.ConfigField {
	out := make([]*apiv1.ConfigField, len(fields))
	for i, f := range fields {
		out[i] = &apiv1.ConfigField{
			Name: f.Name, Description: f.Description, Scope: scopeToProto(f.Scope), Required: f.Required,
			Secret: f.Secret, Type: valueTypeToProto(f.Type), DefaultValue: f.Default, Choices: f.Choices, Flag: f.Flag,
		}
	}
	return out
}

func schemaFromProto(s *apiv1.ConfigSchema) store.ConfigSchema {
	return store.ConfigSchema{
		Args: fieldsFromProto(s.GetArgs()), Env: fieldsFromProto(s.GetEnv()), Headers: fieldsFromProto(s.GetHeaders()),
		QueryParams: fieldsFromProto(s.GetQueryParams()),
	}
}

func schemaToProto(s store.ConfigSchema) *apiv1.ConfigSchema {
	return &apiv1.ConfigSchema{
		Args: fieldsToProto(s.Args), Env: fieldsToProto(s.Env), Headers: fieldsToProto(s.Headers),
		QueryParams: fieldsToProto(s.QueryParams),
	}
}

func specFromProto(s *apiv1.CatalogEntrySpec) store.CatalogEntry {
	return store.CatalogEntry{
		Name: s.Name, Description: s.Description, Tags: s.Tags, Transport: transports[s.Transport],
		Command: s.Command, Args: s.Args, Env: settingsFromProto(s.Env), URL: s.Url,
		Headers: settingsFromProto(s.Headers), QueryParams: settingsFromProto(s.QueryParams),
		ConfigSchema: schemaFromProto(s.ConfigSchema), Sandbox: sandboxFromProto(s.Sandbox),
		Source: sourceFromProto(s.Source), PerUserAuthorization: s.PerUserAuthorization,
	}
}

// sandboxFromProto encodes a template's sandbox settings for storage; the satellite protocol carries the
// same message, so no translation is needed on the way out.
func sandboxFromProto(s *satellitev1.Sandbox) json.RawMessage {
	if s == nil {
		return nil
	}
	raw, _ := protojson.Marshal(s) // a valid message always encodes
	return raw
}

func sandboxToProto(raw json.RawMessage) *satellitev1.Sandbox {
	if len(raw) == 0 || string(raw) == "{}" {
		return nil
	}
	s := new(satellitev1.Sandbox)
	if err := protojson.Unmarshal(raw, s); err != nil {
		return nil // stored by sandboxFromProto, so it decodes
	}
	return s
}

// sourceFromProto encodes a template's source archive for storage, as sandboxFromProto does its sandbox.
func sourceFromProto(s *satellitev1.Source) json.RawMessage {
	if s == nil {
		return nil
	}
	raw, _ := protojson.Marshal(s)
	return raw
}

func sourceToProto(raw json.RawMessage) *satellitev1.Source {
	if len(raw) == 0 || string(raw) == "{}" {
		return nil
	}
	s := new(satellitev1.Source)
	if err := protojson.Unmarshal(raw, s); err != nil {
		return nil // stored by sourceFromProto, so it decodes
	}
	return s
}

func entryToProto(e store.CatalogEntry) *apiv1.CatalogEntry {
	out := &apiv1.CatalogEntry{
		Id: e.ID.String(), Slug: e.Slug,
		Spec: &apiv1.CatalogEntrySpec{
			Name: e.Name, Description: e.Description, Tags: e.Tags, Transport: transportToProto(e.Transport),
			Command: e.Command, Args: e.Args, Env: settingsToProto(e.Env), Url: e.URL,
			Headers: settingsToProto(e.Headers), QueryParams: settingsToProto(e.QueryParams),
			ConfigSchema: schemaToProto(e.ConfigSchema), Sandbox: sandboxToProto(e.Sandbox),
			Source: sourceToProto(e.Source), PerUserAuthorization: e.PerUserAuthorization,
		},
		CreatedAt: timestamppb.New(e.CreatedAt), UpdatedAt: timestamppb.New(e.UpdatedAt),
	}
	if e.TeamID != nil {
		out.TeamId = e.TeamID.String()
	}
	out.Stop = stopToProto(e.Stop)
	return out
}

func stopToProto(s *store.Stop) *apiv1.EmergencyStop {
	if s == nil {
		return nil
	}
	scope := apiv1.EmergencyStopScope_EMERGENCY_STOP_SCOPE_INSTALLATION
	if s.Scope == store.StopScopeTemplate {
		scope = apiv1.EmergencyStopScope_EMERGENCY_STOP_SCOPE_TEMPLATE
	}
	return &apiv1.EmergencyStop{Scope: scope, Reason: s.Reason, StoppedAt: timestamppb.New(s.At)}
}

func installationToProto(in store.Installation) *apiv1.Installation {
	return &apiv1.Installation{
		Stop: stopToProto(in.Stop),
		Id:   in.ID.String(), TeamId: in.TeamID.String(), CatalogEntryId: in.CatalogEntryID.String(),
		ServerSlug: in.ServerSlug, EffectiveToolPrefix: in.EffectiveToolPrefix(),
		Spec: &apiv1.InstallationSpec{
			Name: in.Name, Args: in.Args, ArgValues: settingsToProto(in.ArgValues), Env: settingsToProto(in.Env),
			Headers: settingsToProto(in.Headers), QueryParams: settingsToProto(in.QueryParams),
			RequestLoggingEnabled: &in.RequestLoggingEnabled, ToolPrefix: in.ToolPrefix,
		},
		CreatedAt: timestamppb.New(in.CreatedAt), UpdatedAt: timestamppb.New(in.UpdatedAt),
	}
}

func userConfigurationToProto(uc store.UserConfiguration) *apiv1.UserConfiguration {
	out := &apiv1.UserConfiguration{
		InstallationId: uc.InstallationID.String(), UserId: uc.UserID.String(),
		ArgValues: settingsToProto(uc.ArgValues), Env: settingsToProto(uc.Env), Headers: settingsToProto(uc.Headers),
		QueryParams: settingsToProto(uc.QueryParams),
	}
	if !uc.UpdatedAt.IsZero() {
		out.UpdatedAt = timestamppb.New(uc.UpdatedAt)
	}
	return out
}
