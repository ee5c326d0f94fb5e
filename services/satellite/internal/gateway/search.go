package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"net/http"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/orrery/orrery/services/satellite/internal/toolsearch"
)

// Tool modes of a team endpoint. In ToolsAll the endpoint lists every tool of the user's instances; in
// ToolsSearch it lists two meta-tools instead (toolsearch.MetaTools), so that a client's model
// is not handed hundreds of tool definitions before it has a task. Resources and prompts are the same
// in both modes.
const (
	ToolsAll    = "all"
	ToolsSearch = "search"
)

// ToolsQueryParameter is the query parameter of the endpoint URL with which a client chooses the tool
// mode, such as /teams/acme/mcp?tools=search. It wins over the user's and the team's choice.
const ToolsQueryParameter = "tools"

// toolsModeOf returns the tool mode of a request: the client's query parameter, else the mode that the
// token's introspection chose for the user (the user's preference, else the team's setting), else
// ToolsAll. An unknown value of the query parameter is an error.
func toolsModeOf(r *http.Request, p *principal) (string, error) {
	if v := r.URL.Query().Get(ToolsQueryParameter); v != "" {
		switch v {
		case ToolsAll, ToolsSearch:
			return v, nil
		}
		return "", fmt.Errorf("query parameter %q must be %q or %q", ToolsQueryParameter, ToolsAll, ToolsSearch)
	}
	if p != nil && p.toolsMode == ToolsSearch {
		return ToolsSearch, nil
	}
	return ToolsAll, nil
}

type toolsModeKey struct{}

func withToolsMode(r *http.Request, mode string) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), toolsModeKey{}, mode))
}

func toolsModeFrom(ctx context.Context) string {
	mode, _ := ctx.Value(toolsModeKey{}).(string)
	return mode
}

// serverForMode returns the user's MCP server of a tool mode, building the search index on the first
// request in search mode.
func (us *userServer) serverForMode(mode string) *mcp.Server {
	if mode != ToolsSearch {
		return us.server
	}
	us.syncMu.Lock()
	defer us.syncMu.Unlock()
	if us.index == nil {
		ix, err := toolsearch.New()
		if err != nil {
			us.g.logger.Error("tool search index", slog.Any("error", err))
			return us.search // its search answers that search is unavailable
		}
		us.index = ix
		us.indexTools()
	}
	return us.search
}

// servers returns the user's servers of both modes; they share resources, prompts and sessions' state.
func (us *userServer) servers() []*mcp.Server { return []*mcp.Server{us.server, us.search} }

// allSessions yields the sessions of both of the user's servers.
func (us *userServer) allSessions() iter.Seq[*mcp.ServerSession] {
	return func(yield func(*mcp.ServerSession) bool) {
		for _, s := range us.servers() {
			for ss := range s.Sessions() {
				if !yield(ss) {
					return
				}
			}
		}
	}
}

// indexTools brings the search index, if search mode was used, in step with the tools registered on the
// user's full server: exactly those, under their exposed names, so search never finds a tool the user's
// endpoint would not list. Called with syncMu held.
func (us *userServer) indexTools() {
	if us.index == nil {
		return
	}
	us.index.Update(us.listed)
}

// closeIndex frees the search index when the user's server is dropped.
func (us *userServer) closeIndex() {
	us.syncMu.Lock()
	defer us.syncMu.Unlock()
	if us.index != nil {
		_ = us.index.Close()
		us.index = nil
	}
}

// searchInput is the input of search_tools.
type searchInput struct {
	Query string `json:"query"`
	Limit int    `json:"limit,omitempty"`
}

// callInput is the input of call_tool; arguments go to the tool as the client sent them.
type callInput struct {
	Name      string          `json:"name"`
	Arguments json.RawMessage `json:"arguments,omitempty"`
}

// foundTool is one result of search_tools: what a client needs to call the tool through call_tool.
type foundTool struct {
	Name        string `json:"name"`
	Title       string `json:"title,omitempty"`
	Description string `json:"description,omitempty"`
	InputSchema any    `json:"inputSchema"`
}

