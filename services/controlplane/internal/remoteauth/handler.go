package remoteauth

import (
	"context"
	"errors"
	"log/slog"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	"github.com/orrery/orrery/services/controlplane/internal/access"
	"github.com/orrery/orrery/services/controlplane/internal/rpcerr"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// Handler serves RemoteAccountService. The access policy has checked that the caller is a member of the
// request's team; every call acts on the caller's own connection only.
type Handler struct {
	logger    *slog.Logger
	connector *Connector
}

// NewHandler returns a Handler over connector.
func NewHandler(logger *slog.Logger, connector *Connector) *Handler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Handler{logger: logger, connector: connector}
}

// caller is the member making the request and the installation it names.
func caller(ctx context.Context, installationID string) (*access.Principal, uuid.UUID, error) {
	p, err := access.Require(ctx)
	if err != nil {
		return nil, uuid.Nil, err
	}
	if p.TeamRole == "" {
		return nil, uuid.Nil, connect.NewError(connect.CodeFailedPrecondition,
			errors.New("only the team's members connect their accounts to its installations"))
	}
	return p, uuid.MustParse(installationID), nil // validated as a UUID
}

// ConnectRemoteAccount starts the caller's authorization at the installation's remote server.
func (h *Handler) ConnectRemoteAccount(ctx context.Context, req *connect.Request[apiv1.ConnectRemoteAccountRequest]) (*connect.Response[apiv1.ConnectRemoteAccountResponse], error) {
	p, installationID, err := caller(ctx, req.Msg.InstallationId)
	if err != nil {
		return nil, err
	}
	authURL, expires, err := h.connector.Start(ctx, p.TeamID, installationID, p.User.ID)
	for _, known := range []error{ErrNotRemote, ErrNoAuthorization} {
		if errors.Is(err, known) {
			// The detail may name addresses the server's host resolved to: logged, not sent.
			h.logger.InfoContext(ctx, "connect remote account", "installation_id", installationID, "error", err)
			return nil, connect.NewError(connect.CodeFailedPrecondition, known)
		}
	}
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "connect remote account", err)
	}
	return connect.NewResponse(&apiv1.ConnectRemoteAccountResponse{
		AuthorizationUrl: authURL, ExpiresAt: timestamppb.New(expires),
	}), nil
}

// GetRemoteAccount describes the caller's connection to the installation's remote server.
func (h *Handler) GetRemoteAccount(ctx context.Context, req *connect.Request[apiv1.GetRemoteAccountRequest]) (*connect.Response[apiv1.GetRemoteAccountResponse], error) {
	p, installationID, err := caller(ctx, req.Msg.InstallationId)
	if err != nil {
		return nil, err
	}
	conn, err := h.connector.store.RemoteOAuthConnection(ctx, p.TeamID, installationID, p.User.ID)
	if errors.Is(err, store.ErrNotFound) {
		return connect.NewResponse(&apiv1.GetRemoteAccountResponse{}), nil
	}
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "get remote account", err)
	}
	resp := &apiv1.GetRemoteAccountResponse{
		Connected: !conn.Failed, NeedsReconnect: conn.Failed, AuthorizationServer: conn.Issuer, Scope: conn.Scope,
	}
	if conn.ExpiresAt != nil {
		resp.ExpiresAt = timestamppb.New(*conn.ExpiresAt)
	}
	return connect.NewResponse(resp), nil
}

// ListRemoteAccounts lists where each member of the team stands with the installation's remote server.
func (h *Handler) ListRemoteAccounts(ctx context.Context, req *connect.Request[apiv1.ListRemoteAccountsRequest]) (*connect.Response[apiv1.ListRemoteAccountsResponse], error) {
	p, err := access.Require(ctx)
	if err != nil {
		return nil, err
	}
	installationID := uuid.MustParse(req.Msg.InstallationId) // validated as a UUID
	st := h.connector.store
	target, err := st.RemoteInstallationTarget(ctx, p.TeamID, installationID)
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "list remote accounts", err)
	}
	members, err := st.ListMembers(ctx, p.TeamID)
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "list remote accounts", err)
	}
	conns, err := st.InstallationRemoteOAuthConnections(ctx, p.TeamID, installationID)
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "list remote accounts", err)
	}
	states := make(map[uuid.UUID]apiv1.RemoteAccountState, len(conns))
	for _, c := range conns {
		states[c.UserID] = apiv1.RemoteAccountState_REMOTE_ACCOUNT_STATE_CONNECTED
		if c.Failed {
			states[c.UserID] = apiv1.RemoteAccountState_REMOTE_ACCOUNT_STATE_NEEDS_RECONNECT
		}
	}
	resp := &apiv1.ListRemoteAccountsResponse{PerUserAuthorization: target.PerUserAuthorization}
	for _, m := range members {
		state, ok := states[m.ID]
		if !ok {
			state = apiv1.RemoteAccountState_REMOTE_ACCOUNT_STATE_NOT_CONNECTED
		}
		resp.Accounts = append(resp.Accounts, &apiv1.RemoteAccount{UserId: m.ID.String(), Email: m.Email, State: state})
	}
	return connect.NewResponse(resp), nil
}

// DisconnectRemoteAccount forgets the caller's tokens for the installation's remote server.
func (h *Handler) DisconnectRemoteAccount(ctx context.Context, req *connect.Request[apiv1.DisconnectRemoteAccountRequest]) (*connect.Response[apiv1.DisconnectRemoteAccountResponse], error) {
	p, installationID, err := caller(ctx, req.Msg.InstallationId)
	if err != nil {
		return nil, err
	}
	if err := h.connector.Disconnect(ctx, p.TeamID, installationID, p.User.ID); err != nil {
		return nil, rpcerr.From(ctx, h.logger, "disconnect remote account", err)
	}
	return connect.NewResponse(&apiv1.DisconnectRemoteAccountResponse{}), nil
}
