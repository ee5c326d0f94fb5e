// Package oauthtest drives the control plane's login and consent pages the way a browser would, so tests
// can run the authorization code flow without one.
//
//	br := oauthtest.NewBrowser()
//	q, err := br.Authorize(ctx, authURL, "ada@example.test", "password")
//	code := q.Get("code")
package oauthtest

import (
	"context"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
)

// Browser keeps cookies by hand and follows no redirects, so the redirect back to the client can be
// read. A cookie jar would not do: the session cookie is Secure, and tests speak plain HTTP.
type Browser struct {
	cookies map[string]string
	client  *http.Client
}

// NewBrowser returns a browser without cookies.
func NewBrowser() *Browser {
	return &Browser{cookies: map[string]string{}, client: &http.Client{
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// Page is an answer: its status, redirect target and body.
type Page struct {
	Status   int
	Location string
	Body     string
}

// Do sends a GET, or with form a POST of it, and returns the answer.
func (b *Browser) Do(ctx context.Context, method, u string, form url.Values) (Page, error) {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return Page{}, err
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for name, value := range b.cookies {
		req.AddCookie(&http.Cookie{Name: name, Value: value})
	}
	resp, err := b.client.Do(req)
	if err != nil {
		return Page{}, err
	}
	defer resp.Body.Close()
	for _, c := range resp.Cookies() {
		if c.MaxAge < 0 {
			delete(b.cookies, c.Name)
		} else {
			b.cookies[c.Name] = c.Value
		}
	}
	raw, err := io.ReadAll(resp.Body)
	return Page{Status: resp.StatusCode, Location: resp.Header.Get("Location"), Body: string(raw)}, err
}

// Cookie returns the value of the browser's cookie name, "" when it has none.
func (b *Browser) Cookie(name string) string { return b.cookies[name] }

var (
	csrfField  = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	teamOption = regexp.MustCompile(`<option value="([^"]+)"( selected)?>`)
)

// CSRF returns the CSRF token of a login or consent page.
func CSRF(page string) (string, error) {
	m := csrfField.FindStringSubmatch(page)
	if m == nil {
		return "", errors.New("oauthtest: no CSRF token in the page")
	}
	return html.UnescapeString(m[1]), nil
}

// IsConsent reports whether a page is the consent page.
func IsConsent(p Page) bool {
	return p.Status == http.StatusOK && strings.Contains(p.Body, `value="approve"`)
}

// SignIn opens authURL, expects the login page, signs in and returns the next answer: the consent page, or
// the redirect to the client when consent was given before.
func (b *Browser) SignIn(ctx context.Context, authURL, email, password string) (Page, error) {
	p, err := b.Do(ctx, http.MethodGet, authURL, nil)
	if err != nil {
		return Page{}, err
	}
	if p.Status != http.StatusOK || !strings.Contains(p.Body, `name="password"`) {
		return p, fmt.Errorf("oauthtest: want the login page, got %d %s%s", p.Status, p.Location, p.Body)
	}
	csrf, err := CSRF(p.Body)
	if err != nil {
		return p, err
	}
	return b.Do(ctx, http.MethodPost, authURL, url.Values{
		"csrf": {csrf}, "action": {"login"}, "email": {email}, "password": {password},
	})
}

// Approve posts the consent page for the team it preselects and returns the redirect's query.
func (b *Browser) Approve(ctx context.Context, authURL string, consent Page) (url.Values, error) {
	csrf, err := CSRF(consent.Body)
	if err != nil {
		return nil, err
	}
	var team string
	for _, m := range teamOption.FindAllStringSubmatch(consent.Body, -1) {
		if m[2] != "" {
			team = m[1]
		}
	}
	p, err := b.Do(ctx, http.MethodPost, authURL, url.Values{"csrf": {csrf}, "action": {"approve"}, "team": {team}})
	if err != nil {
		return nil, err
	}
	return RedirectQuery(p)
}

// Authorize signs in at authURL, consents when asked, and returns the query of the redirect to the client:
// code, state and iss, or error.
func (b *Browser) Authorize(ctx context.Context, authURL, email, password string) (url.Values, error) {
	p, err := b.SignIn(ctx, authURL, email, password)
	if err != nil {
		return nil, err
	}
	if IsConsent(p) {
		return b.Approve(ctx, authURL, p)
	}
	return RedirectQuery(p)
}

// RedirectQuery is the query of a redirect to the client.
func RedirectQuery(p Page) (url.Values, error) {
	if p.Status != http.StatusSeeOther && p.Status != http.StatusFound {
		return nil, fmt.Errorf("oauthtest: want a redirect to the client, got %d %s", p.Status, p.Body)
	}
	u, err := url.Parse(p.Location)
	if err != nil {
		return nil, err
	}
	return u.Query(), nil
}

// DeviceDecision opens the device verification link verifyURL (a verification_uri_complete), signs in
// when asked, and approves the request, or denies it unless approve. It returns the last page: on
// success, the one that says the device was signed in or denied.
func (b *Browser) DeviceDecision(ctx context.Context, verifyURL, email, password string, approve bool) (Page, error) {
	p, err := b.Do(ctx, http.MethodGet, verifyURL, nil)
	if err != nil {
		return p, err
	}
	if strings.Contains(p.Body, `name="password"`) {
		csrf, err := CSRF(p.Body)
		if err != nil {
			return p, err
		}
		u, err := url.Parse(verifyURL)
		if err != nil {
			return p, err
		}
		if p, err = b.Do(ctx, http.MethodPost, verifyURL, url.Values{"csrf": {csrf}, "action": {"login"},
			"email": {email}, "password": {password}, "user_code": {u.Query().Get("user_code")}}); err != nil {
			return p, err
		}
	}
	if p.Status != http.StatusOK || !IsConsent(p) {
		return p, fmt.Errorf("oauthtest: want the device confirmation page, got %d %s", p.Status, p.Body)
	}
	csrf, err := CSRF(p.Body)
	if err != nil {
		return p, err
	}
	code := userCodeField.FindStringSubmatch(p.Body)
	if code == nil {
		return p, errors.New("oauthtest: no user code in the confirmation page")
	}
	action := "deny"
	if approve {
		action = "approve"
	}
	return b.Do(ctx, http.MethodPost, verifyURL, url.Values{"csrf": {csrf}, "action": {action}, "user_code": {html.UnescapeString(code[1])}})
}

var userCodeField = regexp.MustCompile(`name="user_code" value="([^"]+)"`)
