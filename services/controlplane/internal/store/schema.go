package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
)

// Scopes of a configuration field: who gives it its value.
const (
	ScopeTeamField = "team"
	ScopeUserField = "user"
)

// Types of a configuration field's value.
const (
	TypeString   = "string"
	TypeNumber   = "number"
	TypeBoolean  = "boolean"
	TypeFilePath = "file_path"
)

// ErrInvalid reports a value that does not fit a template's schema. It comes wrapped in a *FieldError.
var ErrInvalid = errors.New("invalid value")

// FieldError names the field whose value does not fit the schema, as "env.API_KEY".
type FieldError struct {
	Field   string
	Problem string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Problem }

// Unwrap makes a FieldError match ErrInvalid.
func (e *FieldError) Unwrap() error { return ErrInvalid }

// ConfigField declares one value a team or a user gives an installation.
type ConfigField struct {
	Name        string   `json:"name"`
	Description string   `json:"description,omitempty"`
	Scope       string   `json:"scope"`
	Required    bool     `json:"required,omitempty"`
	Secret      bool     `json:"secret,omitempty"`
	Type        string   `json:"type,omitempty"`
	Default     string   `json:"default,omitempty"`
	Choices     []string `json:"choices,omitempty"`
	// Flag, for arguments, is written before the value; empty makes the argument positional.
	Flag string `json:"flag,omitempty"`
}

// ConfigSchema says which values a template needs from teams and users. It is stored as catalog_entries.config_schema.
type ConfigSchema struct {
	Args        []ConfigField `json:"args,omitempty"`
	Env         []ConfigField `json:"env,omitempty"`
	Headers     []ConfigField `json:"headers,omitempty"`
	QueryParams []ConfigField `json:"query_params,omitempty"`
}

// Values are the named values of one configuration level.
type Values struct {
	ArgValues   Settings
	Env         Settings
	Headers     Settings
	QueryParams Settings
}

func decodeSchema(raw []byte) (ConfigSchema, error) {
	var cs ConfigSchema
	if len(raw) == 0 {
		return cs, nil
	}
	if err := json.Unmarshal(raw, &cs); err != nil {
		return cs, fmt.Errorf("decode config schema: %w", err)
	}
	return cs, nil
}

// Check reports the first problem of the schema itself: duplicate names or defaults that do not fit.
func (cs ConfigSchema) Check() error {
	for _, kind := range cs.kinds() {
		seen := map[string]bool{}
		for _, f := range kind.fields {
			path := "config_schema." + kind.name + "." + f.Name
			if seen[f.Name] {
				return &FieldError{path, "declared twice"}
			}
			seen[f.Name] = true
			if f.Scope != ScopeTeamField && f.Scope != ScopeUserField {
				return &FieldError{path, "scope must be team or user"}
			}
			if f.Default != "" {
				if err := f.checkValue(path+".default", f.Default); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

type schemaKind struct {
	name   string
	fields []ConfigField
}

func (cs ConfigSchema) kinds() []schemaKind {
	return []schemaKind{{"arg_values", cs.Args}, {"env", cs.Env}, {"headers", cs.Headers}, {"query_params", cs.QueryParams}}
}

func (v Values) byKind() []Settings { return []Settings{v.ArgValues, v.Env, v.Headers, v.QueryParams} }

// checkLevel checks one level's values against the schema and marks the values of secret fields secret.
// scope is the level: the team may set its own fields, users' fields (as the members' default) and, except
// for arguments, names the schema does not declare; a user may set only user fields. has reports a secret
// kept from before; lower are the levels below (the template, and for a user the team's installation), whose
// values satisfy a required field too. Required user fields are checked only at the user level, since the
// team cannot know them.
func (cs ConfigSchema) checkLevel(scope string, v Values, lower []Values, has func(kind, name string) bool) error {
	for i, kind := range cs.kinds() {
		values := v.byKind()[i]
		declared := map[string]ConfigField{}
		for _, f := range kind.fields {
			declared[f.Name] = f
		}
		names := make([]string, 0, len(values))
		for name := range values {
			names = append(names, name)
		}
		slices.Sort(names) // the first problem is the same on every call
		for _, name := range names {
			path := kind.name + "." + name
			f, ok := declared[name]
			switch {
			case !ok && (scope == ScopeUserField || kind.name == "arg_values"):
				return &FieldError{path, "the template's schema does not declare it"}
			case ok && scope == ScopeUserField && f.Scope == ScopeTeamField:
				return &FieldError{path, "set by the team's admins, not by each user"}
			case !ok:
				continue
			}
			value := values[name]
			if f.Secret && !value.Secret {
				value.Secret = true
				values[name] = value
			}
			if value.Value != "" {
				if err := f.checkValue(path, value.Value); err != nil {
					return err
				}
			}
		}
		for _, f := range kind.fields {
			if !f.Required || f.Scope != scope || f.Default != "" {
				continue
			}
			if value, ok := values[f.Name]; ok && (value.Value != "" || value.Secret && has(kind.name, f.Name)) {
				continue
			}
			if setBelow(lower, i, f.Name) {
				continue
			}
			return &FieldError{kind.name + "." + f.Name, "required"}
		}
	}
	return nil
}

// setBelow reports whether a lower level sets the field of the i-th kind; their secrets come masked, so a
// secret counts as set.
func setBelow(lower []Values, i int, name string) bool {
	for _, l := range lower {
		if v, ok := l.byKind()[i][name]; ok && (v.Value != "" || v.Secret) {
			return true
		}
	}
	return false
}

// checkValue checks a value's type and choices.
func (f ConfigField) checkValue(path, value string) error {
	switch f.Type {
	case TypeNumber:
		if _, err := strconv.ParseFloat(value, 64); err != nil {
			return &FieldError{path, "must be a number"}
		}
	case TypeBoolean:
		if value != "true" && value != "false" {
			return &FieldError{path, `must be "true" or "false"`}
		}
	}
	if len(f.Choices) > 0 && !slices.Contains(f.Choices, value) {
		return &FieldError{path, fmt.Sprintf("must be one of %q", f.Choices)}
	}
	return nil
}

// renderArgs writes the schema's arguments with the team's and the user's values, in schema order.
func (cs ConfigSchema) renderArgs(team, user map[string]string) []string {
	var args []string
	for _, f := range cs.Args {
		values := team
		if f.Scope == ScopeUserField {
			values = user
		}
		v, ok := values[f.Name]
		if !ok && f.Scope == ScopeUserField {
			v, ok = team[f.Name] // the team's default for its members
		}
		if !ok {
			v = f.Default
		}
		switch {
		case v == "":
		case f.Flag == "":
			args = append(args, v)
		case f.Type == TypeBoolean:
			if v == "true" {
				args = append(args, f.Flag)
			}
		default:
			args = append(args, f.Flag, v)
		}
	}
	return args
}

// markSecrets makes secret the values of the fields the schema declares secret.
func (cs ConfigSchema) markSecrets(v Values) {
	for i, kind := range cs.kinds() {
		values := v.byKind()[i]
		for _, f := range kind.fields {
			if s, ok := values[f.Name]; ok && f.Secret {
				s.Secret = true
				values[f.Name] = s
			}
		}
	}
}
