package serverjson_test

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/orrery/orrery/services/controlplane/internal/serverjson"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

func weather(t *testing.T) []byte {
	t.Helper()
	data, err := os.ReadFile("testdata/weather.server.json")
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func field(t *testing.T, fields []store.ConfigField, name string) store.ConfigField {
	t.Helper()
	for _, f := range fields {
		if f.Name == name {
			return f
		}
	}
	t.Fatalf("no field %q among %+v", name, fields)
	return store.ConfigField{}
}

func TestParseNPMPackage(t *testing.T) {
	t.Parallel()
	e, err := serverjson.Parse(weather(t), serverjson.Options{UserFields: []string{"WEATHER_API_KEY"}})
	if err != nil {
		t.Fatal(err)
	}
	if e.Slug != "weather-mcp" || e.Name != "Weather" || e.Transport != "stdio" || e.Command != "npx" {
		t.Errorf("slug %q name %q transport %q command %q", e.Slug, e.Name, e.Transport, e.Command)
	}
	if got, want := strings.Join(e.Args, " "), "-y @example/weather-mcp@1.4.2 --read-only"; got != want {
		t.Errorf("args %q, want %q", got, want)
	}
	if e.Env["LOG_FORMAT"].Value != "json" {
		t.Errorf("fixed env %v: want LOG_FORMAT=json in the template", e.Env)
	}
	key := field(t, e.ConfigSchema.Env, "WEATHER_API_KEY")
	if key.Scope != store.ScopeUserField || !key.Required || !key.Secret {
		t.Errorf("WEATHER_API_KEY %+v: want a required secret each user sets", key)
	}
	if region := field(t, e.ConfigSchema.Env, "WEATHER_REGION"); region.Scope != store.ScopeTeamField || region.Default != "us-east" {
		t.Errorf("WEATHER_REGION %+v: want a team field defaulting to us-east", region)
	}
	if max := field(t, e.ConfigSchema.Env, "WEATHER_MAX_RESULTS"); max.Type != store.TypeNumber {
		t.Errorf("WEATHER_MAX_RESULTS type %q, want number", max.Type)
	}
	units := field(t, e.ConfigSchema.Args, "units")
	if units.Flag != "--units" || units.Default != "metric" || !slices.Equal(units.Choices, []string{"metric", "imperial"}) {
		t.Errorf("units %+v", units)
	}
	if dir := field(t, e.ConfigSchema.Args, "cache_dir"); dir.Flag != "" || !dir.Required || dir.Type != store.TypeFilePath {
		t.Errorf("cache_dir %+v: want a required positional path", dir)
	}
	if err := e.ConfigSchema.Check(); err != nil {
		t.Errorf("imported schema does not check: %v", err)
	}
}

func TestParseRemote(t *testing.T) {
	t.Parallel()
	e, err := serverjson.Parse(weather(t), serverjson.Options{Slug: "weather-remote", PreferRemote: true})
	if err != nil {
		t.Fatal(err)
	}
	if e.Slug != "weather-remote" || e.Transport != "http" || e.URL != "https://weather.example.com/mcp" {
		t.Errorf("slug %q transport %q url %q", e.Slug, e.Transport, e.URL)
	}
	if e.Headers["X-Client"].Value != "orrery" {
		t.Errorf("fixed headers %v", e.Headers)
	}
	auth := field(t, e.ConfigSchema.Headers, "Authorization")
	if !auth.Secret || !auth.Required || auth.Scope != store.ScopeTeamField || !strings.Contains(auth.Description, "Bearer {api_key}") {
		t.Errorf("Authorization %+v", auth)
	}
}

func TestParseRefusesWhatItCannotRun(t *testing.T) {
	t.Parallel()
	for name, doc := range map[string]string{
		"not json":      `{`,
		"no name":       `{"packages": [{"registryType": "npm", "identifier": "x", "transport": {"type": "stdio"}}]}`,
		"nuget":         `{"name": "a/b", "packages": [{"registryType": "nuget", "identifier": "x", "transport": {"type": "stdio"}}]}`,
		"nothing":       `{"name": "a/b"}`,
		"templated url": `{"name": "a/b", "remotes": [{"type": "sse", "url": "https://{tenant}.example.com/sse"}]}`,
	} {
		if _, err := serverjson.Parse([]byte(doc), serverjson.Options{}); err == nil {
			t.Errorf("%s: imported", name)
		}
	}
}
