// Package serverjson reads server.json, the document that describes an MCP server in the official MCP
// registry (https://github.com/modelcontextprotocol/registry), into a catalog template. Nothing is
// fetched: the document is the whole input.
//
// A stdio package becomes a command: npm packages run with "npx -y name@version", PyPI packages with
// "uvx name==version" and OCI images with "docker run -i --rm"; a remote becomes an http (streamable-http)
// or sse template. Inputs with a fixed value are written into the template; inputs people must fill in
// (environment variables, headers, arguments without a value, or with {variables} in it) become fields of
// its schema, with their required and secret flags, type, default and choices.
package serverjson

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// Options tune an import.
type Options struct {
	// Slug overrides the slug made from the server's name.
	Slug string
	// UserFields names the inputs each user sets; every other input is set by the team.
	UserFields []string
	// PreferRemote picks the first remote over the packages when the document has both.
	PreferRemote bool
}

type document struct {
	Name        string      `json:"name"`
	Title       string      `json:"title"`
	Description string      `json:"description"`
	Version     string      `json:"version"`
	Packages    []pkg       `json:"packages"`
	Remotes     []transport `json:"remotes"`
}

type input struct {
	Description string   `json:"description"`
	IsRequired  bool     `json:"isRequired"`
	IsSecret    bool     `json:"isSecret"`
	Format      string   `json:"format"`
	Value       string   `json:"value"`
	Default     string   `json:"default"`
	Choices     []string `json:"choices"`
}

type keyValue struct {
	input
	Name string `json:"name"`
}

type argument struct {
	input
	Type      string `json:"type"`
	Name      string `json:"name"`
	ValueHint string `json:"valueHint"`
}

type transport struct {
	Type    string     `json:"type"`
	URL     string     `json:"url"`
	Headers []keyValue `json:"headers"`
}

type pkg struct {
	RegistryType         string     `json:"registryType"`
	Identifier           string     `json:"identifier"`
	Version              string     `json:"version"`
	RuntimeHint          string     `json:"runtimeHint"`
	Transport            transport  `json:"transport"`
	RuntimeArguments     []argument `json:"runtimeArguments"`
	PackageArguments     []argument `json:"packageArguments"`
	EnvironmentVariables []keyValue `json:"environmentVariables"`
}

var (
	slugPattern   = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	slugDisallows = regexp.MustCompile(`[^a-z0-9_-]+`)
)

