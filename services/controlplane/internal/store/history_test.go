package store

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

func TestDiffSnapshotsNeverShowsSecrets(t *testing.T) {
	t.Parallel()
	snap := func(name string, env map[string]storedSetting) []byte {
		rawEnv, err := json.Marshal(env)
		if err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(map[string]any{"name": name, "env": json.RawMessage(rawEnv), "args": []string{"a"}})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	old := snap("files", map[string]storedSetting{
		"PLAIN":   {Value: "one"},
		"GONE":    {Value: "bye"},
		"TOKEN":   {Sealed: "sealed-token-1", Secret: true},
		"KEPT":    {Sealed: "sealed-kept", Secret: true},
		"DEMOTED": {Sealed: "sealed-demoted", Secret: true},
	})
	new := snap("files", map[string]storedSetting{
		"PLAIN":   {Value: "two"},
		"ADDED":   {Value: "hi"},
		"TOKEN":   {Sealed: "sealed-token-2", Secret: true},
		"KEPT":    {Sealed: "sealed-kept", Secret: true},
		"DEMOTED": {Value: "now-plain"},
	})
	for _, tc := range []struct {
		name     string
		old, new []byte
		want     []Change
	}{
		{"first version lists every field", nil, snap("files", map[string]storedSetting{"TOKEN": {Sealed: "s", Secret: true}}), []Change{
			{Field: "args", New: json.RawMessage(`["a"]`)},
			{Field: "env.TOKEN", Secret: true},
			{Field: "name", New: json.RawMessage(`"files"`)},
		}},
		{"changes name by name", old, new, []Change{
			{Field: "env.ADDED", New: json.RawMessage(`"hi"`)},
			{Field: "env.DEMOTED", Secret: true},
			{Field: "env.GONE", Old: json.RawMessage(`"bye"`)},
			{Field: "env.PLAIN", Old: json.RawMessage(`"one"`), New: json.RawMessage(`"two"`)},
			{Field: "env.TOKEN", Secret: true},
		}},
		{"nothing changed", old, old, []Change{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := diffSnapshots(tc.old, tc.new)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.EqualFunc(got, tc.want, func(a, b Change) bool {
				return a.Field == b.Field && string(a.Old) == string(b.Old) && string(a.New) == string(b.New) && a.Secret == b.Secret
			}) {
				t.Fatalf("diff:\n got %+v\nwant %+v", got, tc.want)
			}
			raw, _ := json.Marshal(got)
			if strings.Contains(string(raw), "sealed") || strings.Contains(string(raw), "now-plain") {
				t.Fatalf("a secret's value, sealed or not, in the diff: %s", raw)
			}
		})
	}
}
