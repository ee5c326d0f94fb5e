package toolsearch

import (
	"fmt"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Names of the meta-tools a team endpoint lists in search mode.
const (
	SearchToolName = "search_tools"
	CallToolName   = "call_tool"
)

// MaxToolNameBytes bounds the tool name call_tool takes; exposed names are at most 64 characters.
const MaxToolNameBytes = 64

// MetaTools returns the definitions of the two tools a team endpoint lists in search mode: search_tools
// (input {query, limit}) returns the best matching tools with their exposed names, descriptions and
// input schemas, and call_tool (input {name, arguments}) calls one of them.
func MetaTools() (search, call *mcp.Tool) {
	search = &mcp.Tool{
		Name:  SearchToolName,
		Title: "Search tools",
		Description: "Finds the tools of this team's MCP servers that fit a task and returns their names, " +
			"descriptions and input schemas, best match first. Call one with " + CallToolName + ".",
		InputSchema: map[string]any{
			"type":     "object",
			"required": []string{"query"},
			"properties": map[string]any{
				"query": map[string]any{"type": "string", "minLength": 1, "maxLength": MaxQueryBytes,
					"description": "What you want to do, in a few words, such as \"open a pull request\" or \"read a file\"."},
				"limit": map[string]any{"type": "integer", "minimum": 1, "maximum": MaxResults,
					"description": fmt.Sprintf("How many tools to return at most (default %d).", DefaultResults)},
			},
			"additionalProperties": false,
		},
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true},
	}
	call = &mcp.Tool{
		Name:        CallToolName,
		Title:       "Call a tool",
		Description: "Calls one of this team's tools by the name " + SearchToolName + " returned, with its arguments.",
		InputSchema: map[string]any{
			"type":     "object",
			"required": []string{"name"},
			"properties": map[string]any{
				"name": map[string]any{"type": "string", "minLength": 1, "maxLength": MaxToolNameBytes,
					"description": "The tool's name as " + SearchToolName + " returned it."},
				"arguments": map[string]any{"type": "object",
					"description": "The tool's arguments, following the input schema " + SearchToolName + " returned."},
			},
			"additionalProperties": false,
		},
	}
	return search, call
}
