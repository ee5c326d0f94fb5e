package catalogapi

import (
	"slices"
	"strings"

	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// The audit log names the secrets a change sets or removes as kind.name (env.API_TOKEN), sorted and
// comma-separated; never their values.

// byKind is a configuration level's settings by kind.
func byKind(v store.Values) map[string]store.Settings {
	return map[string]store.Settings{"arg_values": v.ArgValues, "env": v.Env, "headers": v.Headers, "query_params": v.QueryParams}
}

// setSecrets names the secrets a request sets.
func setSecrets(request store.Values) string {
	return names(byKind(request), func(_, _ string, v store.Setting) bool { return v.Secret && v.Value != "" })
}

// removedSecrets names the secrets stored before a change and not after it; both are masked settings.
func removedSecrets(before, after store.Values) string {
	kept := byKind(after)
	return names(byKind(before), func(kind, name string, v store.Setting) bool { return v.Secret && !kept[kind][name].Secret })
}

func names(kinds map[string]store.Settings, keep func(kind, name string, v store.Setting) bool) string {
	var out []string
	for kind, settings := range kinds {
		for name, v := range settings {
			if keep(kind, name, v) {
				out = append(out, kind+"."+name)
			}
		}
	}
	slices.Sort(out)
	return strings.Join(out, ",")
}
