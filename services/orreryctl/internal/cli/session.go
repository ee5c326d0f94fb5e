package cli

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"connectrpc.com/connect"
	"golang.org/x/oauth2"

	"github.com/orrery/orrery/gen/orrery/admin/v1/adminv1connect"
	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	"github.com/orrery/orrery/gen/orrery/api/v1/apiv1connect"
	"github.com/orrery/orrery/services/orreryctl/internal/config"
	"github.com/orrery/orrery/services/orreryctl/internal/signin"
)

func (a *App) configPath() (string, error) {
	if a.ConfigPath != "" {
		return a.ConfigPath, nil
	}
	return config.DefaultPath()
}

func (a *App) loadConfig() (*config.File, error) {
	path, err := a.configPath()
	if err != nil {
		return nil, err
	}
	return config.Load(path)
}

func (a *App) saveConfig(f *config.File) error {
	path, err := a.configPath()
	if err != nil {
		return err
	}
	return f.Save(path)
}

// session is a signed-in connection to one control plane.
type session struct {
	url  string
	http *http.Client
	opts []connect.ClientOption
}

var errNotSignedIn = codedError{ExitAuth, errors.New("not signed in: run 'orreryctl login URL', or set ORRERY_TOKEN and ORRERY_URL")}

// session finds the control plane and the credentials to use: --token or ORRERY_TOKEN with --server,
// ORRERY_URL or the context's URL; otherwise the context's sign-in, refreshed (and saved) when it has
// expired.
func (a *App) session(ctx context.Context) (*session, error) {
	name := a.contextName
	if name == "" {
		name = a.env("ORRERY_CONTEXT")
	}
	token := a.token
	if token == "" {
		token = a.env("ORRERY_TOKEN")
	}
	server := a.server
	if server == "" {
		server = a.env("ORRERY_URL")
	}
	f, err := a.loadConfig()
	if err != nil {
		return nil, err
	}
	var cur *config.Context
	if server == "" || token == "" {
		if name == "" && f.Current == "" && token == "" {
			return nil, errNotSignedIn
		}
		if name, cur, err = f.Get(name); err != nil {
			if token != "" {
				return nil, usageError{errors.New("--token needs the control plane's URL: pass --server URL or set ORRERY_URL")}
			}
			return nil, codedError{ExitAuth, err}
		}
	}
	if server == "" {
		server = cur.URL
	}
	if server, err = config.NormalizeURL(server); err != nil {
		return nil, usageError{err}
	}
	if token == "" {
		if cur.AccessToken == "" {
			return nil, codedError{ExitAuth, fmt.Errorf("context %q is signed out: run 'orreryctl login %s'", name, cur.URL)}
		}
		tok := &oauth2.Token{AccessToken: cur.AccessToken, RefreshToken: cur.RefreshToken, Expiry: cur.Expiry}
		next, err := signin.Refresh(ctx, a.HTTPClient, cur.URL, tok)
		if err != nil {
			return nil, codedError{ExitAuth, fmt.Errorf("%w; run 'orreryctl login %s' to sign in again", err, cur.URL)}
		}
		if next.AccessToken != cur.AccessToken {
			cur.AccessToken, cur.Expiry = next.AccessToken, next.Expiry
			if next.RefreshToken != "" {
				cur.RefreshToken = next.RefreshToken
			}
			// The old refresh token is spent: losing the new one would mean signing in again.
			if err := a.saveConfig(f); err != nil {
				return nil, err
			}
		}
		token = cur.AccessToken
	}
	return &session{url: server, http: a.HTTPClient, opts: []connect.ClientOption{connect.WithInterceptors(bearer(token))}}, nil
}

func (s *session) teams() apiv1connect.TeamServiceClient {
	return apiv1connect.NewTeamServiceClient(s.http, s.url, s.opts...)
}
func (s *session) accounts() apiv1connect.AccountServiceClient {
	return apiv1connect.NewAccountServiceClient(s.http, s.url, s.opts...)
}
func (s *session) catalog() apiv1connect.CatalogServiceClient {
	return apiv1connect.NewCatalogServiceClient(s.http, s.url, s.opts...)
}
func (s *session) installations() apiv1connect.InstallationServiceClient {
	return apiv1connect.NewInstallationServiceClient(s.http, s.url, s.opts...)
}
func (s *session) tools() apiv1connect.ToolServiceClient {
	return apiv1connect.NewToolServiceClient(s.http, s.url, s.opts...)
}
func (s *session) instances() apiv1connect.InstanceServiceClient {
	return apiv1connect.NewInstanceServiceClient(s.http, s.url, s.opts...)
}
func (s *session) oauth() apiv1connect.OAuthServiceClient {
	return apiv1connect.NewOAuthServiceClient(s.http, s.url, s.opts...)
}
func (s *session) audit() apiv1connect.AuditServiceClient {
	return apiv1connect.NewAuditServiceClient(s.http, s.url, s.opts...)
}
func (s *session) policies() apiv1connect.PolicyServiceClient {
	return apiv1connect.NewPolicyServiceClient(s.http, s.url, s.opts...)
}
func (s *session) admin() adminv1connect.AdminServiceClient {
	return adminv1connect.NewAdminServiceClient(s.http, s.url, s.opts...)
}

// bearer sends the token with every call, unary or streaming.
type bearer string

func (b bearer) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		req.Header().Set("Authorization", "Bearer "+string(b))
		return next(ctx, req)
	}
}

func (b bearer) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		conn.RequestHeader().Set("Authorization", "Bearer "+string(b))
		return conn
	}
}

func (bearer) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// team resolves a team named by slug or id among the teams the caller can see. An unknown team gets the
// same answer whether it exists or not.
func (s *session) team(ctx context.Context, ref string) (*apiv1.Team, error) {
	if ref == "" {
		return nil, usageError{errors.New("name the team with --team SLUG ('orreryctl teams list' shows yours)")}
	}
	resp, err := s.teams().ListTeams(ctx, connect.NewRequest(&apiv1.ListTeamsRequest{}))
	if err != nil {
		return nil, err
	}
	for _, t := range resp.Msg.GetTeams() {
		if t.GetSlug() == ref || t.GetId() == ref {
			return t, nil
		}
	}
	return nil, notFound(fmt.Errorf("no team %q among yours; 'orreryctl teams list' shows the teams you belong to", ref))
}

// teamScope opens a session and finds the team a command names.
func (a *App) teamScope(ctx context.Context, teamRef string) (*session, *apiv1.Team, error) {
	s, err := a.session(ctx)
	if err != nil {
		return nil, nil, err
	}
	t, err := s.team(ctx, teamRef)
	if err != nil {
		return nil, nil, err
	}
	return s, t, nil
}

// installationScope is teamScope and the team's installation a command names.
func (a *App) installationScope(ctx context.Context, teamRef, installationRef string) (*session, *apiv1.Team, *apiv1.Installation, error) {
	s, t, err := a.teamScope(ctx, teamRef)
	if err != nil {
		return nil, nil, nil, err
	}
	i, err := s.installation(ctx, t.GetId(), installationRef)
	if err != nil {
		return nil, nil, nil, err
	}
	return s, t, i, nil
}

// completeTeams lists the caller's team slugs, for shell completion.
func (a *App) completeTeams(ctx context.Context) []string {
	s, err := a.session(ctx)
	if err != nil {
		return nil
	}
	resp, err := s.teams().ListTeams(ctx, connect.NewRequest(&apiv1.ListTeamsRequest{}))
	if err != nil {
		return nil
	}
	var out []string
	for _, t := range resp.Msg.GetTeams() {
		out = append(out, t.GetSlug())
	}
	return out
}
