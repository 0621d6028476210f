// Package renewtest is the full-stack test fixture: a vault (opened with
// vault/vaulttest, so its consistency is checked after the test), an X
// sandbox (worker/xapi/xsandbox) with its users, a provider for it
// (vault/provider) and a renewal Manager (vault/renew) over them, all on
// one clock. Test packages that need a grant that really renews build it
// here instead of by hand: vault/renew and vault/enroll do (the consent
// pages over the stack, and renewal of what they stored); the daemon's
// tests can.
//
// It lives under vault/renew because it imports renew; the worker's tests
// do not use it (package worker must not depend on renewal, and its tests
// keep to vaulttest), so the dependency points one way.
//
// A Stack is safe for concurrent use by the goroutines of one test; its
// servers and vault are closed by t.Cleanup.
package renewtest

import (
	"context"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"tagwatch/vault"
	"tagwatch/vault/provider"
	"tagwatch/vault/renew"
	"tagwatch/vault/seal"
	"tagwatch/vault/secret"
	"tagwatch/vault/vaulttest"
	"tagwatch/worker/xapi/xsandbox"
)

// The sandbox app's credentials.
const (
	ClientID     = "tagwatch"
	ClientSecret = "s3cret-client"
	// PublicURL is where the Manager's re-consent links point.
	PublicURL = "http://127.0.0.1:8080"
	// RedirectURL is the default callback: flows that never reach a
	// browser.
	RedirectURL = "http://127.0.0.1:1/callback"
)

// DefaultUser is the sandbox user a Stack has when Options.Users is nil.
var DefaultUser = xsandbox.User{ID: "2244994945", Username: "XDevelopers", Name: "X Dev"}

// Options configure New. The zero value of each field is its default.
type Options struct {
	// Clock moves the sandbox, the provider, the vault and renewal
	// together; nil: Now.
	Clock *xsandbox.Clock
	// Now is the stack's clock when Clock is nil; default time.Now.
	Now func() time.Time
	// AccessTokenTTL is the sandbox's access-token lifetime; default the
	// sandbox's (2 h).
	AccessTokenTTL time.Duration
	// ClientSecret is the secret the provider presents; default the
	// sandbox's: set another to test a misconfigured client.
	ClientSecret string
	// RedirectURL is the provider's registered callback; default
	// RedirectURL.
	RedirectURL string
	// Transport carries the provider's requests (after Stack.Requests
	// counts them); default http.DefaultTransport.
	Transport http.RoundTripper
	// Users are the sandbox's users; default DefaultUser.
	Users []xsandbox.User
	// KeepReusedFamily turns off X's behaviour of revoking a refresh
	// token's whole family when a rotated token is presented again (on by
	// default, as X does).
	KeepReusedFamily bool
	// Vault are more options for vaulttest.Open (rules, Tolerate, ...).
	// By default the vault has vaulttest.StubRules and the stack's clock.
	Vault []vaulttest.Option
	// Renew adjusts renewal's configuration before the Manager is built.
	Renew func(*renew.Config)
}

// Stack is a vault, an X sandbox, its provider and a renewal Manager.
type Stack struct {
	DB       *vault.DB
	Master   *seal.MasterKey
	Sandbox  *xsandbox.Server
	Provider *provider.Provider
	Manager  *renew.Manager
	// Config is the Manager's configuration: renew.New(Config) is a
	// restarted daemon's Manager.
	Config renew.Config
	// Clock is Options.Clock (nil on real time).
	Clock *xsandbox.Clock
	// Events receives what the Manager reports (buffered; events beyond
	// the buffer are dropped).
	Events chan renew.Event
	// Requests counts the provider's requests by URL path.
	Requests *Counter

	t          testing.TB
	now        func() time.Time
	opts       Options
	redirect   string
	clientAuth string
}

