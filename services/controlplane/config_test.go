package main

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestTrustedProxiesSetting(t *testing.T) {
	t.Parallel()
	env := func(v string) func(string) string {
		return func(k string) string {
			switch k {
			case "ORRERY_TRUSTED_PROXIES":
				return v
			case "ORRERY_DATABASE_URL":
				return "postgres://db.invalid/orrery"
			}
			return ""
		}
	}
	c, err := loadConfig(nil, env("10.0.0.0/8, 192.168.1.5,2001:db8::/32"))
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.5/32"), netip.MustParsePrefix("2001:db8::/32")}
	if !slices.Equal(c.TrustedProxies, want) {
		t.Errorf("trusted proxies %v, want %v", c.TrustedProxies, want)
	}
	if _, err := loadConfig(nil, env("10.0.0.0/8,proxy.internal")); err == nil || !strings.Contains(err.Error(), `"proxy.internal"`) {
		t.Errorf("a host name: %v, want an error naming it", err)
	}
}

func TestDatabaseURLRequiredOutsideDevelopment(t *testing.T) {
	t.Parallel()
	none := func(string) string { return "" }
	if _, err := loadConfig(nil, none); err == nil || !strings.Contains(err.Error(), "ORRERY_DATABASE_URL") {
		t.Errorf("no database URL and no -dev: %v, want an error naming ORRERY_DATABASE_URL", err)
	}
	if _, err := loadConfig([]string{"-dev"}, none); err != nil {
		t.Errorf("-dev without a database URL: %v", err)
	}
	if _, err := loadConfig([]string{"-database-url", "postgres://db.invalid/orrery"}, none); err != nil {
		t.Errorf("a database URL without -dev: %v", err)
	}
}

func TestTemplateCommandsSetting(t *testing.T) {
	t.Parallel()
	env := func(v string) func(string) string {
		return func(k string) string {
			switch k {
			case "ORRERY_TEMPLATE_COMMANDS":
				return v
			case "ORRERY_DATABASE_URL":
				return "postgres://db.invalid/orrery"
			}
			return ""
		}
	}
	for _, tc := range []struct {
		name    string
		args    []string
		env     string
		allowed []string
		refused []string
	}{
		{name: "default", allowed: []string{"npx", "uvx", "python3"}, refused: []string{"docker", "/bin/sh"}},
		{name: "environment", env: "node, /opt/mcp/", allowed: []string{"node", "/opt/mcp/x"}, refused: []string{"npx"}},
		{name: "flag over environment", args: []string{"-template-commands", "deno"}, env: "node", allowed: []string{"deno"}, refused: []string{"node"}},
		{name: "any", env: "*", allowed: []string{"/bin/sh", "docker"}},
		{name: "any by flag", args: []string{"-template-commands=*"}, allowed: []string{"/bin/sh"}},
	} {
		c, err := loadConfig(tc.args, env(tc.env))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		for _, command := range tc.allowed {
			if !c.TemplateCommands.Allows(command) {
				t.Errorf("%s: %q refused", tc.name, command)
			}
		}
		for _, command := range tc.refused {
			if c.TemplateCommands.Allows(command) {
				t.Errorf("%s: %q allowed", tc.name, command)
			}
		}
	}
	for _, args := range [][]string{{"-template-commands="}, {"-template-commands", " , "}, {"-template-commands", "opt/mcp/"}} {
		if _, err := loadConfig(args, env("")); err == nil || !strings.Contains(err.Error(), "ORRERY_TEMPLATE_COMMANDS") {
			t.Errorf("%q: %v, want an error naming ORRERY_TEMPLATE_COMMANDS", args, err)
		}
	}
}

func TestDrainPeriodSetting(t *testing.T) {
	t.Parallel()
	env := func(v string) func(string) string {
		return func(k string) string {
			switch k {
			case "ORRERY_DRAIN_PERIOD":
				return v
			case "ORRERY_DATABASE_URL":
				return "postgres://db.invalid/orrery"
			}
			return ""
		}
	}
	for _, tc := range []struct {
		args []string
		env  string
		want time.Duration
	}{
		{want: 5 * time.Second},
		{args: []string{"-dev"}, want: 0},
		{args: []string{"-dev"}, env: "2s", want: 2 * time.Second},
		{env: "0s", want: 0},
		{args: []string{"-drain-period", "15s"}, env: "2s", want: 15 * time.Second},
	} {
		c, err := loadConfig(tc.args, env(tc.env))
		if err != nil {
			t.Fatalf("%q, %q: %v", tc.args, tc.env, err)
		}
		if c.DrainPeriod != tc.want {
			t.Errorf("%q, %q: drain period %v, want %v", tc.args, tc.env, c.DrainPeriod, tc.want)
		}
	}
	for _, v := range []string{"5", "-1s", "1h", "soon"} {
		if _, err := loadConfig(nil, env(v)); err == nil || !strings.Contains(err.Error(), "ORRERY_DRAIN_PERIOD") {
			t.Errorf("%q: %v, want an error naming ORRERY_DRAIN_PERIOD", v, err)
		}
	}
}

func TestOAuthLifetimeSettings(t *testing.T) {
	t.Parallel()
	load := func(args ...string) (config, error) {
		return loadConfig(append([]string{"-database-url", "postgres://db.invalid/orrery"}, args...), func(string) string { return "" })
	}
	c, err := load()
	if err != nil {
		t.Fatal(err)
	}
	if c.OAuth.AccessTokenTTL != time.Hour || c.OAuth.RefreshTokenTTL != 30*24*time.Hour || c.OAuth.GrantMaxAge != 90*24*time.Hour {
		t.Errorf("defaults: %+v, want 1h, 30 days idle, 90 days at most", c.OAuth)
	}
	c, err = load("-oauth-access-token-ttl", "2s", "-oauth-refresh-idle", "1h", "-oauth-grant-max-age", "3h")
	if err != nil || c.OAuth.AccessTokenTTL != 2*time.Second || c.OAuth.RefreshTokenTTL != time.Hour || c.OAuth.GrantMaxAge != 3*time.Hour {
		t.Errorf("set by flags: %+v, %v", c.OAuth, err)
	}
	for _, args := range [][]string{
		{"-oauth-refresh-idle", "forever"},
		{"-oauth-access-token-ttl", "0s"},
		{"-oauth-grant-max-age", "-1h"},
		{"-oauth-refresh-idle", "2400h"}, // longer than the maximum age
	} {
		if _, err := load(args...); err == nil || !strings.Contains(err.Error(), "ORRERY_OAUTH_") {
			t.Errorf("%v: %v, want an error naming the setting", args, err)
		}
	}
}
