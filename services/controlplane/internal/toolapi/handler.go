// Package toolapi serves orrery.api.v1.ToolService: the tools an installation's servers offer, with what
// the team endpoint makes of them, and the team's and each member's selection of them.
package toolapi

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	"github.com/orrery/orrery/internal/tokens"
	"github.com/orrery/orrery/internal/toolname"
	"github.com/orrery/orrery/internal/toolselect"
	"github.com/orrery/orrery/services/controlplane/internal/access"
	"github.com/orrery/orrery/services/controlplane/internal/ratelimit"
	"github.com/orrery/orrery/services/controlplane/internal/rpcerr"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// Handler implements apiv1connect.ToolServiceHandler.
type Handler struct {
	logger *slog.Logger
	store  *store.Store
	// counter loads the tokenizer on the first ListTools, so replicas nobody asks pay nothing for it.
	counter func() (*tokens.Counter, error)
	// counts caches token counts by the SHA-256 of the definition counted: encoding takes about a
	// millisecond a tool, and definitions rarely change, so a repeated listing costs hashes only.
	counts *lru.Cache[[sha256.Size]byte, uint32]
	// changes bounds each user's selection writes, across replicas.
	changes *ratelimit.Limiter
}

// maxDescriptionBytes bounds an installation's description overrides together: they travel to the
// satellites with every member's instance.
const maxDescriptionBytes = 64 << 10

// countCacheSize is how many token counts a replica keeps, about 100 bytes each.
const countCacheSize = 20000

// A user may change selections this often, after a burst of changeBurst.
const (
	changesPerMinute = 30
	changeBurst      = 60
)

// New returns a Handler. Callers are authenticated and authorized by the access policy before a method
// runs.
func New(logger *slog.Logger, st *store.Store) *Handler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	// The size is fixed and positive, so New cannot fail.
	counts, _ := lru.New[[sha256.Size]byte, uint32](countCacheSize)
	return &Handler{logger: logger, store: st, counter: sync.OnceValues(tokens.Load), counts: counts,
		changes: ratelimit.New(st, "tool_selection", changesPerMinute, changeBurst)}
}

// allowChange bounds the caller's selection writes: each is a configure command to every satellite
// serving the team, global ones included, and without a bound one member could fill the queues other
// teams' commands wait in.
func (h *Handler) allowChange(ctx context.Context, p *access.Principal) error {
	return rpcerr.AllowUser(ctx, h.logger, h.changes, p.User.ID, "change tool selection",
		"too many tool selection changes; try again later")
}

// ListTools lists an installation's tools as the caller's endpoint shows them.
func (h *Handler) ListTools(ctx context.Context, req *connect.Request[apiv1.ListToolsRequest]) (*connect.Response[apiv1.ListToolsResponse], error) {
	p, err := access.Require(ctx)
	if err != nil {
		return nil, err
	}
	// protovalidate has checked the id.
	id, _ := uuid.Parse(req.Msg.InstallationId)
	inst, err := h.store.GetInstallation(ctx, p.TeamID, id)
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "installation "+id.String(), err)
	}
	v := store.Viewer{TeamID: p.TeamID}
	if !p.IsTeamAdmin() {
		v.UserID = &p.User.ID
	}
	found, err := h.store.InstallationTools(ctx, v, id)
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "list tools", err)
	}
	sel, err := h.selection(ctx, p.TeamID, id, p.User.ID)
	if err != nil {
		return nil, err
	}
	counter, err := h.counter()
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "load tokenizer", err)
	}
	resp := &apiv1.ListToolsResponse{Tools: make([]*apiv1.Tool, 0, len(found))}
	for _, t := range found {
		out, err := h.toolToProto(t, inst.EffectiveToolPrefix(), sel, counter)
		if err != nil {
			return nil, rpcerr.From(ctx, h.logger, "list tools", err)
		}
		resp.Tools = append(resp.Tools, out)
		if out.Selected && !out.Hidden {
			resp.TotalTokens += out.TokenCount
		}
	}
	return connect.NewResponse(resp), nil
}

// selection is what decides the caller's tools of an installation.
func (h *Handler) selection(ctx context.Context, teamID, installationID, userID uuid.UUID) (toolselect.Selection, error) {
	team, err := h.store.ToolSelectionOf(ctx, teamID, installationID)
	if err != nil {
		return toolselect.Selection{}, rpcerr.From(ctx, h.logger, "installation "+installationID.String(), err)
	}
	hidden, err := h.store.HiddenTools(ctx, teamID, installationID, userID)
	if err != nil {
		return toolselect.Selection{}, rpcerr.From(ctx, h.logger, "installation "+installationID.String(), err)
	}
	return toolselect.Selection{Allow: team.Allow, Deny: team.Deny, Hidden: hidden, Descriptions: team.Descriptions}, nil
}