// New starts a stack for t.
func New(t testing.TB, o Options) *Stack {
	t.Helper()
	s := &Stack{t: t, Clock: o.Clock, Events: make(chan renew.Event, 1000), opts: o, now: time.Now}
	switch {
	case o.Clock != nil:
		s.now = o.Clock.Now
	case o.Now != nil:
		s.now = o.Now
	}
	s.redirect = o.RedirectURL
	if s.redirect == "" {
		s.redirect = RedirectURL
	}
	s.Requests = &Counter{base: o.Transport}
	var err error
	s.Sandbox, err = xsandbox.Start(xsandbox.Config{ClientID: ClientID, ClientSecret: ClientSecret,
		RedirectURIs: []string{s.redirect}, AccessTokenTTL: o.AccessTokenTTL, Now: s.now})
	if err != nil {
		t.Fatalf("renewtest: start the X sandbox: %v", err)
	}
	t.Cleanup(s.Sandbox.Close)
	s.Sandbox.SetReuseRevokesFamily(!o.KeepReusedFamily)
	users := o.Users
	if users == nil {
		users = []xsandbox.User{DefaultUser}
	}
	for _, u := range users {
		if err := s.Sandbox.AddUser(u); err != nil {
			t.Fatalf("renewtest: sandbox user %s: %v", u.ID, err)
		}
	}
	s.clientAuth = o.ClientSecret
	if s.clientAuth == "" {
		s.clientAuth = ClientSecret
	}
	s.Provider = s.NewProvider(s.clientAuth)
	s.Master, _ = vaulttest.NewMaster(t)
	s.DB = vaulttest.Open(t, append([]vaulttest.Option{vaulttest.Master(s.Master), vaulttest.Now(s.now)}, o.Vault...)...)
	s.Config = renew.Config{DB: s.DB, Providers: map[string]renew.Provider{"x": s.Provider}, PublicURL: PublicURL, Now: s.now,
		Logger: vaulttest.Quiet(), MinBackoff: time.Second, MaxBackoff: time.Minute,
		Observer: func(ev renew.Event) {
			select {
			case s.Events <- ev:
			default:
			}
		}}
	if o.Renew != nil {
		o.Renew(&s.Config)
	}
	s.Manager = renew.New(s.Config)
	return s
}

// NewProvider returns another provider for the stack's sandbox that
// presents clientSecret, with the stack's clock, callback and counted
// transport (a reconfigured provider).
func (s *Stack) NewProvider(clientSecret string) *provider.Provider {
	s.t.Helper()
	base := s.Sandbox.URL()
	p, err := provider.New(context.Background(), provider.Config{Name: "x", Kind: provider.KindX, ClientID: ClientID,
		ClientSecret: secret.NewClientSecret(clientSecret), RedirectURL: s.redirect,
		AuthURL: base + string(xsandbox.EndpointAuthorize), TokenURL: base + string(xsandbox.EndpointToken),
		RevokeURL: base + string(xsandbox.EndpointRevoke), APIURL: base, Now: s.now,
		HTTPClient: &http.Client{Transport: s.Requests}, Logger: vaulttest.Quiet()})
	if err != nil {
		s.t.Fatalf("renewtest: provider: %v", err)
	}
	return p
}

// Now is the stack's clock reading.
func (s *Stack) Now() time.Time { return s.now() }

// Restart returns a new Manager on the same vault and configuration, as a
// restarted daemon has (no cached token, no backoff).
func (s *Stack) Restart() *renew.Manager { return renew.New(s.Config) }

// Enrollee says whom Enroll enrolls, and with what.
type Enrollee struct {
	// XID is the sandbox user who consents; default DefaultUser.ID.
	XID string
	// User is the vault user; default "u1".
	User string
	// Scopes are what the sandbox grants; nil: everything tagwatch asks
	// for. The grant records provider.XScopes (what was asked) either way,
	// so fewer scopes here is a consent the user narrowed.
	Scopes []string
	// Expiry is the stored access token's expiry (in the past: expired);
	// zero: what the sandbox said.
	Expiry time.Time
	// Watch is the consent link's watch; default vaulttest.DefaultWatch.
	Watch *vault.WatchSpec
}

