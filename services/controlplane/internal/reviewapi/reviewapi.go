// Package reviewapi serves orrery.api.v1.AccessReviewService: who in a team can reach which installations,
// with which OAuth scopes, and when they last used them, as rows and as CSV or JSON files. The access
// policy lets only the team's admins (and global admins) ask, and every query is the named team's.
package reviewapi

import (
	"bytes"
	"context"
	"encoding/csv"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/genproto/googleapis/api/httpbody"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	"github.com/orrery/orrery/services/controlplane/internal/rpcerr"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// defaultDays is how many days back calls are counted when a request does not say.
const defaultDays = 30

// Handler implements apiv1connect.AccessReviewServiceHandler.
type Handler struct {
	logger *slog.Logger
	store  *store.Store
	now    func() time.Time
}

// New returns a Handler.
func New(logger *slog.Logger, st *store.Store) *Handler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Handler{logger: logger, store: st, now: time.Now}
}

func (h *Handler) review(ctx context.Context, teamID string, days uint32) (*apiv1.GetAccessReviewResponse, error) {
	if days == 0 {
		days = defaultDays
	}
	team, _ := uuid.Parse(teamID)
	now := h.now()
	rows, err := h.store.AccessReview(ctx, team, now.Add(-time.Duration(days)*24*time.Hour))
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "access review", err)
	}
	resp := &apiv1.GetAccessReviewResponse{GeneratedAt: timestamppb.New(now)}
	for _, r := range rows {
		pr := &apiv1.AccessReviewRow{
			UserId: r.UserID.String(), Email: r.Email, UserName: r.UserName, Role: roleToProto(r.Role),
			InstallationId: r.InstallationID.String(), InstallationName: r.InstallationName, Scopes: r.Scopes,
			Calls: uint64(r.Calls),
		}
		if r.LastUsed != nil {
			pr.LastUsedAt = timestamppb.New(*r.LastUsed)
		}
		resp.Rows = append(resp.Rows, pr)
	}
	return resp, nil
}

func roleToProto(role string) apiv1.TeamRole {
	if role == store.RoleTeamAdmin {
		return apiv1.TeamRole_TEAM_ROLE_ADMIN
	}
	return apiv1.TeamRole_TEAM_ROLE_USER
}

// GetAccessReview returns the team's review as rows.
func (h *Handler) GetAccessReview(ctx context.Context, req *connect.Request[apiv1.GetAccessReviewRequest]) (*connect.Response[apiv1.GetAccessReviewResponse], error) {
	resp, err := h.review(ctx, req.Msg.TeamId, req.Msg.Days)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(resp), nil
}

// CSVHeader is the first line of a CSV export.
var CSVHeader = []string{"email", "user_name", "user_id", "role", "installation_name", "installation_id", "scopes", "last_used_at", "calls"}

// ExportAccessReview returns the team's review as a CSV or JSON file.
func (h *Handler) ExportAccessReview(ctx context.Context, req *connect.Request[apiv1.ExportAccessReviewRequest]) (*connect.Response[httpbody.HttpBody], error) {
	resp, err := h.review(ctx, req.Msg.TeamId, req.Msg.Days)
	if err != nil {
		return nil, err
	}
	if req.Msg.Format == apiv1.AccessReviewFormat_ACCESS_REVIEW_FORMAT_JSON {
		var buf bytes.Buffer
		buf.WriteByte('[')
		for i, r := range resp.Rows {
			if i > 0 {
				buf.WriteByte(',')
			}
			raw, err := protojson.Marshal(r)
			if err != nil {
				return nil, rpcerr.From(ctx, h.logger, "encode access review", err)
			}
			buf.Write(raw)
		}
		buf.WriteString("]\n")
		return connect.NewResponse(&httpbody.HttpBody{ContentType: "application/json", Data: buf.Bytes()}), nil
	}
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	_ = w.Write(CSVHeader) // a bytes.Buffer does not fail
	for _, r := range resp.Rows {
		lastUsed := ""
		if r.LastUsedAt != nil {
			lastUsed = r.LastUsedAt.AsTime().UTC().Format(time.RFC3339)
		}
		role := "team_user"
		if r.Role == apiv1.TeamRole_TEAM_ROLE_ADMIN {
			role = "team_admin"
		}
		_ = w.Write([]string{
			neutralize(r.Email), neutralize(r.UserName), r.UserId, role, neutralize(r.InstallationName), r.InstallationId,
			strings.Join(r.Scopes, " "), lastUsed, strconv.FormatUint(r.Calls, 10),
		})
	}
	w.Flush()
	return connect.NewResponse(&httpbody.HttpBody{ContentType: "text/csv; charset=utf-8", Data: buf.Bytes()}), nil
}

// neutralize keeps a name a member chose from being read as a formula by a spreadsheet that opens the
// export (CSV injection): a leading =, +, -, @, tab or carriage return gets a quote in front.
func neutralize(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}
