package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/orrery/orrery/services/satellite/internal/sandbox"
)

func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func TestLoadConfig(t *testing.T) {
	t.Parallel()
	host, _ := os.Hostname()
	dir := t.TempDir()
	tokenFile, hugeFile := filepath.Join(dir, "token"), filepath.Join(dir, "huge")
	if err := os.WriteFile(tokenFile, []byte("orreg_from-a-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(hugeFile, []byte(strings.Repeat("x", maxRegistrationTokenFile+1)), 0o600); err != nil {
		t.Fatal(err)
	}
	registrationToken := func(want string) func(t *testing.T, c Config) {
		return func(t *testing.T, c Config) {
			if c.RegistrationToken != want {
				t.Errorf("registration token %q, want %q", c.RegistrationToken, want)
			}
		}
	}
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		check   func(t *testing.T, c Config)
		wantErr string
	}{
		{
			name: "defaults",
			env:  map[string]string{"XDG_STATE_HOME": "/var/state", "HOME": "/home/sat"},
			check: func(t *testing.T, c Config) {
				if c.ControlPlaneURL != "http://127.0.0.1:8080" || c.Listen != "127.0.0.1:8081" || c.MetricsListen != "127.0.0.1:9464" || c.LogFormat != "auto" {
					t.Errorf("defaults = %+v", c)
				}
				if c.StateDir != "/var/state/orrery-satellite" {
					t.Errorf("StateDir = %q", c.StateDir)
				}
				if c.Name != nameFromHost(host) {
					t.Errorf("Name = %q, want it derived from host %q", c.Name, host)
				}
				if c.HeartbeatInterval != 30*time.Second || c.PollWait != 25*time.Second || c.RequestTimeout != 40*time.Second ||
					c.EventFlushDelay != 3*time.Second || c.EventBatchSize != 20 || c.EventBufferSize != 10_000 ||
					c.BackoffMin != 500*time.Millisecond || c.BackoffMax != 30*time.Second || c.MCPIdleTimeout != 3*time.Minute ||
					c.MCPSessionIdleTimeout != 30*time.Minute || c.TokenCacheTTL != time.Minute {
					t.Errorf("timing defaults = %+v", c)
				}
				if c.GCHeapFloorMiB != 64 {
					t.Errorf("GC heap floor %d MiB, want 64", c.GCHeapFloorMiB)
				}
				if c.MCPMaxSessionsPerUser != 100 || c.MCPMaxSessions != 10_000 {
					t.Errorf("session limits %d per user, %d in all; want 100 and 10000", c.MCPMaxSessionsPerUser, c.MCPMaxSessions)
				}
				if c.Sandbox != "auto" || c.Dev || c.SandboxReadOnly != nil {
					t.Errorf("sandbox defaults: %q, dev %v, read-only %q; want auto, false, none", c.Sandbox, c.Dev, c.SandboxReadOnly)
				}
			},
		},
		{
			name: "GC heap floor off from the environment",
			env:  map[string]string{"ORRERY_GC_HEAP_FLOOR_MIB": "0", "HOME": "/h"},
			check: func(t *testing.T, c Config) {
				if c.GCHeapFloorMiB != 0 {
					t.Errorf("GC heap floor %d MiB, want 0", c.GCHeapFloorMiB)
				}
			},
		},
		{
			name: "GC heap floor flag over the environment",
			args: []string{"-gc-heap-floor-mib", "256"},
			env:  map[string]string{"ORRERY_GC_HEAP_FLOOR_MIB": "32", "HOME": "/h"},
			check: func(t *testing.T, c Config) {
				if c.GCHeapFloorMiB != 256 {
					t.Errorf("GC heap floor %d MiB, want 256", c.GCHeapFloorMiB)
				}
			},
		},
		{
			name:    "GC heap floor not a number",
			env:     map[string]string{"ORRERY_GC_HEAP_FLOOR_MIB": "-1", "HOME": "/h"},
			wantErr: "ORRERY_GC_HEAP_FLOOR_MIB",
		},
		{
			name: "sandbox",
			args: []string{"-sandbox", "direct"},
			env:  map[string]string{"ORRERY_SANDBOX": "bwrap", "ORRERY_DEV": "true", "ORRERY_SANDBOX_READ_ONLY": "/opt/mcp::/usr/local/lib/node_modules", "HOME": "/h"},
			check: func(t *testing.T, c Config) {
				if c.Sandbox != "direct" || !c.Dev || strings.Join(c.SandboxReadOnly, ",") != "/opt/mcp,/usr/local/lib/node_modules" {
					t.Errorf("sandbox %q, dev %v, read-only %q", c.Sandbox, c.Dev, c.SandboxReadOnly)
				}
			},
		},
		{
			name: "sandbox egress and ceilings",
			args: []string{"-sandbox-ceilings", "memory=1GiB,processes=100,cpu=1.5,cpu_time=10m,open_files=2048,file_size=256MiB"},
			env: map[string]string{"ORRERY_SANDBOX_EGRESS_ALLOW": "10.20.0.0/16, 192.168.1.5", "ORRERY_SANDBOX_EGRESS_DENY": "203.0.113.0/24",
				"ORRERY_SANDBOX_CEILINGS": "memory=9GiB", "ORRERY_SANDBOX_HOME_QUOTA": "2GiB", "HOME": "/h"},
			check: func(t *testing.T, c Config) {
				if fmt.Sprint(c.SandboxEgressAllow) != "[10.20.0.0/16 192.168.1.5/32]" || fmt.Sprint(c.SandboxEgressDeny) != "[203.0.113.0/24]" {
					t.Errorf("egress allow %v, deny %v", c.SandboxEgressAllow, c.SandboxEgressDeny)
				}
				want := sandbox.Limits{MemoryBytes: 1 << 30, Processes: 100, CPU: 1.5, CPUTime: 10 * time.Minute, OpenFiles: 2048, FileSizeBytes: 256 << 20}
				if c.SandboxCeilings != want {
					t.Errorf("ceilings %+v, want %+v", c.SandboxCeilings, want)
				}
				if c.SandboxHomeQuota != 2<<30 {
					t.Errorf("home quota %d, want 2 GiB", c.SandboxHomeQuota)
				}
			},
		},
		{
			name: "allowed hosts",
			env:  map[string]string{"ORRERY_MCP_ALLOWED_HOSTS": "localhost:8080, [::1] ,mcp.example.com", "HOME": "/h"},
			check: func(t *testing.T, c Config) {
				if want := []string{"localhost:8080", "[::1]", "mcp.example.com"}; !slices.Equal(c.MCPAllowedHosts, want) {
					t.Errorf("allowed hosts %q, want %q", c.MCPAllowedHosts, want)
				}
			},
		},
		{
			name: "metrics listen address",
			args: []string{"-metrics-listen", "0.0.0.0:9100"},
			env:  map[string]string{"ORRERY_METRICS_LISTEN": "127.0.0.1:9999", "HOME": "/h"},
			check: func(t *testing.T, c Config) {
				if c.MetricsListen != "0.0.0.0:9100" {
					t.Errorf("metrics listen %q, want 0.0.0.0:9100 (the flag)", c.MetricsListen)
				}
			},
		},
		{
			name: "metrics off",
			env:  map[string]string{"ORRERY_METRICS_LISTEN": "off", "HOME": "/h"},
			check: func(t *testing.T, c Config) {
				if c.MetricsListen != "off" {
					t.Errorf("metrics listen %q, want off", c.MetricsListen)
				}
			},
		},
		{name: "invalid metrics listen address", env: map[string]string{"ORRERY_METRICS_LISTEN": "9464", "HOME": "/h"}, wantErr: "ORRERY_METRICS_LISTEN"},
		{name: "invalid egress network", env: map[string]string{"ORRERY_SANDBOX_EGRESS_ALLOW": "corp.example", "HOME": "/h"}, wantErr: "ORRERY_SANDBOX_EGRESS_ALLOW"},
		{name: "invalid ceiling", env: map[string]string{"ORRERY_SANDBOX_CEILINGS": "memory=lots", "HOME": "/h"}, wantErr: "ORRERY_SANDBOX_CEILINGS"},
		{name: "tiny home quota", env: map[string]string{"ORRERY_SANDBOX_HOME_QUOTA": "1MiB", "HOME": "/h"}, wantErr: "ORRERY_SANDBOX_HOME_QUOTA"},
		{name: "unknown ceiling", env: map[string]string{"ORRERY_SANDBOX_CEILINGS": "disk=1GiB", "HOME": "/h"}, wantErr: "unknown limit"},
		{name: "invalid sandbox", env: map[string]string{"ORRERY_SANDBOX": "chroot", "HOME": "/h"}, wantErr: "ORRERY_SANDBOX"},
		{name: "relative read-only path", env: map[string]string{"ORRERY_SANDBOX_READ_ONLY": "opt/mcp", "HOME": "/h"}, wantErr: "ORRERY_SANDBOX_READ_ONLY"},
		{
			name: "state dir under home without XDG_STATE_HOME",
			env:  map[string]string{"HOME": "/home/sat", "XDG_STATE_HOME": "relative/ignored"},
			check: func(t *testing.T, c Config) {
				if c.StateDir != "/home/sat/.local/state/orrery-satellite" {
					t.Errorf("StateDir = %q", c.StateDir)
				}
			},
		},
		{
			name: "environment",
			env: map[string]string{
				"ORRERY_CONTROL_PLANE_URL":    "https://orrery.example.com",
				"ORRERY_REGISTRATION_TOKEN":   "orreg_secret",
				"ORRERY_SATELLITE_NAME":       "edge-7",
				"ORRERY_STATE_DIR":            "/srv/sat",
				"ORRERY_SATELLITE_LISTEN":     "0.0.0.0:9000",
				"ORRERY_SATELLITE_PUBLIC_URL": "https://edge-7.example.com",
				"ORRERY_LOG_FORMAT":           "json",
			},
			check: func(t *testing.T, c Config) {
				want := Config{ControlPlaneURL: "https://orrery.example.com", RegistrationToken: "orreg_secret", Name: "edge-7",
					StateDir: "/srv/sat", Listen: "0.0.0.0:9000", PublicURL: "https://edge-7.example.com", LogFormat: "json"}
				if c.ControlPlaneURL != want.ControlPlaneURL || c.RegistrationToken != want.RegistrationToken || c.Name != want.Name ||
					c.StateDir != want.StateDir || c.Listen != want.Listen || c.PublicURL != want.PublicURL || c.LogFormat != want.LogFormat {
					t.Errorf("config = %+v, want %+v", c, want)
				}
			},
		},
		{
			name: "flags override the environment",
			args: []string{"-name", "from-flag", "-state-dir", "/flag/state"},
			env:  map[string]string{"ORRERY_SATELLITE_NAME": "from-env", "ORRERY_STATE_DIR": "/env/state"},
			check: func(t *testing.T, c Config) {
				if c.Name != "from-flag" || c.StateDir != "/flag/state" {
					t.Errorf("config = %+v", c)
				}
			},
		},
		{
			name: "MCP idle timeout",
			args: []string{"-mcp-idle-timeout", "-1s"},
			env:  map[string]string{"ORRERY_MCP_IDLE_TIMEOUT": "10m", "HOME": "/h"},
			check: func(t *testing.T, c Config) {
				if c.MCPIdleTimeout != -time.Second || c.MCPStopGrace != 5*time.Second {
					t.Errorf("MCP idle timeout %v and stop grace %v, want -1s (the flag) and 5s", c.MCPIdleTimeout, c.MCPStopGrace)
				}
			},
		},
		{
			name: "gateway timings",
			args: []string{"-token-cache-ttl", "5s"},
			env:  map[string]string{"ORRERY_MCP_SESSION_IDLE_TIMEOUT": "2h", "ORRERY_TOKEN_CACHE_TTL": "30s", "HOME": "/h"},
			check: func(t *testing.T, c Config) {
				if c.MCPSessionIdleTimeout != 2*time.Hour || c.TokenCacheTTL != 5*time.Second {
					t.Errorf("session idle timeout %v and token cache TTL %v, want 2h and 5s (the flag)", c.MCPSessionIdleTimeout, c.TokenCacheTTL)
				}
			},
		},
		{
			name: "session limits",
			args: []string{"-mcp-max-sessions", "500"},
			env:  map[string]string{"ORRERY_MCP_MAX_SESSIONS_PER_USER": "20", "ORRERY_MCP_MAX_SESSIONS": "900", "HOME": "/h"},
			check: func(t *testing.T, c Config) {
				if c.MCPMaxSessionsPerUser != 20 || c.MCPMaxSessions != 500 {
					t.Errorf("session limits %d per user, %d in all; want 20 and 500 (the flag)", c.MCPMaxSessionsPerUser, c.MCPMaxSessions)
				}
			},
		},
		{name: "invalid session limit", env: map[string]string{"ORRERY_MCP_MAX_SESSIONS_PER_USER": "lots", "HOME": "/h"}, wantErr: "ORRERY_MCP_MAX_SESSIONS_PER_USER"},
		{name: "negative session limit", args: []string{"-mcp-max-sessions", "-5"}, env: map[string]string{"HOME": "/h"}, wantErr: "ORRERY_MCP_MAX_SESSIONS"},
		{name: "token cache TTL above the cap", env: map[string]string{"ORRERY_TOKEN_CACHE_TTL": "5m", "HOME": "/h"}, wantErr: "ORRERY_TOKEN_CACHE_TTL"},
		{name: "invalid session idle timeout", env: map[string]string{"ORRERY_MCP_SESSION_IDLE_TIMEOUT": "1 hour", "HOME": "/h"}, wantErr: "ORRERY_MCP_SESSION_IDLE_TIMEOUT"},
		{name: "invalid MCP idle timeout", env: map[string]string{"ORRERY_MCP_IDLE_TIMEOUT": "soon", "HOME": "/h"}, wantErr: "ORRERY_MCP_IDLE_TIMEOUT"},
		{name: "invalid name", env: map[string]string{"ORRERY_SATELLITE_NAME": "Edge 7", "HOME": "/h"}, wantErr: "ORRERY_SATELLITE_NAME"},
		{name: "invalid log format", env: map[string]string{"ORRERY_LOG_FORMAT": "xml", "HOME": "/h"}, wantErr: "log format"},
		{name: "invalid control plane URL", env: map[string]string{"ORRERY_CONTROL_PLANE_URL": "127.0.0.1:8080", "HOME": "/h"}, wantErr: "control plane URL"},
		{name: "invalid public URL", env: map[string]string{"ORRERY_SATELLITE_PUBLIC_URL": "edge:8081", "HOME": "/h"}, wantErr: "ORRERY_SATELLITE_PUBLIC_URL"},
		{name: "no token flag", args: []string{"-registration-token", "x"}, env: map[string]string{"HOME": "/h"}, wantErr: "not defined"},
		{name: "token from a file, trimmed", env: map[string]string{"ORRERY_REGISTRATION_TOKEN_FILE": tokenFile, "HOME": "/h"}, check: registrationToken("orreg_from-a-file")},
		{name: "token variable before the file", env: map[string]string{"ORRERY_REGISTRATION_TOKEN": "orreg_env", "ORRERY_REGISTRATION_TOKEN_FILE": tokenFile, "HOME": "/h"}, check: registrationToken("orreg_env")},
		// A satellite past its first start keeps its identity; Kubernetes mounts no file for a pod without a token.
		{name: "no token file", env: map[string]string{"ORRERY_REGISTRATION_TOKEN_FILE": filepath.Join(dir, "absent"), "HOME": "/h"}, check: registrationToken("")},
		{name: "token file far larger than a token", env: map[string]string{"ORRERY_REGISTRATION_TOKEN_FILE": hugeFile, "HOME": "/h"}, wantErr: "larger than a registration token"},
		{name: "token file a directory", env: map[string]string{"ORRERY_REGISTRATION_TOKEN_FILE": dir, "HOME": "/h"}, wantErr: "ORRERY_REGISTRATION_TOKEN_FILE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := loadConfig(tt.args, env(tt.env), io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("loadConfig = %v, want an error mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c)
		})
	}
}

func TestNameFromHost(t *testing.T) {
	t.Parallel()
	for host, want := range map[string]string{
		"Build-Runner.Example.COM": "build-runner.example.com",
		"_weird host!":             "weird-host-",
		"":                         "satellite",
		"---":                      "satellite",
		strings.Repeat("a", 80):    strings.Repeat("a", 64),
	} {
		got := nameFromHost(host)
		if got != want {
			t.Errorf("nameFromHost(%q) = %q, want %q", host, got, want)
		}
		if !namePattern.MatchString(got) {
			t.Errorf("nameFromHost(%q) = %q is not a valid name", host, got)
		}
	}
}

func TestPublicURLFor(t *testing.T) {
	t.Parallel()
	host, _ := os.Hostname()
	for listen, want := range map[string]string{
		"127.0.0.1:8081": "http://127.0.0.1:8081",
		"[::1]:8081":     "http://[::1]:8081",
		":8081":          "http://" + host + ":8081",
		"0.0.0.0:8081":   "http://" + host + ":8081",
	} {
		if got := publicURLFor(listen); got != want {
			t.Errorf("publicURLFor(%q) = %q, want %q", listen, got, want)
		}
	}
}