// toolToProto describes a tool as the team endpoint lists it. Its token count is that of the JSON object
// a client receives in tools/list, made by the same SDK the satellite lists it with.
func (h *Handler) toolToProto(t store.Tool, prefix string, sel toolselect.Selection, counter *tokens.Counter) (*apiv1.Tool, error) {
	listed := &mcp.Tool{
		Name:        toolname.Public(prefix, t.Name),
		Title:       t.Title,
		Description: sel.Description(t.Name, t.Description),
		InputSchema: rawOrNil(t.InputSchema),
	}
	if listed.InputSchema == nil {
		listed.InputSchema = json.RawMessage(`{"type":"object"}`)
	}
	if out := rawOrNil(t.OutputSchema); out != nil {
		listed.OutputSchema = out
	}
	if len(t.Annotations) > 0 {
		listed.Annotations = new(mcp.ToolAnnotations)
		if err := json.Unmarshal(t.Annotations, listed.Annotations); err != nil {
			return nil, errors.New("decode annotations of tool " + t.Name + ": " + err.Error())
		}
	}
	def, err := json.Marshal(listed)
	if err != nil {
		return nil, errors.New("encode tool " + t.Name + ": " + err.Error())
	}
	key := sha256.Sum256(def)
	n, ok := h.counts.Get(key)
	if !ok {
		n = uint32(counter.Count(string(def)))
		h.counts.Add(key, n)
	}
	out := &apiv1.Tool{
		Name: t.Name, ExposedName: listed.Name, Title: t.Title, Description: listed.Description,
		ServerDescription: t.Description, TokenCount: n, Selected: sel.Selected(t.Name),
		Hidden: sel.IsHidden(t.Name), DiscoveredAt: timestamppb.New(t.DiscoveredAt),
	}
	if out.InputSchema, err = structOf(t.InputSchema); err != nil {
		return nil, err
	}
	if out.OutputSchema, err = structOf(t.OutputSchema); err != nil {
		return nil, err
	}
	if out.Annotations, err = structOf(t.Annotations); err != nil {
		return nil, err
	}
	return out, nil
}

// rawOrNil returns raw as a JSON value, or nil when it holds nothing.
func rawOrNil(raw json.RawMessage) any {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	return raw
}

// structOf decodes a stored JSON object; nothing stored is nil.
func structOf(raw json.RawMessage) (*structpb.Struct, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	s := &structpb.Struct{}
	if err := s.UnmarshalJSON(raw); err != nil {
		return nil, errors.New("decode stored JSON object: " + err.Error())
	}
	return s, nil
}

// GetToolSelection returns the team's selection of an installation's tools and the caller's hidden tools.
func (h *Handler) GetToolSelection(ctx context.Context, req *connect.Request[apiv1.GetToolSelectionRequest]) (*connect.Response[apiv1.GetToolSelectionResponse], error) {
	p, err := access.Require(ctx)
	if err != nil {
		return nil, err
	}
	id, _ := uuid.Parse(req.Msg.InstallationId)
	sel, err := h.selection(ctx, p.TeamID, id, p.User.ID)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&apiv1.GetToolSelectionResponse{
		Selection: &apiv1.ToolSelection{Allow: sel.Allow, Deny: sel.Deny, Descriptions: sel.Descriptions},
		Hidden:    sel.Hidden,
	}), nil
}

// SetToolSelection replaces the team's selection of an installation's tools.
func (h *Handler) SetToolSelection(ctx context.Context, req *connect.Request[apiv1.SetToolSelectionRequest]) (*connect.Response[apiv1.SetToolSelectionResponse], error) {
	p, err := access.Require(ctx)
	if err != nil {
		return nil, err
	}
	id, _ := uuid.Parse(req.Msg.InstallationId)
	in := req.Msg.Selection
	for _, check := range []error{
		toolselect.CheckPatterns("selection.allow", in.Allow),
		toolselect.CheckPatterns("selection.deny", in.Deny),
	} {
		if check != nil {
			return nil, connect.NewError(connect.CodeInvalidArgument, check)
		}
	}
	total := 0
	for name, d := range in.Descriptions {
		total += len(name) + len(d)
	}
	if total > maxDescriptionBytes {
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Errorf(
			"selection.descriptions: %d bytes in all, at most %d", total, maxDescriptionBytes))
	}
	if err := h.allowChange(ctx, p); err != nil {
		return nil, err
	}
	sel := store.ToolSelection{Allow: in.Allow, Deny: in.Deny, Descriptions: in.Descriptions}
	if err := h.store.SetToolSelection(ctx, p.TeamID, id, sel); err != nil {
		return nil, rpcerr.From(ctx, h.logger, "installation "+id.String(), err)
	}
	// The change itself is made; a failed audit append is logged, not the caller's error.
	if err := h.store.Audit(ctx, store.AuditEvent{
		ActorID: &p.User.ID, Actor: p.User.Email, TeamID: &p.TeamID, Action: "installation.tool_selection_changed",
		Target: id.String(), Details: map[string]string{
			"allow": strings.Join(in.Allow, " "), "deny": strings.Join(in.Deny, " "),
			"descriptions": strconv.Itoa(len(in.Descriptions)),
		},
	}); err != nil {
		h.logger.ErrorContext(ctx, "append audit event", slog.String("action", "installation.tool_selection_changed"), slog.Any("error", err))
	}
	return connect.NewResponse(&apiv1.SetToolSelectionResponse{Selection: &apiv1.ToolSelection{
		Allow: sel.Allow, Deny: sel.Deny, Descriptions: sel.Descriptions,
	}}), nil
}

// SetHiddenTools replaces the caller's hidden tools of an installation.
func (h *Handler) SetHiddenTools(ctx context.Context, req *connect.Request[apiv1.SetHiddenToolsRequest]) (*connect.Response[apiv1.SetHiddenToolsResponse], error) {
	p, err := access.Require(ctx)
	if err != nil {
		return nil, err
	}
	id, _ := uuid.Parse(req.Msg.InstallationId)
	if err := toolselect.CheckPatterns("hidden", req.Msg.Hidden); err != nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, err)
	}
	if err := h.allowChange(ctx, p); err != nil {
		return nil, err
	}
	if err := h.store.SetHiddenTools(ctx, p.TeamID, id, p.User.ID, req.Msg.Hidden); err != nil {
		return nil, rpcerr.From(ctx, h.logger, "installation "+id.String(), err)
	}
	return connect.NewResponse(&apiv1.SetHiddenToolsResponse{Hidden: req.Msg.Hidden}), nil
}
