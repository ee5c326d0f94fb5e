package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"

	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
)

// mcpClient is how one MCP client keeps its server list: the file a project keeps it in, the key of the
// server map in it, and one server's entry.
type mcpClient struct {
	file  string
	key   string
	entry func(url string) map[string]any
}

var mcpClients = map[string]mcpClient{
	// VS Code reads .vscode/mcp.json; it signs in to the endpoint itself through its OAuth metadata.
	"vscode": {file: filepath.Join(".vscode", "mcp.json"), key: "servers", entry: func(u string) map[string]any {
		return map[string]any{"type": "http", "url": u}
	}},
	// Claude Code reads a project's .mcp.json.
	"claude": {file: ".mcp.json", key: "mcpServers", entry: func(u string) map[string]any {
		return map[string]any{"type": "http", "url": u}
	}},
	// Cursor reads .cursor/mcp.json and tells Streamable HTTP servers by their url.
	"cursor": {file: filepath.Join(".cursor", "mcp.json"), key: "mcpServers", entry: func(u string) map[string]any {
		return map[string]any{"url": u}
	}},
}

func (a *App) connectCommand() *cobra.Command {
	var team, endpoint, file, name string
	var write bool
	c := &cobra.Command{
		Use:   "connect vscode|claude|cursor|json --team TEAM",
		Short: "Print or write an MCP client's configuration for a team's endpoint",
		Long: `Print the configuration that points an MCP client at the team's endpoint, or with --write merge it into
the client's project file (.vscode/mcp.json, .mcp.json, .cursor/mcp.json), keeping the servers already
there. The client signs in to the endpoint itself: it finds the control plane's OAuth server from the
endpoint's metadata. 'json' prints the endpoint's details for anything else.`,
		Example: `  orreryctl connect vscode --team platform --write
  orreryctl connect claude --team platform > .mcp.json
  orreryctl connect json --team platform | jq -r .url`,
		ValidArgs: []string{"vscode", "claude", "cursor", "json"},
		Args:      args(cobra.MatchAll(cobra.ExactArgs(1), cobra.OnlyValidArgs)),
		RunE: func(c *cobra.Command, argv []string) error {
			client, known := mcpClients[argv[0]]
			if write && !known {
				return usageError{errors.New("--write needs a client: vscode, claude or cursor")}
			}
			s, t, err := a.teamScope(c.Context(), team)
			if err != nil {
				return err
			}
			url := endpoint
			if url == "" {
				resp, err := s.teams().GetTeamEndpoint(c.Context(), connect.NewRequest(&apiv1.GetTeamEndpointRequest{TeamId: t.GetId()}))
				if err != nil {
					return err
				}
				if url = resp.Msg.GetUrl(); url == "" {
					return notFound(fmt.Errorf("no satellite serves %s yet, so it has no endpoint: start one, or give the URL with --endpoint", t.GetSlug()))
				}
			}
			if name == "" {
				name = "orrery-" + t.GetSlug()
			}
			if !known {
				return writeJSON(a.Out, map[string]any{
					"name": name, "team": t.GetSlug(), "url": url, "transport": "streamable-http",
					"sse_url": strings.TrimSuffix(url, "/mcp") + "/sse",
				})
			}
			if !write {
				return writeJSON(a.Out, map[string]any{client.key: map[string]any{name: client.entry(url)}})
			}
			path := file
			if path == "" {
				path = client.file
			}
			if err := mergeServer(path, client.key, name, client.entry(url)); err != nil {
				return err
			}
			fmt.Fprintf(a.Err, "Wrote %s to %s; the client asks you to sign in on first use.\n", name, path)
			return nil
		},
	}
	a.teamFlag(c, &team, true)
	c.Flags().StringVar(&endpoint, "endpoint", "", "the endpoint URL, instead of the one the control plane names")
	c.Flags().BoolVarP(&write, "write", "w", false, "merge into the client's project configuration file")
	c.Flags().StringVar(&file, "file", "", "the file --write merges into; default the client's project file")
	c.Flags().StringVar(&name, "name", "", "the server's name in the client; default orrery-TEAM")
	return c
}

func writeJSON(w interface{ Write([]byte) (int, error) }, v any) error {
	raw, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(raw, '\n'))
	return err
}

// mergeServer sets one server in a client's configuration file, keeping everything else in it.
func mergeServer(path, key, name string, entry map[string]any) error {
	doc := map[string]any{}
	raw, err := os.ReadFile(path)
	switch {
	case err == nil:
		if err := json.Unmarshal(raw, &doc); err != nil {
			return fmt.Errorf("%s is not JSON, so orreryctl will not change it: %w", path, err)
		}
	case !errors.Is(err, os.ErrNotExist):
		return err
	}
	servers, _ := doc[key].(map[string]any)
	if servers == nil {
		if _, ok := doc[key]; ok {
			return fmt.Errorf("%s: %q is not an object, so orreryctl will not change it", path, key)
		}
		servers = map[string]any{}
	}
	servers[name] = entry
	doc[key] = servers
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, append(out, '\n'), 0o644)
}
