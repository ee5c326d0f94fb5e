package oauth

import (
	"html/template"
	"net/http"

	"github.com/ory/fosite"

	"github.com/orrery/orrery/services/controlplane/internal/htmlpage"
	"github.com/orrery/orrery/services/controlplane/internal/sso"
)

// pageData fills the login and consent pages.
type pageData struct {
	Action       string
	CSRF         string
	ClientName   string
	ClientID     string
	ClientNote   string
	RedirectHost string
	Resource     string
	Scopes       []scopeDescription
	Teams        []teamOption
	User         string
	Error        string
	// IdleDays and MaxDays are how long the client stays connected unused and at most (Config.RefreshTokenTTL
	// and Config.GrantMaxAge), which the consent page states since every client gets a refresh token.
	IdleDays, MaxDays int
	// SignInLinks are the login page's "Sign in with" buttons.
	SignInLinks []sso.SignInLink
}

type scopeDescription struct{ Name, Text string }

type teamOption struct {
	ID, Label string
	Selected  bool
}

var scopeTexts = map[string]string{
	ScopeRead:          "See the team's tools, resources and prompts",
	ScopeExecute:       "Call the team's tools on your behalf",
	ScopeOfflineAccess: "Stay connected (every client may; see below)",
	ScopeAPI:           "Use the Orrery API as you, with your rights in every team you belong to",
}

func describeScopes(scopes []string) []scopeDescription {
	out := make([]scopeDescription, 0, len(scopes))
	for _, s := range scopes {
		out = append(out, scopeDescription{Name: s, Text: scopeTexts[s]})
	}
	return out
}

// clientName is what the pages call a client: its own name when it gave one, its id otherwise.
func clientName(c fosite.Client) string {
	if cl, ok := c.(*client); ok && cl.name != "" {
		return cl.name
	}
	return c.GetID()
}

const pageStyle = `<style>
body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;color:#222}
h1{font-size:1.4rem}label{display:block;margin:.8rem 0 .2rem}input,select{width:100%;padding:.4rem;box-sizing:border-box}
button{margin:1rem .5rem 0 0;padding:.5rem 1.2rem}.error{color:#b00020}.muted{color:#666;font-size:.9rem}code{word-break:break-all}
</style>`

var loginPage = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>Sign in · Orrery</title>` + pageStyle + `</head>
<body>
<h1>Sign in to connect {{.ClientName}}</h1>
<p class="muted">{{.ClientName}} asks to use an Orrery team endpoint, <code>{{.Resource}}</code>.</p>
{{with .Error}}<p class="error">{{.}}</p>{{end}}
<form method="post" action="{{.Action}}">
<input type="hidden" name="csrf" value="{{.CSRF}}">
<input type="hidden" name="action" value="login">
<label for="email">Email</label><input id="email" name="email" type="email" autocomplete="username" required autofocus>
<label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button>
</form>
{{with .SignInLinks}}<p class="muted">Or sign in through your organisation:</p>
{{range .}}<p><a class="sso" href="{{.URL}}">Sign in with {{.DisplayName}}</a></p>{{end}}{{end}}
</body></html>`))

var consentPage = template.Must(template.New("consent").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>Authorize · Orrery</title>` + pageStyle + `</head>
<body>
<h1>Allow {{.ClientName}} to use your team's MCP endpoint?</h1>
<p class="muted">Signed in as {{.User}}. Client id <code>{{.ClientID}}</code>; after you answer, your browser returns to <code>{{.RedirectHost}}</code>.
{{.ClientNote}}</p>
{{with .Error}}<p class="error">{{.}}</p>{{end}}
<p>It will be able to:</p>
<ul>{{range .Scopes}}<li><code>{{.Name}}</code>{{with .Text}}: {{.}}{{end}}</li>{{end}}</ul>
<form method="post" action="{{.Action}}">
<input type="hidden" name="csrf" value="{{.CSRF}}">
<label for="team">Team</label>
<select id="team" name="team">{{range .Teams}}<option value="{{.ID}}"{{if .Selected}} selected{{end}}>{{.Label}}</option>{{end}}</select>
<button type="submit" name="action" value="approve">Allow</button>
<button type="submit" name="action" value="deny">Deny</button>
</form>
<p class="muted">It stays connected without asking you again while it is used at least every {{.IdleDays}} days, for {{.MaxDays}} days at most.
You can withdraw this consent at any time; the client's tokens for the team stop working at once, as they do if you leave the team.</p>
</body></html>`))

var apiConsentPage = template.Must(template.New("api-consent").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>Authorize · Orrery</title>` + pageStyle + `</head>
<body>
<h1>Allow {{.ClientName}} to use Orrery as you?</h1>
<p class="muted">Signed in as {{.User}}. Client id <code>{{.ClientID}}</code>; after you answer, your browser returns to <code>{{.RedirectHost}}</code>.</p>
{{with .Error}}<p class="error">{{.}}</p>{{end}}
<p>It will be able to:</p>
<ul>{{range .Scopes}}<li><code>{{.Name}}</code>{{with .Text}}: {{.}}{{end}}</li>{{end}}</ul>
<form method="post" action="{{.Action}}">
<input type="hidden" name="csrf" value="{{.CSRF}}">
<button type="submit" name="action" value="approve">Allow</button>
<button type="submit" name="action" value="deny">Deny</button>
</form>
<p class="muted">Only continue if you just ran <code>orreryctl login</code> yourself.</p>
</body></html>`))

// render writes a page that no one may frame or cache.
func (s *Server) render(w http.ResponseWriter, status int, t *template.Template, p *pageData) {
	s.renderPage(w, status, t, p)
}

func (s *Server) renderPage(w http.ResponseWriter, status int, t *template.Template, p any) {
	if err := htmlpage.Write(w, status, t, p); err != nil {
		s.logger.Error("render page", "page", t.Name(), "error", err)
	}
}