// addMetaTools registers search_tools and call_tool on the user's search-mode server.
func (us *userServer) addMetaTools() {
	search, call := toolsearch.MetaTools()
	us.search.AddTool(search, us.searchTools)
	us.search.AddTool(call, us.callFoundTool)
}

// toolError is a tool result that tells the caller, and its model, what was wrong with the call.
func toolError(msg string) *mcp.CallToolResult {
	return &mcp.CallToolResult{IsError: true, Content: []mcp.Content{&mcp.TextContent{Text: msg}}}
}

func (us *userServer) searchTools(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	var in searchInput
	if err := json.Unmarshal(req.Params.Arguments, &in); err != nil {
		return toolError("arguments must be an object with a string query and an optional integer limit"), nil
	}
	if in.Limit == 0 {
		in.Limit = toolsearch.DefaultResults
	}
	if in.Limit < 1 || in.Limit > toolsearch.MaxResults {
		return toolError(fmt.Sprintf("limit must be between 1 and %d", toolsearch.MaxResults)), nil
	}
	us.syncMu.Lock()
	ix := us.index
	us.syncMu.Unlock()
	if ix == nil {
		return nil, errUnavailable
	}
	hits, err := ix.Search(in.Query, in.Limit)
	switch {
	case errors.Is(err, toolsearch.ErrQueryTooLong), errors.Is(err, toolsearch.ErrEmptyQuery):
		return toolError(err.Error()), nil
	case err != nil:
		us.g.logger.ErrorContext(ctx, "tool search", slog.String("team_id", us.key.teamID), slog.Any("error", err))
		return nil, errUnavailable
	}
	found := struct {
		Tools []foundTool `json:"tools"`
	}{Tools: make([]foundTool, 0, len(hits))}
	for _, h := range hits {
		found.Tools = append(found.Tools, foundTool{Name: h.Tool.Name, Title: h.Tool.Title,
			Description: h.Tool.Description, InputSchema: h.Tool.InputSchema})
	}
	b, err := json.Marshal(found)
	if err != nil {
		return nil, errUnavailable
	}
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: string(b)}}, StructuredContent: found}, nil
}

// callFoundTool runs the named tool through the same handler as a direct call of it, with the caller's
// session, _meta (and so its progress token), cancellation and input rounds: request logs, metrics and
// traces name the real tool.
func (us *userServer) callFoundTool(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	var in callInput
	if err := json.Unmarshal(req.Params.Arguments, &in); err != nil || in.Name == "" || len(in.Name) > toolsearch.MaxToolNameBytes {
		return toolError(fmt.Sprintf("arguments must be an object with the tool's name (at most %d bytes) and its arguments object", toolsearch.MaxToolNameBytes)), nil
	}
	// A tool's arguments are an object (MCP tools/call); anything else would reach the instance as the
	// client sent it.
	switch args := bytes.TrimSpace(in.Arguments); {
	case len(args) == 0, bytes.Equal(args, []byte("null")):
		in.Arguments = nil
	case args[0] != '{':
		return toolError(fmt.Sprintf("arguments of %q must be a JSON object, or absent", in.Name)), nil
	}
	us.syncMu.Lock()
	reg, ok := us.tools[in.Name]
	us.syncMu.Unlock()
	if !ok {
		return toolError(fmt.Sprintf("no tool named %q; use %s to find one", in.Name, toolsearch.SearchToolName)), nil
	}
	inner := &mcp.CallToolRequest{Session: req.Session, Extra: req.Extra, Params: &mcp.CallToolParamsRaw{
		Meta:           req.Params.Meta,
		Name:           in.Name,
		Arguments:      in.Arguments,
		InputResponses: req.Params.InputResponses,
		RequestState:   req.Params.RequestState,
	}}
	return us.g.callTool(us, reg.rt)(ctx, inner)
}