// Enroll makes the sandbox user consent (tokens minted by the sandbox)
// and stores the consent through a link, as the consent pages do
// (CreateLink, then CommitConsent). It returns what the consent did:
// Grant, Link, and the watch Started.
func (s *Stack) Enroll(e Enrollee) vault.ConsentResult {
	s.t.Helper()
	if e.XID == "" {
		e.XID = DefaultUser.ID
	}
	if e.User == "" {
		e.User = "u1"
	}
	at, rt, err := s.Sandbox.Grant(e.XID, e.Scopes)
	if err != nil {
		s.t.Fatalf("renewtest: sandbox grant for %s: %v", e.XID, err)
	}
	expiry := e.Expiry
	if expiry.IsZero() {
		ttl := s.opts.AccessTokenTTL
		if ttl <= 0 {
			ttl = 2 * time.Hour
		}
		expiry = s.now().Add(ttl)
	}
	username := ""
	if i := slices.IndexFunc(s.opts.Users, func(u xsandbox.User) bool { return u.ID == e.XID }); i >= 0 {
		username = s.opts.Users[i].Username
	} else if e.XID == DefaultUser.ID {
		username = DefaultUser.Username
	}
	w := vaulttest.DefaultWatch
	if e.Watch != nil {
		w = *e.Watch
	}
	w.Hashtags, w.Targets = slices.Clone(w.Hashtags), slices.Clone(w.Targets)
	_, link, err := s.DB.CreateLink(vault.LinkRequest{UserID: e.User, Provider: "x", Watch: &w, CreatedBy: "renewtest"})
	if err != nil {
		s.t.Fatalf("renewtest: enroll %s: %v", e.User, err)
	}
	rv := s.Provider.Revocation() // the one rule, as the consent pages pass it
	res, err := s.DB.CommitConsent(vault.Consent{LinkHash: link.Hash, LinkID: link.ID, UserID: e.User, Provider: "x",
		Subject: e.XID, Username: username, Scopes: slices.Clone(provider.XScopes), AccessExpiry: expiry,
		Tokens:     vault.Tokens{Refresh: secret.NewRefreshToken(rt), Access: secret.NewAccessToken(at)},
		Revocation: vault.RevocationRule{Endpoint: rv.Endpoint, EndsAccount: rv.EndsAccount, Why: rv.Why}})
	if err != nil {
		s.t.Fatalf("renewtest: enroll %s: %v", e.User, err)
	}
	return res
}

// Grant returns the grant with id as stored.
func (s *Stack) Grant(id string) vault.Grant {
	s.t.Helper()
	g, err := s.DB.Grant(id)
	if err != nil {
		s.t.Fatalf("renewtest: %v", err)
	}
	return g
}

// Refreshes is how many refresh_token requests the sandbox processed.
func (s *Stack) Refreshes() int { return s.Sandbox.Stats().TokenRequests["refresh_token"] }

// UsersMe makes an API call with tok, as a job would, and returns the
// HTTP status.
func (s *Stack) UsersMe(tok secret.AccessToken) int {
	s.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.Sandbox.URL()+string(xsandbox.EndpointUsersMe), nil)
	req.Header.Set("Authorization", "Bearer "+tok.Reveal())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("renewtest: users/me: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// Counter is an http.RoundTripper that counts requests by URL path.
type Counter struct {
	base http.RoundTripper
	mu   sync.Mutex
	n    map[string]int
}

// RoundTrip implements http.RoundTripper.
func (c *Counter) RoundTrip(r *http.Request) (*http.Response, error) {
	c.mu.Lock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[r.URL.Path]++
	c.mu.Unlock()
	base := c.base
	if base == nil {
		base = http.DefaultTransport
	}
	return base.RoundTrip(r)
}

// Count returns how many requests went to path.
func (c *Counter) Count(path string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[path]
}
