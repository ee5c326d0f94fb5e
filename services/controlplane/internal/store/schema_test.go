package store

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

var testSchema = ConfigSchema{
	Args: []ConfigField{
		{Name: "root", Flag: "--root", Scope: ScopeTeamField, Default: "/srv"},
		{Name: "verbose", Flag: "--verbose", Scope: ScopeUserField, Type: TypeBoolean},
		{Name: "profile", Scope: ScopeUserField},
	},
	Env: []ConfigField{
		{Name: "API_URL", Scope: ScopeTeamField, Required: true},
		{Name: "LIMIT", Scope: ScopeTeamField, Type: TypeNumber},
		{Name: "MODE", Scope: ScopeTeamField, Choices: []string{"fast", "safe"}},
		{Name: "TOKEN", Scope: ScopeUserField, Required: true, Secret: true},
	},
}

func TestCheckLevel(t *testing.T) {
	t.Parallel()
	none := func(string, string) bool { return false }
	team := func(env Settings) Values { return Values{Env: env} }
	for _, tc := range []struct {
		name  string
		scope string
		v     Values
		lower []Values
		has   func(string, string) bool
		want  string // the field named by the error; "" for none
	}{
		{"team ok", ScopeTeamField, team(Settings{"API_URL": {Value: "u"}, "EXTRA": {Value: "x"}}), nil, none, ""},
		{"team missing required", ScopeTeamField, team(Settings{}), nil, none, "env.API_URL"},
		{"template sets required", ScopeTeamField, team(Settings{}), []Values{{Env: Settings{"API_URL": {Value: "u"}}}}, none, ""},
		{"number", ScopeTeamField, team(Settings{"API_URL": {Value: "u"}, "LIMIT": {Value: "ten"}}), nil, none, "env.LIMIT"},
		{"choices", ScopeTeamField, team(Settings{"API_URL": {Value: "u"}, "MODE": {Value: "yolo"}}), nil, none, "env.MODE"},
		{"undeclared argument", ScopeTeamField, Values{ArgValues: Settings{"x": {Value: "1"}}, Env: Settings{"API_URL": {Value: "u"}}}, nil, none, "arg_values.x"},
		{"user ok", ScopeUserField, team(Settings{"TOKEN": {Value: "t"}}), nil, none, ""},
		{"user missing required", ScopeUserField, team(Settings{}), nil, none, "env.TOKEN"},
		{"user keeps stored secret", ScopeUserField, team(Settings{"TOKEN": {}}), nil, func(k, n string) bool { return k == "env" && n == "TOKEN" }, ""},
		{"team default for users", ScopeUserField, team(Settings{}), []Values{{Env: Settings{"TOKEN": {Secret: true}}}}, none, ""},
		{"user sets team field", ScopeUserField, team(Settings{"TOKEN": {Value: "t"}, "API_URL": {Value: "u"}}), nil, none, "env.API_URL"},
		{"user sets undeclared", ScopeUserField, team(Settings{"TOKEN": {Value: "t"}, "LD_PRELOAD": {Value: "x"}}), nil, none, "env.LD_PRELOAD"},
		{"boolean", ScopeUserField, Values{ArgValues: Settings{"verbose": {Value: "yes"}}, Env: Settings{"TOKEN": {Value: "t"}}}, nil, none, "arg_values.verbose"},
	} {
		err := testSchema.checkLevel(tc.scope, tc.v, tc.lower, tc.has)
		var fe *FieldError
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (!errors.As(err, &fe) || fe.Field != tc.want || !errors.Is(err, ErrInvalid)):
			t.Errorf("%s: got %v, want an error naming %s", tc.name, err, tc.want)
		}
	}
}

func TestCheckLevelMarksSchemaSecrets(t *testing.T) {
	t.Parallel()
	v := Values{Env: Settings{"TOKEN": {Value: "t"}}}
	if err := testSchema.checkLevel(ScopeUserField, v, nil, func(string, string) bool { return false }); err != nil {
		t.Fatal(err)
	}
	if !v.Env["TOKEN"].Secret {
		t.Fatal("a value of a secret field stays plain")
	}
}

func TestRenderArgs(t *testing.T) {
	t.Parallel()
	got := testSchema.renderArgs(map[string]string{"profile": "team-default"}, map[string]string{"verbose": "true"})
	if want := []string{"--root", "/srv", "--verbose", "team-default"}; !slices.Equal(got, want) {
		t.Errorf("args %q, want %q", got, want)
	}
	got = testSchema.renderArgs(map[string]string{"root": "/data"}, map[string]string{"verbose": "false", "profile": "mine"})
	if strings.Join(got, " ") != "--root /data mine" {
		t.Errorf("args %q", got)
	}
}

func TestSchemaCheck(t *testing.T) {
	t.Parallel()
	for name, cs := range map[string]ConfigSchema{
		"duplicate":   {Env: []ConfigField{{Name: "A", Scope: ScopeTeamField}, {Name: "A", Scope: ScopeUserField}}},
		"bad default": {Env: []ConfigField{{Name: "A", Scope: ScopeTeamField, Type: TypeNumber, Default: "x"}}},
		"no scope":    {Headers: []ConfigField{{Name: "A"}}},
	} {
		if err := cs.Check(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: got %v, want ErrInvalid", name, err)
		}
	}
}
