// Package signin signs orreryctl in to a control plane through the control plane's own OAuth
// authorization server, as the public client "orreryctl": in a browser, with a redirect to a loopback
// listener and PKCE (RFC 8252), or with the device authorization grant (RFC 8628) where no browser runs
// beside the terminal. Either way the tokens are for the control plane's API: its URL is the RFC 8707
// resource.
//
//	tok, err := signin.Device(ctx, signin.Options{URL: "https://orrery.example.com", Out: os.Stderr})
package signin

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	neturl "net/url"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// ClientID is orreryctl's client id, the public client every control plane knows from its migrations.
const ClientID = "orreryctl"

// Scopes are what orreryctl asks for: the API, and a refresh token so a sign-in lasts.
var Scopes = []string{"api", "offline_access"}

// Options say where and how to sign in.
type Options struct {
	// URL is the control plane's base URL, the issuer and the resource.
	URL string
	// HTTPClient makes the requests. Default http.DefaultClient.
	HTTPClient *http.Client
	// Out receives what the user must do: the link to open, the code to type.
	Out io.Writer
	// OpenBrowser opens a link in the user's browser; nil leaves that to the user.
	OpenBrowser func(url string) error
	// Timeout bounds the wait for the user. Default 5 minutes.
	Timeout time.Duration
}

func (o Options) withDefaults() Options {
	if o.HTTPClient == nil {
		o.HTTPClient = http.DefaultClient
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Minute
	}
	return o
}

// metadata is the part of the RFC 8414 document signing in needs.
type metadata struct {
	Issuer                      string   `json:"issuer"`
	AuthorizationEndpoint       string   `json:"authorization_endpoint"`
	TokenEndpoint               string   `json:"token_endpoint"`
	DeviceAuthorizationEndpoint string   `json:"device_authorization_endpoint"`
	GrantTypesSupported         []string `json:"grant_types_supported"`
}

// Config discovers the authorization server of the control plane at url and returns the OAuth client
// configuration for orreryctl there.
func Config(ctx context.Context, client *http.Client, url string) (*oauth2.Config, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/.well-known/oauth-authorization-server", nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reach the control plane at %s: %w", url, err)
	}
	defer resp.Body.Close()
	var md metadata
	if resp.StatusCode != http.StatusOK || json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&md) != nil || md.TokenEndpoint == "" {
		return nil, fmt.Errorf("%s does not look like an Orrery control plane: no OAuth metadata at /.well-known/oauth-authorization-server (status %d)", url, resp.StatusCode)
	}
	return &oauth2.Config{
		ClientID: ClientID,
		Scopes:   Scopes,
		Endpoint: oauth2.Endpoint{
			AuthURL: md.AuthorizationEndpoint, TokenURL: md.TokenEndpoint, DeviceAuthURL: md.DeviceAuthorizationEndpoint,
			AuthStyle: oauth2.AuthStyleInParams,
		},
	}, nil
}

