package cli

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"

	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
)

// valueFlags are the ways a command takes an installation's or a user's values: --set NAME=VALUE,
// --secret NAME (the value read from a prompt or stdin, never from the command line), and --values FILE.
type valueFlags struct {
	set     []string
	secrets []string
	file    string
}

// settings are values by kind (env, headers, query_params, args) and name.
type settings map[string]map[string]*apiv1.SettingValue

func (s settings) put(kind, name string, v *apiv1.SettingValue) {
	if s[kind] == nil {
		s[kind] = map[string]*apiv1.SettingValue{}
	}
	s[kind][name] = v
}

func (s settings) has(kind, name string) bool { _, ok := s[kind][name]; return ok }

var kinds = []string{"env", "headers", "query_params", "args"}

// resolveName splits "kind.NAME" or finds a bare NAME among the fields the schema declares for scope.
func resolveName(ref string, fields []field, scope apiv1.ConfigScope) (string, string, error) {
	if kind, name, ok := strings.Cut(ref, "."); ok {
		for _, k := range kinds {
			if k == kind && name != "" {
				return kind, name, nil
			}
		}
	}
	for _, f := range fields {
		if f.GetName() == ref && f.GetScope() == scope {
			return f.kind, f.GetName(), nil
		}
	}
	return "", "", usageError{fmt.Errorf("the template declares no %s value %q: name it as env.%s, headers.%s, query_params.%s or args.%s",
		enumName(scope.String(), "CONFIG_SCOPE_"), ref, ref, ref, ref, ref)}
}

// collect gathers the values of the flags, then prompts for required ones still missing when someone is at
// the terminal. Secrets are read without echo from the terminal, or one line each from stdin.
func (a *App) collect(vf valueFlags, fields []field, scope apiv1.ConfigScope, base settings) (settings, error) {
	out := base
	if out == nil {
		out = settings{}
	}
	for _, kv := range vf.set {
		ref, value, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, usageError{fmt.Errorf("--set %q: want NAME=VALUE", kv)}
		}
		kind, name, err := resolveName(ref, fields, scope)
		if err != nil {
			return nil, err
		}
		for _, f := range fields {
			if f.kind == kind && f.GetName() == name && f.GetSecret() {
				return nil, usageError{fmt.Errorf("%s.%s is secret: pass it with --secret %s, which reads it from a prompt or stdin rather than the command line", kind, name, name)}
			}
		}
		out.put(kind, name, &apiv1.SettingValue{Value: value})
	}
	for _, ref := range vf.secrets {
		kind, name, err := resolveName(ref, fields, scope)
		if err != nil {
			return nil, err
		}
		var value string
		if a.Interactive && !a.noInput {
			if value, err = a.prompt(kind+"."+name, true); err != nil {
				return nil, err
			}
		} else {
			line, err := a.stdin().ReadString('\n')
			if err != nil && (!errors.Is(err, io.EOF) || line == "") {
				return nil, usageError{fmt.Errorf("--secret %s: no line for it on stdin (one line per --secret, in order)", ref)}
			}
			value = strings.TrimRight(line, "\r\n")
		}
		out.put(kind, name, &apiv1.SettingValue{Value: value, Secret: true})
	}
	var missing []string
	for _, f := range fields {
		if f.GetScope() != scope || !f.GetRequired() || f.GetDefaultValue() != "" || out.has(f.kind, f.GetName()) {
			continue
		}
		if !a.Interactive || a.noInput {
			hint := "--set " + f.GetName() + "=VALUE"
			if f.GetSecret() {
				hint = "--secret " + f.GetName()
			}
			missing = append(missing, f.kind+"."+f.GetName()+" ("+hint+")")
			continue
		}
		label := f.kind + "." + f.GetName()
		if d := f.GetDescription(); d != "" {
			label += " – " + d
		}
		value, err := a.prompt(label, f.GetSecret())
		if err != nil {
			return nil, err
		}
		out.put(f.kind, f.GetName(), &apiv1.SettingValue{Value: value, Secret: f.GetSecret()})
	}
	if len(missing) > 0 {
		return nil, usageError{fmt.Errorf("missing required values: %s", strings.Join(missing, ", "))}
	}
	return out, nil
}

// prompt asks for one value on the terminal, without echo when secret.
func (a *App) prompt(label string, secret bool) (string, error) {
	fmt.Fprintf(a.Err, "%s: ", label)
	if f, ok := a.In.(*os.File); ok && secret && term.IsTerminal(int(f.Fd())) {
		raw, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(a.Err)
		return string(raw), err
	}
	line, err := a.stdin().ReadString('\n')
	if err != nil && line == "" {
		return "", fmt.Errorf("read %s: %w", label, err)
	}
	return strings.TrimRight(line, "\r\n"), nil
}

// stdin is the one buffered reader of a.In, so values read one after another each get their own line.
func (a *App) stdin() *bufio.Reader {
	if a.stdinReader == nil {
		a.stdinReader = bufio.NewReader(io.LimitReader(a.In, maxFileBytes))
	}
	return a.stdinReader
}

// applyTo writes the settings into an installation spec.
func (s settings) applyTo(spec *apiv1.InstallationSpec) {
	target := map[string]*map[string]*apiv1.SettingValue{
		"env": &spec.Env, "headers": &spec.Headers, "query_params": &spec.QueryParams, "args": &spec.ArgValues,
	}
	for kind, values := range s {
		m := target[kind]
		if *m == nil {
			*m = map[string]*apiv1.SettingValue{}
		}
		for name, v := range values {
			(*m)[name] = v
		}
	}
}

// settingsOf reads the settings of a spec, so a file's values and the flags' combine.
func settingsOf(spec *apiv1.InstallationSpec) settings {
	out := settings{}
	for kind, m := range map[string]map[string]*apiv1.SettingValue{
		"env": spec.GetEnv(), "headers": spec.GetHeaders(), "query_params": spec.GetQueryParams(), "args": spec.GetArgValues(),
	} {
		for name, v := range m {
			out.put(kind, name, v)
		}
	}
	return out
}
