// Package config keeps orreryctl's contexts: for each control plane a user signs in to, its URL and the
// tokens of the sign-in, in one JSON file readable by its owner alone.
//
//	path, _ := config.DefaultPath()
//	f, _ := config.Load(path)
//	f.Set("prod", config.Context{URL: "https://orrery.example.com"})
//	_ = f.Save(path)
package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// File is the contents of the configuration file.
type File struct {
	// Current names the context commands use when no --context is given.
	Current string `json:"current_context,omitempty"`
	// Contexts are the control planes signed in to, by name.
	Contexts map[string]*Context `json:"contexts,omitempty"`
}

// Context is one control plane and the tokens of the sign-in to it.
type Context struct {
	// URL is the control plane's base URL.
	URL string `json:"url"`
	// User is the email address signed in, as the control plane reported it.
	User         string    `json:"user,omitempty"`
	AccessToken  string    `json:"access_token,omitempty"`
	RefreshToken string    `json:"refresh_token,omitempty"`
	Expiry       time.Time `json:"expiry,omitzero"`
}

// DefaultPath is orrery/config.json under the user's configuration directory ($XDG_CONFIG_HOME, or
// ~/.config, on Linux).
func DefaultPath() (string, error) {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("find the configuration directory: %w", err)
	}
	return filepath.Join(dir, "orrery", "config.json"), nil
}

// Load reads the file at path; a missing file is an empty configuration.
func Load(path string) (*File, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &File{Contexts: map[string]*Context{}}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read configuration: %w", err)
	}
	f := &File{}
	if err := json.Unmarshal(raw, f); err != nil {
		return nil, fmt.Errorf("configuration %s is not valid JSON (fix or remove it): %w", path, err)
	}
	if f.Contexts == nil {
		f.Contexts = map[string]*Context{}
	}
	return f, nil
}

// Save writes the file to path with mode 0600 in a directory of mode 0700, replacing it in one rename so a
// reader never sees half a file.
func (f *File) Save(path string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create configuration directory: %w", err)
	}
	raw, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".config-*.json")
	if err != nil {
		return fmt.Errorf("write configuration: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("write configuration: %w", err)
	}
	if _, err := tmp.Write(append(raw, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("write configuration: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write configuration: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write configuration: %w", err)
	}
	return nil
}

// Names lists the contexts' names in order.
func (f *File) Names() []string {
	return slices.Sorted(maps.Keys(f.Contexts))
}

// Get returns the named context, or the current one when name is empty.
func (f *File) Get(name string) (string, *Context, error) {
	if name == "" {
		name = f.Current
	}
	if name == "" {
		return "", nil, errors.New("no control plane chosen: run `orreryctl login URL` first, or pass --server URL with --token")
	}
	c, ok := f.Contexts[name]
	if !ok {
		return "", nil, fmt.Errorf("no context named %q (known: %s); run `orreryctl login URL --context %s`", name,
			strings.Join(f.Names(), ", "), name)
	}
	return name, c, nil
}

// Set stores c under name.
func (f *File) Set(name string, c *Context) {
	if f.Contexts == nil {
		f.Contexts = map[string]*Context{}
	}
	f.Contexts[name] = c
}

// NameFor is the context name a URL gets by default: its host, with the port when it has one.
func NameFor(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		return "default"
	}
	return strings.ReplaceAll(u.Host, ":", "-")
}

// NormalizeURL checks a control plane URL and returns it without a trailing slash.
func NormalizeURL(raw string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil ||
		u.RawQuery != "" || u.Fragment != "" || (u.Path != "" && u.Path != "/") {
		return "", fmt.Errorf("%q is not a control plane URL: want http(s)://host[:port]", raw)
	}
	return u.Scheme + "://" + u.Host, nil
}