// Device signs in with the device authorization grant: it shows a link and a code, and waits while the user
// approves in any browser.
func Device(ctx context.Context, o Options) (*oauth2.Token, error) {
	o = o.withDefaults()
	cfg, err := Config(ctx, o.HTTPClient, o.URL)
	if err != nil {
		return nil, err
	}
	if cfg.Endpoint.DeviceAuthURL == "" {
		return nil, errors.New("this control plane does not offer device sign-in; run `orreryctl login` without --device")
	}
	ctx = context.WithValue(ctx, oauth2.HTTPClient, o.HTTPClient)
	da, err := cfg.DeviceAuth(ctx, oauth2.SetAuthURLParam("resource", o.URL))
	if err != nil {
		return nil, fmt.Errorf("start device sign-in: %w", describe(err))
	}
	fmt.Fprintf(o.Out, "To sign in, open %s\nand confirm the code %s (or open %s and type it).\n",
		da.VerificationURIComplete, da.UserCode, da.VerificationURI)
	if o.OpenBrowser != nil && da.VerificationURIComplete != "" {
		_ = o.OpenBrowser(da.VerificationURIComplete) // the link is printed either way
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	tok, err := cfg.DeviceAccessToken(ctx, da, oauth2.SetAuthURLParam("resource", o.URL))
	if err != nil {
		return nil, fmt.Errorf("device sign-in: %w", describe(err))
	}
	return tok, nil
}

// Loopback signs in through the browser: it listens on a loopback port, sends the user to the
// authorization page, and takes the code from the redirect back to it.
func Loopback(ctx context.Context, o Options) (*oauth2.Token, error) {
	o = o.withDefaults()
	cfg, err := Config(ctx, o.HTTPClient, o.URL)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for the browser's return: %w", err)
	}
	defer ln.Close()
	cfg.RedirectURL = fmt.Sprintf("http://%s/callback", ln.Addr())
	verifier := oauth2.GenerateVerifier()
	state := randomString()
	authURL := cfg.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("resource", o.URL))

	type result struct {
		code string
		err  error
	}
	results := make(chan result, 1)
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/callback" {
			http.NotFound(w, r)
			return
		}
		q := r.URL.Query()
		// Another page could send the browser here; only the answer to this request carries its state.
		if q.Get("state") != state {
			http.Error(w, "this sign-in is not the one orreryctl is waiting for", http.StatusBadRequest)
			return
		}
		res := result{code: q.Get("code")}
		msg := "Signed in. You can close this tab and return to the terminal."
		if e := q.Get("error"); e != "" || res.code == "" {
			res.err = fmt.Errorf("the authorization server answered %s: %s", e, q.Get("error_description"))
			msg = "Sign-in failed: " + q.Get("error_description")
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, "<!doctype html><title>orreryctl</title><p>%s</p>", html.EscapeString(msg))
		select {
		case results <- res:
		default:
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	fmt.Fprintf(o.Out, "Opening the browser to sign in. If it does not open, visit:\n%s\n", authURL)
	if o.OpenBrowser != nil {
		if err := o.OpenBrowser(authURL); err != nil {
			fmt.Fprintf(o.Out, "(could not open a browser: %v; on a machine without one, use `orreryctl login --device`)\n", err)
		}
	}
	timer := time.NewTimer(o.Timeout)
	defer timer.Stop()
	var res result
	select {
	case res = <-results:
	case <-timer.C:
		return nil, fmt.Errorf("no answer from the browser within %v; run `orreryctl login` again, or use --device", o.Timeout)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if res.err != nil {
		return nil, res.err
	}
	ctx = context.WithValue(ctx, oauth2.HTTPClient, o.HTTPClient)
	tok, err := cfg.Exchange(ctx, res.code, oauth2.VerifierOption(verifier), oauth2.SetAuthURLParam("resource", o.URL))
	if err != nil {
		return nil, fmt.Errorf("exchange the authorization code: %w", describe(err))
	}
	return tok, nil
}

// Refresh returns a valid token for the control plane at url, refreshing tok when it has expired.
func Refresh(ctx context.Context, client *http.Client, url string, tok *oauth2.Token) (*oauth2.Token, error) {
	if tok.Valid() {
		return tok, nil
	}
	if tok.RefreshToken == "" {
		return nil, errors.New("the sign-in has expired")
	}
	cfg := &oauth2.Config{ClientID: ClientID, Scopes: Scopes, Endpoint: oauth2.Endpoint{
		TokenURL: url + "/oauth/token", AuthStyle: oauth2.AuthStyleInParams,
	}}
	ctx = context.WithValue(ctx, oauth2.HTTPClient, client)
	next, err := cfg.TokenSource(ctx, tok).Token()
	if err != nil {
		return nil, fmt.Errorf("refresh the sign-in: %w", describe(err))
	}
	return next, nil
}

// Revoke ends a sign-in at the control plane at url by revoking its refresh token, and with it the grant's
// access tokens (RFC 7009).
func Revoke(ctx context.Context, client *http.Client, url, refreshToken string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/oauth/revoke", strings.NewReader(neturl.Values{
		"token": {refreshToken}, "token_type_hint": {"refresh_token"}, "client_id": {ClientID},
	}.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("revoke: status %d", resp.StatusCode)
	}
	return nil
}

// describe turns an OAuth error answer into its code and description.
func describe(err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.ErrorCode != "" {
		return fmt.Errorf("%s: %s", re.ErrorCode, re.ErrorDescription)
	}
	return err
}

func randomString() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b) // never fails on Linux
	return base64.RawURLEncoding.EncodeToString(b)
}