// Parse turns a server.json document into a template. Errors describe what in the document is missing or
// unsupported.
func Parse(data []byte, opts Options) (store.CatalogEntry, error) {
	var doc document
	if err := json.Unmarshal(data, &doc); err != nil {
		return store.CatalogEntry{}, fmt.Errorf("server_json: not a server.json document: %w", err)
	}
	if doc.Name == "" {
		return store.CatalogEntry{}, errors.New("server_json: name is required")
	}
	c := converter{user: opts.UserFields}
	c.e = store.CatalogEntry{
		Slug: opts.Slug, Name: cmpOr(doc.Title, doc.Name), Description: doc.Description,
		Env: store.Settings{}, Headers: store.Settings{}, QueryParams: store.Settings{},
	}
	if c.e.Slug == "" {
		c.e.Slug = slugOf(doc.Name)
	}
	if !slugPattern.MatchString(c.e.Slug) {
		return store.CatalogEntry{}, fmt.Errorf("server_json: cannot make a slug of name %q; pass one", doc.Name)
	}
	var stdio *pkg
	for i := range doc.Packages {
		if t := doc.Packages[i].Transport.Type; t == "" || t == "stdio" {
			stdio = &doc.Packages[i]
			break
		}
	}
	var err error
	switch {
	case len(doc.Remotes) > 0 && (opts.PreferRemote || stdio == nil):
		err = c.remote(doc.Remotes[0])
	case stdio != nil:
		err = c.pkg(*stdio)
	default:
		err = errors.New("server_json: neither a stdio package nor a remote; nothing a satellite can run")
	}
	if err != nil {
		return store.CatalogEntry{}, err
	}
	return c.e, nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// slugOf makes a slug of a registry name such as "io.github.owner/weather-server": its last part.
func slugOf(name string) string {
	if i := strings.LastIndex(name, "/"); i >= 0 {
		name = name[i+1:]
	}
	s := strings.Trim(slugDisallows.ReplaceAllString(strings.ToLower(name), "-"), "-_")
	if len(s) > 63 {
		s = strings.TrimRight(s[:63], "-_")
	}
	return s
}

type converter struct {
	e    store.CatalogEntry
	user []string
}

func (c *converter) field(name string, in input) store.ConfigField {
	f := store.ConfigField{
		Name: name, Description: in.Description, Scope: store.ScopeTeamField, Required: in.IsRequired,
		Secret: in.IsSecret, Type: store.TypeString, Default: in.Default, Choices: in.Choices,
	}
	if slices.Contains(c.user, name) {
		f.Scope = store.ScopeUserField
	}
	switch in.Format {
	case "number":
		f.Type = store.TypeNumber
	case "boolean":
		f.Type = store.TypeBoolean
	case "filepath", "file_path":
		f.Type = store.TypeFilePath
	}
	if in.Value != "" {
		// A value with {variables} is a template for the person filling it in.
		f.Description = strings.TrimSpace(f.Description + " (format: " + in.Value + ")")
	}
	return f
}

// fixed reports whether an input's value is complete as written: set, not secret, and without {variables}.
func fixed(in input) bool {
	return in.Value != "" && !in.IsSecret && !strings.Contains(in.Value, "{")
}

// keyValues puts fixed values into settings and the rest into schema fields.
func (c *converter) keyValues(kvs []keyValue, settings store.Settings) []store.ConfigField {
	var fields []store.ConfigField
	for _, kv := range kvs {
		if fixed(kv.input) {
			settings[kv.Name] = store.Setting{Value: kv.Value}
			continue
		}
		fields = append(fields, c.field(kv.Name, kv.input))
	}
	return fields
}

// arguments writes fixed arguments and returns the rest as schema fields.
func (c *converter) arguments(args []argument) ([]string, []store.ConfigField) {
	var out []string
	var fields []store.ConfigField
	for i, a := range args {
		if fixed(a.input) || a.Type == "named" && a.Value == "" && a.Format == "" && !a.IsRequired && a.Default == "" {
			if a.Type == "named" {
				out = append(out, a.Name)
			}
			if a.Value != "" {
				out = append(out, a.Value)
			}
			continue
		}
		name := strings.TrimLeft(a.Name, "-")
		if a.Type == "positional" {
			name = cmpOr(a.ValueHint, fmt.Sprintf("arg%d", i+1))
		}
		f := c.field(name, a.input)
		if a.Type == "named" {
			f.Flag = a.Name
		}
		fields = append(fields, f)
	}
	return out, fields
}

func (c *converter) pkg(p pkg) error {
	if p.Identifier == "" {
		return errors.New("server_json: a package has no identifier")
	}
	c.e.Transport = "stdio"
	runtimeArgs, runtimeFields := c.arguments(p.RuntimeArguments)
	packageArgs, packageFields := c.arguments(p.PackageArguments)
	c.e.ConfigSchema.Args = append(runtimeFields, packageFields...)
	c.e.ConfigSchema.Env = c.keyValues(p.EnvironmentVariables, c.e.Env)
	var ref string
	switch p.RegistryType {
	case "npm":
		c.e.Command, c.e.Args, ref = "npx", []string{"-y"}, p.Identifier+versioned("@", p.Version)
	case "pypi":
		c.e.Command, ref = "uvx", p.Identifier+versioned("==", p.Version)
	case "oci":
		c.e.Command, c.e.Args, ref = "docker", []string{"run", "-i", "--rm"}, p.Identifier
		if !strings.Contains(p.Identifier, ":") && !strings.Contains(p.Identifier, "@") {
			ref += versioned(":", p.Version)
		}
		// docker passes the container only the variables it is told to, by name, from its own environment.
		for _, kv := range p.EnvironmentVariables {
			runtimeArgs = append(runtimeArgs, "-e", kv.Name)
		}
	default:
		return fmt.Errorf("server_json: packages of registry type %q are not supported; use npm, pypi or oci", p.RegistryType)
	}
	if p.RuntimeHint != "" && p.RegistryType != "oci" {
		c.e.Command = p.RuntimeHint
	}
	c.e.Args = append(append(append(c.e.Args, runtimeArgs...), ref), packageArgs...)
	return nil
}

func versioned(sep, version string) string {
	if version == "" || version == "latest" {
		return ""
	}
	return sep + version
}

func (c *converter) remote(t transport) error {
	switch t.Type {
	case "streamable-http":
		c.e.Transport = "http"
	case "sse":
		c.e.Transport = "sse"
	default:
		return fmt.Errorf("server_json: remote transport %q is not supported; use streamable-http or sse", t.Type)
	}
	if t.URL == "" || strings.Contains(t.URL, "{") {
		return errors.New("server_json: the remote needs a URL without {variables}")
	}
	c.e.URL = t.URL
	c.e.ConfigSchema.Headers = c.keyValues(t.Headers, c.e.Headers)
	return nil
}
