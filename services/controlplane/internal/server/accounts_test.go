package server_test

import (
	"context"
	"strings"
	"testing"

	"connectrpc.com/connect"

	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	"github.com/orrery/orrery/gen/orrery/api/v1/apiv1connect"
	"github.com/orrery/orrery/services/controlplane/internal/access"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// withHeader sets one request header on every call.
func withHeader(name, value string) connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			req.Header().Set(name, value)
			return next(ctx, req)
		}
	}
}

func accountClient(url string, opts ...connect.ClientOption) apiv1connect.AccountServiceClient {
	return apiv1connect.NewAccountServiceClient(testClient, url, opts...)
}

// TestSessionLifecycle signs in with a password, uses the session cookie, and signs out.
func TestSessionLifecycle(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	alice := newCaller(t, b.store(), "Alice@Example.test", store.RoleGlobalUser)
	url := b.replicas[0].url

	resp, err := accountClient(url).Login(t.Context(), connect.NewRequest(&apiv1.LoginRequest{
		Email: "alice@example.test", Password: "correct horse battery staple",
	}))
	if err != nil {
		t.Fatal(err)
	}
	setCookie := resp.Header().Get("Set-Cookie")
	for _, attr := range []string{access.SessionCookie + "=", "HttpOnly", "Secure", "SameSite=Strict", "Path=/"} {
		if !strings.Contains(setCookie, attr) {
			t.Errorf("Set-Cookie %q lacks %s", setCookie, attr)
		}
	}
	if resp.Msg.ApiToken != "" {
		t.Error("a browser sign-in returned an API token")
	}
	cookie := strings.Split(setCookie, ";")[0]
	session := accountClient(url, connect.WithInterceptors(withHeader("Cookie", cookie)))
	me, err := session.GetCurrentUser(t.Context(), connect.NewRequest(&apiv1.GetCurrentUserRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if me.Msg.User.Id != alice.user.ID.String() || len(me.Msg.Memberships) != 1 || !me.Msg.Memberships[0].Personal {
		t.Errorf("current user = %v, want alice with her personal team", me.Msg)
	}

	if _, err := session.Logout(t.Context(), connect.NewRequest(&apiv1.LogoutRequest{})); err != nil {
		t.Fatal(err)
	}
	_, err = session.GetCurrentUser(t.Context(), connect.NewRequest(&apiv1.GetCurrentUserRequest{}))
	wantCode(t, "call", err, connect.CodeUnauthenticated, "")
	// The browser still sends its stale cookie; signing in again must work regardless.
	if _, err := session.Login(t.Context(), connect.NewRequest(&apiv1.LoginRequest{
		Email: "alice@example.test", Password: "correct horse battery staple",
	})); err != nil {
		t.Errorf("sign in with a stale cookie: %v", err)
	}
}

// TestLoginLockout locks an account after repeated failures, even for the right password, and audits it.
func TestLoginLockout(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	bob := newCaller(t, b.store(), "bob@example.test", store.RoleGlobalUser)
	client := accountClient(b.replicas[0].url)
	login := func(pw string) error {
		_, err := client.Login(t.Context(), connect.NewRequest(&apiv1.LoginRequest{Email: "bob@example.test", Password: pw}))
		return err
	}
	for range 5 {
		wantCode(t, "wrong password", login("wrong"), connect.CodeUnauthenticated, "")
	}
	// Locked, even the right password is refused, with the answer a wrong one gets (TestLoginEnumeration
	// compares the answers in full).
	wantCode(t, "right password on a locked account", login("correct horse battery staple"), connect.CodeUnauthenticated,
		"wrong email or password")

	events, err := b.store().ListAuditEvents(t.Context(), nil, 1<<62, 100)
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for _, e := range events {
		if e.ActorID != nil && *e.ActorID == bob.user.ID {
			counts[e.Action]++
		}
	}
	if counts["login.failed"] != 5 || counts["login.locked"] != 1 || counts["login.refused_locked"] != 1 {
		t.Errorf("audit counts for bob = %v", counts)
	}
}

// TestAPITokens issues a token through Login, uses it, lists and revokes it.
func TestAPITokens(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	newCaller(t, b.store(), "carol@example.test", store.RoleGlobalUser)
	url := b.replicas[0].url
	resp, err := accountClient(url).Login(t.Context(), connect.NewRequest(&apiv1.LoginRequest{
		Email: "carol@example.test", Password: "correct horse battery staple", ApiTokenName: "laptop",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(resp.Msg.ApiToken, "orpat_") || resp.Header().Get("Set-Cookie") != "" {
		t.Fatalf("CLI sign-in gave token %q and cookie %q", resp.Msg.ApiToken, resp.Header().Get("Set-Cookie"))
	}
	cli := accountClient(url, connect.WithInterceptors(withBearer(resp.Msg.ApiToken)))
	list, err := cli.ListApiTokens(t.Context(), connect.NewRequest(&apiv1.ListApiTokensRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	var laptop *apiv1.ApiToken
	for _, tok := range list.Msg.ApiTokens {
		if tok.Name == "laptop" {
			laptop = tok
		}
	}
	if laptop == nil || laptop.LastUsedAt == nil {
		t.Fatalf("tokens = %v, want laptop with a last use", list.Msg.ApiTokens)
	}
	// Another user's token id is not found, not revoked.
	other := accountClient(url, connect.WithInterceptors(withBearer(newCaller(t, b.store(), "dave@example.test", store.RoleGlobalUser).token)))
	_, err = other.RevokeApiToken(t.Context(), connect.NewRequest(&apiv1.RevokeApiTokenRequest{Id: laptop.Id}))
	wantCode(t, "call", err, connect.CodeNotFound, "")

	if _, err := cli.RevokeApiToken(t.Context(), connect.NewRequest(&apiv1.RevokeApiTokenRequest{Id: laptop.Id})); err != nil {
		t.Fatal(err)
	}
	_, err = cli.GetCurrentUser(t.Context(), connect.NewRequest(&apiv1.GetCurrentUserRequest{}))
	wantCode(t, "call", err, connect.CodeUnauthenticated, "")
}

// TestChangePassword ends other sessions and needs the current password.
func TestChangePassword(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	erin := newCaller(t, b.store(), "erin@example.test", store.RoleGlobalUser)
	url := b.replicas[0].url
	cookie := func() string {
		resp, err := accountClient(url).Login(t.Context(), connect.NewRequest(&apiv1.LoginRequest{
			Email: "erin@example.test", Password: "correct horse battery staple",
		}))
		if err != nil {
			t.Fatal(err)
		}
		return strings.Split(resp.Header().Get("Set-Cookie"), ";")[0]
	}
	phone := accountClient(url, connect.WithInterceptors(withHeader("Cookie", cookie())))
	laptop := accountClient(url, connect.WithInterceptors(withHeader("Cookie", cookie())))

	_, err := laptop.ChangePassword(t.Context(), connect.NewRequest(&apiv1.ChangePasswordRequest{
		CurrentPassword: "guess", NewPassword: "a brand new passphrase",
	}))
	wantCode(t, "call", err, connect.CodeInvalidArgument, "")
	if _, err := laptop.ChangePassword(t.Context(), connect.NewRequest(&apiv1.ChangePasswordRequest{
		CurrentPassword: "correct horse battery staple", NewPassword: "a brand new passphrase",
	})); err != nil {
		t.Fatal(err)
	}
	if _, err := laptop.GetCurrentUser(t.Context(), connect.NewRequest(&apiv1.GetCurrentUserRequest{})); err != nil {
		t.Errorf("the session that changed the password ended: %v", err)
	}
	_, err = phone.GetCurrentUser(t.Context(), connect.NewRequest(&apiv1.GetCurrentUserRequest{}))
	wantCode(t, "call", err, connect.CodeUnauthenticated, "")
	// API tokens are not sessions and keep working.
	cli := accountClient(url, connect.WithInterceptors(withBearer(erin.token)))
	if _, err := cli.GetCurrentUser(t.Context(), connect.NewRequest(&apiv1.GetCurrentUserRequest{})); err != nil {
		t.Error(err)
	}
}
