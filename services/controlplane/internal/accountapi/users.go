package accountapi

import (
	"context"
	"errors"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	"github.com/orrery/orrery/services/controlplane/internal/access"
	"github.com/orrery/orrery/services/controlplane/internal/page"
	"github.com/orrery/orrery/services/controlplane/internal/password"
	"github.com/orrery/orrery/services/controlplane/internal/rpcerr"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// CreateUser creates a user with a personal team.
func (h *Handler) CreateUser(ctx context.Context, req *connect.Request[apiv1.CreateUserRequest]) (*connect.Response[apiv1.CreateUserResponse], error) {
	p, err := access.Require(ctx)
	if err != nil {
		return nil, err
	}
	hash, err := password.Hash(ctx, req.Msg.Password)
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "create user", err)
	}
	role := store.RoleGlobalUser
	if req.Msg.GlobalRole == apiv1.GlobalRole_GLOBAL_ROLE_ADMIN {
		role = store.RoleGlobalAdmin
	}
	user, team, err := h.store.CreateAccount(ctx, store.NewAccount{
		Email: req.Msg.Email, Name: req.Msg.Name, PasswordHash: hash, GlobalRole: role,
	})
	if errors.Is(err, store.ErrAlreadyExists) {
		return nil, connect.NewError(connect.CodeAlreadyExists, errors.New("email: a user with this email exists"))
	}
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "create user", err)
	}
	h.audit(ctx, &p.User, nil, "user.created", user.ID.String(), map[string]string{"email": user.Email, "global_role": role})
	return connect.NewResponse(&apiv1.CreateUserResponse{User: userToProto(user), PersonalTeamId: team.ID.String()}), nil
}

// ListUsers lists users, oldest first.
func (h *Handler) ListUsers(ctx context.Context, req *connect.Request[apiv1.ListUsersRequest]) (*connect.Response[apiv1.ListUsersResponse], error) {
	cursor, err := page.DecodeToken(req.Msg.PageToken)
	if err != nil {
		return nil, err
	}
	size := page.Size(req.Msg.PageSize)
	users, err := h.store.ListUsers(ctx, cursor, size)
	if err != nil {
		return nil, rpcerr.From(ctx, h.logger, "list users", err)
	}
	resp := &apiv1.ListUsersResponse{NextPageToken: page.NextToken(users, size, func(u store.User) (time.Time, uuid.UUID) {
		return u.CreatedAt, u.ID
	})}
	for _, u := range users {
		resp.Users = append(resp.Users, userToProto(u))
	}
	return connect.NewResponse(resp), nil
}

// SetGlobalRole changes a user's global role; the last global admin cannot be demoted.
func (h *Handler) SetGlobalRole(ctx context.Context, req *connect.Request[apiv1.SetGlobalRoleRequest]) (*connect.Response[apiv1.SetGlobalRoleResponse], error) {
	p, err := access.Require(ctx)
	if err != nil {
		return nil, err
	}
	userID := uuid.MustParse(req.Msg.UserId) // validated as a UUID
	role := store.RoleGlobalUser
	if req.Msg.GlobalRole == apiv1.GlobalRole_GLOBAL_ROLE_ADMIN {
		role = store.RoleGlobalAdmin
	}
	if err := h.store.SetGlobalRole(ctx, userID, role); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return nil, connect.NewError(connect.CodeFailedPrecondition, errors.New("the last global admin cannot be demoted"))
		}
		return nil, rpcerr.From(ctx, h.logger, "set global role", err)
	}
	h.audit(ctx, &p.User, nil, "user.role_changed", userID.String(), map[string]string{"global_role": role})
	return connect.NewResponse(&apiv1.SetGlobalRoleResponse{}), nil
}
