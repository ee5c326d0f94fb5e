package cli

import (
	"errors"
	"fmt"
	"time"

	"connectrpc.com/connect"
	"github.com/spf13/cobra"
	"golang.org/x/oauth2"

	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	"github.com/orrery/orrery/services/orreryctl/internal/config"
	"github.com/orrery/orrery/services/orreryctl/internal/signin"
)

func (a *App) loginCommand() *cobra.Command {
	var device, noBrowser bool
	var timeout time.Duration
	c := &cobra.Command{
		Use:   "login [URL]",
		Short: "Sign in to a control plane",
		Long: `Sign in to a control plane through its own OAuth server, as the public client orreryctl.

By default a browser opens on the sign-in page and returns to orreryctl on a loopback address (PKCE
protects the code). With --device, orreryctl shows a link and a short code to confirm in a browser on any
other machine: for SSH sessions and machines without a browser.

The sign-in is saved as a context named after the control plane's host (or --context NAME), which becomes
the current context. Without URL, the current context signs in again.`,
		Example: `  orreryctl login https://orrery.example.com
  orreryctl login https://orrery.example.com --device
  orreryctl login https://staging.orrery.example.com --context staging`,
		Args: args(cobra.MaximumNArgs(1)),
		RunE: func(c *cobra.Command, argv []string) error {
			f, err := a.loadConfig()
			if err != nil {
				return err
			}
			name := a.contextName
			var url string
			if len(argv) == 1 {
				if url, err = config.NormalizeURL(argv[0]); err != nil {
					return usageError{err}
				}
				if name == "" {
					name = config.NameFor(url)
				}
			} else {
				var cur *config.Context
				if name, cur, err = f.Get(name); err != nil {
					return usageError{errors.New("name the control plane: orreryctl login URL")}
				}
				url = cur.URL
			}
			opts := signin.Options{URL: url, HTTPClient: a.HTTPClient, Out: a.Err, Timeout: timeout}
			if !noBrowser {
				opts.OpenBrowser = a.OpenBrowser
			}
			var tok *oauth2.Token
			if device {
				tok, err = signin.Device(c.Context(), opts)
			} else {
				tok, err = signin.Loopback(c.Context(), opts)
			}
			if err != nil {
				return codedError{ExitAuth, err}
			}
			s := &session{url: url, http: a.HTTPClient, opts: []connect.ClientOption{connect.WithInterceptors(bearer(tok.AccessToken))}}
			me, err := s.accounts().GetCurrentUser(c.Context(), connect.NewRequest(&apiv1.GetCurrentUserRequest{}))
			if err != nil {
				return fmt.Errorf("signed in, but the API refused the new token: %w", err)
			}
			f.Set(name, &config.Context{URL: url, User: me.Msg.GetUser().GetEmail(), AccessToken: tok.AccessToken,
				RefreshToken: tok.RefreshToken, Expiry: tok.Expiry})
			f.Current = name
			if err := a.saveConfig(f); err != nil {
				return err
			}
			fmt.Fprintf(a.Err, "Signed in to %s as %s (context %q).\n", url, me.Msg.GetUser().GetEmail(), name)
			return nil
		},
	}
	c.Flags().BoolVar(&device, "device", false, "sign in with a code confirmed in a browser elsewhere (RFC 8628)")
	c.Flags().BoolVar(&noBrowser, "no-browser", false, "print the sign-in link instead of opening a browser")
	c.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "how long to wait for the browser")
	return c
}

func (a *App) logoutCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "logout",
		Short: "Forget the current context's sign-in",
		Long:  "Revoke and forget the sign-in of the current context (or --context NAME), keeping its URL for the next login.",
		Args:  args(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			f, err := a.loadConfig()
			if err != nil {
				return err
			}
			name, cur, err := f.Get(a.contextName)
			if err != nil {
				return usageError{err}
			}
			revoked := ""
			if cur.RefreshToken != "" {
				// Forgetting the tokens is not enough: a copy of the file would still sign in.
				if err := signin.Revoke(c.Context(), a.HTTPClient, cur.URL, cur.RefreshToken); err != nil {
					fmt.Fprintf(a.Err, "Could not revoke the sign-in at %s (%v); it ends when its tokens expire.\n", cur.URL, err)
				} else {
					revoked = " and revoked the sign-in"
				}
			}
			cur.AccessToken, cur.RefreshToken, cur.Expiry = "", "", time.Time{}
			if err := a.saveConfig(f); err != nil {
				return err
			}
			fmt.Fprintf(a.Err, "Signed out of %q%s.\n", name, revoked)
			return nil
		},
	}
}

func (a *App) contextsCommand() *cobra.Command {
	c := &cobra.Command{
		Use:     "contexts",
		Aliases: []string{"context"},
		Short:   "List the control planes signed in to, or switch between them",
		Example: `  orreryctl contexts list
  orreryctl contexts use staging`,
	}
	c.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List contexts; * marks the current one",
		Args:  args(cobra.NoArgs),
		RunE: func(*cobra.Command, []string) error {
			f, err := a.loadConfig()
			if err != nil {
				return err
			}
			var rows [][]string
			for _, n := range f.Names() {
				cur, ctx := "", f.Contexts[n]
				if n == f.Current {
					cur = "*"
				}
				state := "signed in"
				if ctx.AccessToken == "" {
					state = "signed out"
				}
				rows = append(rows, []string{cur, n, ctx.URL, ctx.User, state})
			}
			if a.output != "table" {
				return usageError{errors.New("contexts list prints tables only; the file itself is JSON")}
			}
			return writeTable(a.Out, []string{"CURRENT", "NAME", "URL", "USER", "STATE"}, rows)
		},
	}, &cobra.Command{
		Use:   "use NAME",
		Short: "Make a context the current one",
		Args:  args(cobra.ExactArgs(1)),
		ValidArgsFunction: func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
			f, err := a.loadConfig()
			if err != nil {
				return nil, cobra.ShellCompDirectiveError
			}
			return f.Names(), cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(_ *cobra.Command, argv []string) error {
			f, err := a.loadConfig()
			if err != nil {
				return err
			}
			if _, _, err := f.Get(argv[0]); err != nil {
				return notFound(err)
			}
			f.Current = argv[0]
			return a.saveConfig(f)
		},
	})
	return c
}

func (a *App) whoamiCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "whoami",
		Short: "Show who you are signed in as, and your teams",
		Args:  args(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			s, err := a.session(c.Context())
			if err != nil {
				return err
			}
			resp, err := s.accounts().GetCurrentUser(c.Context(), connect.NewRequest(&apiv1.GetCurrentUserRequest{}))
			if err != nil {
				return err
			}
			u := resp.Msg.GetUser()
			var rows [][]string
			for _, m := range resp.Msg.GetMemberships() {
				rows = append(rows, []string{u.GetEmail(), enumName(u.GetGlobalRole().String(), "GLOBAL_ROLE_"), m.GetTeamSlug(),
					enumName(m.GetRole().String(), "TEAM_ROLE_")})
			}
			return a.show(resp.Msg, []string{"USER", "GLOBAL ROLE", "TEAM", "ROLE"}, rows)
		},
	}
}
