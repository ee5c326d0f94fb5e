package mcpruntime

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
)

// catalog is what a server offers: its tools, resources, resource templates and prompts, and what it said
// about itself when the session was initialized.
type catalog struct {
	init      *mcp.InitializeResult
	tools     []*mcp.Tool
	resources []*mcp.Resource
	templates []*mcp.ResourceTemplate
	prompts   []*mcp.Prompt
}

// discover lists everything a server offers, following pagination. Lists the server did not declare in its
// capabilities are not asked for, except tools: some servers offer tools without declaring them, so a
// failed tools/list counts only when tools were declared.
func discover(ctx context.Context, s *mcp.ClientSession) (catalog, error) {
	cat := catalog{init: s.InitializeResult()}
	caps := &mcp.ServerCapabilities{}
	if cat.init != nil && cat.init.Capabilities != nil {
		caps = cat.init.Capabilities
	}
	var err error
	if cat.tools, err = collect(s.Tools(ctx, nil)); err != nil {
		if caps.Tools != nil {
			return catalog{}, fmt.Errorf("list tools: %w", err)
		}
		cat.tools = nil
	}
	if caps.Resources != nil {
		if cat.resources, err = collect(s.Resources(ctx, nil)); err != nil {
			return catalog{}, fmt.Errorf("list resources: %w", err)
		}
		// Templates are optional even for servers with resources.
		if cat.templates, err = collect(s.ResourceTemplates(ctx, nil)); err != nil {
			cat.templates = nil
		}
	}
	if caps.Prompts != nil {
		if cat.prompts, err = collect(s.Prompts(ctx, nil)); err != nil {
			return catalog{}, fmt.Errorf("list prompts: %w", err)
		}
	}
	return cat, nil
}

func collect[T any](seq func(func(*T, error) bool)) ([]*T, error) {
	var items []*T
	for item, err := range seq {
		if err != nil {
			return nil, err
		}
		items = append(items, item)
	}
	return items, nil
}

// key identifies the catalogue's content and, separately, its tools'.
func (c catalog) key() (all, tools string) {
	sum := func(v any) string {
		b, _ := json.Marshal(v)
		h := sha256.Sum256(b)
		return hex.EncodeToString(h[:])
	}
	var info any
	if c.init != nil {
		info = []any{c.init.ServerInfo, c.init.Instructions, c.init.Capabilities}
	}
	tools = sum(c.tools)
	return sum([]any{tools, c.resources, c.templates, c.prompts, info}), tools
}

// Limits of the ToolsDiscovered event.
const (
	maxEventTools       = 2000
	maxToolNameLen      = 256
	maxToolDescription  = 65536
	maxToolTitle        = 1024
	bytesPerTokenApprox = 4
)

// ToolTokens estimates how many model tokens a tool's definition costs: the bytes of its JSON definition
// (name, title, description, input and output schema, annotations) divided by four, rounded up. Four bytes
// a token is the usual rule of thumb for English text and JSON under common tokenizers; it is an estimate
// for comparing tools and budgeting context, not an exact count.
func ToolTokens(t *mcp.Tool) uint32 {
	b, err := json.Marshal(t)
	if err != nil {
		return 0
	}
	return uint32((len(b) + bytesPerTokenApprox - 1) / bytesPerTokenApprox)
}

// toolsEvent is the payload of mcp.tools.discovered.
func toolsEvent(tools []*mcp.Tool) *satellitev1.ToolsDiscovered {
	td := &satellitev1.ToolsDiscovered{}
	for _, t := range tools {
		if len(td.Tools) == maxEventTools {
			break
		}
		if t.Name == "" || len(t.Name) > maxToolNameLen {
			continue
		}
		tool := &satellitev1.Tool{
			Name:        t.Name,
			Description: cut(t.Description, maxToolDescription),
			InputSchema: schemaStruct(t.InputSchema),
			TokenCount:  ToolTokens(t),
			Title:       cut(t.Title, maxToolTitle),
		}
		if t.OutputSchema != nil {
			tool.OutputSchema = schemaStruct(t.OutputSchema)
		}
		if t.Annotations != nil {
			tool.Annotations = schemaStruct(t.Annotations)
		}
		td.Tools = append(td.Tools, tool)
	}
	return td
}

// schemaStruct converts a JSON schema, or another JSON object such as a tool's annotations, to a Struct;
// a value that is not a JSON object is left out.
func schemaStruct(schema any) *structpb.Struct {
	if schema == nil {
		return nil
	}
	b, err := json.Marshal(schema)
	if err != nil {
		return nil
	}
	s := &structpb.Struct{}
	if protojson.Unmarshal(b, s) != nil {
		return nil
	}
	return s
}
