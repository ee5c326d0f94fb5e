// Package oidctest runs a real OpenID Connect provider in-process for tests: the provider package of
// github.com/zitadel/oidc/v3 over its example in-memory storage, on loopback. It signs ID tokens with RS256
// and publishes its key set like any provider; the test decides who signs in, their email, whether the
// provider vouches for it and their groups, and can make the provider sign with a key it does not publish,
// to check that a relying party refuses the result.
//
//	op := oidctest.New(t, oidctest.Client{ID: "orrery", Secret: "s", RedirectURI: cp + "/sso/callback"})
//	op.SetUser(oidctest.User{ID: "u1", Email: "ada@example.test", EmailVerified: true, Groups: []string{"eng"}})
//	op.SignInAs("u1")
package oidctest

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/text/language"
)

// Client is the relying party the provider knows: a confidential web client.
type Client struct {
	ID, Secret, RedirectURI string
}

// User is a person at the provider.
type User struct {
	ID            string
	Email         string
	EmailVerified bool
	Name          string
	Groups        []string
}

// password is every user's password at the provider; the login page types it for them.
const password = "provider-password"

// Provider is a running OpenID provider.
type Provider struct {
	// Issuer is the provider's issuer URL; its discovery document is below it.
	Issuer string

	mu        sync.Mutex
	users     map[string]User
	signInAs  atomic.Value // string
	wrongKey  atomic.Bool
	otherKey  *rsa.PrivateKey
	refreshes atomic.Int64
}

// New starts a provider that knows the clients, stopped when the test ends.
func New(t testing.TB, clients ...Client) *Provider {
	t.Helper()
	hs := httptest.NewUnstartedServer(nil)
	p := &Provider{Issuer: "http://" + hs.Listener.Addr().String(), users: map[string]User{}}
	p.signInAs.Store("")
	var err error
	if p.otherKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	known := map[string]*storage.Client{}
	for _, c := range clients {
		known[c.ID] = storage.WebClient(c.ID, c.Secret, c.RedirectURI)
	}
	st := &opStorage{Storage: storage.NewStorageWithClients(userStore{p}, known), p: p}
	provider, err := op.NewProvider(&op.Config{
		CryptoKey:             sha256.Sum256([]byte(p.Issuer)),
		CodeMethodS256:        true,
		AuthMethodPost:        true,
		GrantTypeRefreshToken: true,
		SupportedUILocales:    []language.Tag{language.English},
	}, st, op.StaticIssuer(p.Issuer), op.WithAllowInsecure())
	if err != nil {
		hs.Listener.Close()
		t.Fatal(err)
	}
	callback := op.AuthCallbackURL(provider)
	mux := http.NewServeMux()
	// The login page of the example client: it signs in whoever the test named, at once.
	mux.Handle("/login/username", op.NewIssuerInterceptor(provider.IssuerFromRequest).HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.URL.Query().Get("authRequestID")
		if err := st.CheckUsernamePassword(p.signInAs.Load().(string), password, id); err != nil {
			http.Error(w, "sign-in failed: "+err.Error(), http.StatusForbidden)
			return
		}
		http.Redirect(w, r, callback(r.Context(), id), http.StatusFound)
	}))
	mux.Handle("/", provider)
	hs.Config.Handler = mux
	hs.Start()
	t.Cleanup(hs.Close)
	return p
}

// SetUser adds or replaces a person.
func (p *Provider) SetUser(u User) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.users[u.ID] = u
}

// SetGroups changes a person's groups.
func (p *Provider) SetGroups(id string, groups ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	u := p.users[id]
	u.Groups = groups
	p.users[id] = u
}

// SignInAs makes the login page sign in the person with this id.
func (p *Provider) SignInAs(id string) { p.signInAs.Store(id) }

// SignWithUnpublishedKey makes the provider sign tokens with a key its key set does not hold, under the
// published key's id.
func (p *Provider) SignWithUnpublishedKey(on bool) { p.wrongKey.Store(on) }

// Refreshes counts refresh-token grants the provider answered.
func (p *Provider) Refreshes() int64 { return p.refreshes.Load() }

func (p *Provider) user(id string) (User, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	u, ok := p.users[id]
	return u, ok
}

// userStore shows the provider's people to the example storage.
type userStore struct{ p *Provider }

func (s userStore) GetUserByID(id string) *storage.User {
	u, ok := s.p.user(id)
	if !ok {
		return nil
	}
	return &storage.User{ID: u.ID, Username: u.ID, Password: password, FirstName: u.Name, Email: u.Email,
		EmailVerified: u.EmailVerified, PreferredLanguage: language.English}
}

func (s userStore) GetUserByUsername(username string) *storage.User { return s.GetUserByID(username) }

func (s userStore) ExampleClientID() string { return "service" }

// opStorage is the example storage with groups in every userinfo and ID token, and the misbehaviour the test
// asks for.
type opStorage struct {
	*storage.Storage
	p *Provider
}

func (s *opStorage) addGroups(info *oidc.UserInfo, userID string) {
	if u, ok := s.p.user(userID); ok && u.Groups != nil {
		info.AppendClaims("groups", u.Groups)
	}
}

// SetUserinfoFromRequest fills ID tokens.
func (s *opStorage) SetUserinfoFromRequest(ctx context.Context, info *oidc.UserInfo, token op.IDTokenRequest, scopes []string) error {
	if err := s.Storage.SetUserinfoFromRequest(ctx, info, token, scopes); err != nil {
		return err
	}
	s.addGroups(info, token.GetSubject())
	return nil
}

// SetUserinfoFromToken fills the userinfo endpoint's answers.
func (s *opStorage) SetUserinfoFromToken(ctx context.Context, info *oidc.UserInfo, tokenID, subject, origin string) error {
	if err := s.Storage.SetUserinfoFromToken(ctx, info, tokenID, subject, origin); err != nil {
		return err
	}
	s.addGroups(info, info.Subject)
	return nil
}

// TokenRequestByRefreshToken counts refreshes.
func (s *opStorage) TokenRequestByRefreshToken(ctx context.Context, token string) (op.RefreshTokenRequest, error) {
	s.p.refreshes.Add(1)
	return s.Storage.TokenRequestByRefreshToken(ctx, token)
}

// SigningKey signs with the published key, or with another under its id.
func (s *opStorage) SigningKey(ctx context.Context) (op.SigningKey, error) {
	k, err := s.Storage.SigningKey(ctx)
	if err != nil || !s.p.wrongKey.Load() {
		return k, err
	}
	return otherKey{id: k.ID(), key: s.p.otherKey}, nil
}

type otherKey struct {
	id  string
	key *rsa.PrivateKey
}

func (k otherKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k otherKey) Key() any                                    { return k.key }
func (k otherKey) ID() string                                  { return k.id }
