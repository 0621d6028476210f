// Package selfservice is the user's own page, a door beside the consent
// pages (vault/enroll): a person signs in with the identity bound to them
// (the account of one of their grants, or an identity a sign-in link bound:
// vault.DB.UserBySignIn) and sees and steers their watches.
//
// The page is a backend-for-frontend: no token of any kind reaches the
// browser. Its cookie, __Host-tagwatch-account, holds a random session id;
// the session lives in memory here (map key: the id's SHA-256) with an
// idle and an absolute lifetime and a new id at every sign-in. The
// tokens of a sign-in are dropped once it has said who signed in: not
// even the ID token is kept (RP-initiated logout goes without it).
//
// Sign-in is OpenID Connect's authorization code flow (state, nonce, PKCE
// S256, RFC 9207's iss check, scope openid only), or X's OAuth 2.0 with
// the least scopes /2/users/me accepts, whose tokens are dropped once the
// identity is read. The state is single use, bound to the browser by a
// second cookie, __Host-tagwatch-account-flow, and lives FlowTTL.
//
// When a session has expired, the page renews it the way a person who is
// there should be renewed: not with a refresh token, but by asking the
// provider again, with a top-level redirect to its authorization endpoint
// and prompt=none. A provider that still holds the person's session
// answers at once, with no page; one that answers login_required,
// interaction_required, consent_required or account_selection_required
// gets an interactive sign-in instead. X has no prompt=none: an expired X
// session shows the sign-in page. Actions that cannot be undone need a
// recent sign-in (requireRecentAuth): max_age, then auth_time checked.
//
// The provider ends page sessions by OpenID Connect Back-Channel Logout
// (POST .../backchannel-logout), and only page sessions: grants and
// watches are untouched. A person signs out here, or everywhere
// (RP-Initiated Logout at the provider, with client_id and no
// id_token_hint: signOutEverywhere).
//
// Every POST but the back-channel logout passes net/http's
// CrossOriginProtection; every response carries the security headers
// (httpsec.SetPageHeaders: CSP with frame-ancestors 'none' and no script,
// no referrer, no caching).
//
// A Service is safe for concurrent use and starts no goroutines: sessions
// and seen logout tokens live in memory, bounded, and are pruned as new
// ones come; sign-in flows in progress are kept in the vault's flow state
// (Store's webpage.FlowBackend: sealed, shared by the daemons on one
// store, so a sign-in's callback may reach any of them). A restart ends every page session; the next visit renews
// it with prompt=none when one OpenID provider signs people in.
package selfservice

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"tagwatch/vault"
	"tagwatch/vault/provider"
	"tagwatch/vault/secret"
	"tagwatch/vault/webpage"
)

// Store is what the page needs from the vault: who signs in, and what
// the page shows and changes (PageStore). *vault.DB implements it.
type Store interface {
	PageStore
	// FlowBackend keeps the sign-in flows in progress (PutFlow, TakeFlow:
	// sealed, shared by every daemon on the same store).
	webpage.FlowBackend
	// UserBySignIn returns the user an identity signs in: the user whose
	// grant at provider has subject as its account, or to whom a sign-in
	// link bound (provider, issuer, subject). *vault.NotFoundError when
	// there is none, vault.ErrSignInConflict when several.
	UserBySignIn(provider, issuer, subject string) (vault.User, error)
}

// Provider is what the page needs from a provider that signs people in.
// *provider.Provider implements it.
type Provider interface {
	// Kind is provider.KindOIDC or provider.KindX.
	Kind() string
	// Issuer is the OpenID issuer, "" for X.
	Issuer() string
	// SignInURL builds a sign-in's authorization request.
	SignInURL(provider.SignInRequest) string
	// CheckAuthorizationIssuer applies RFC 9207 to the callback's iss.
	CheckAuthorizationIssuer(iss string, present bool) error
	// ExchangeSignIn redeems a sign-in's code over the back channel.
	ExchangeSignIn(ctx context.Context, code, verifier, redirectURL string) (*provider.TokenResult, error)
	// Identify says who signed in: the verified ID token (nonce checked),
	// or X's /2/users/me.
	Identify(ctx context.Context, tr *provider.TokenResult, nonce string) (provider.Identity, error)
	// EndSessionURL is the RP-Initiated Logout request: client_id, and
	// logout_hint, post_logout_redirect_uri and state when not "", never
	// an id_token_hint; "" without an end session endpoint.
	EndSessionURL(logoutHint, postLogoutRedirect, state string) string
	// VerifyLogoutToken verifies a back-channel logout token, all but
	// replay.
	VerifyLogoutToken(ctx context.Context, raw string) (provider.LogoutToken, error)
	// Revocation is the provider's revocation rule; Revoke revokes a
	// refresh token (RFC 7009).
	Revocation() provider.Revocation
	Revoke(ctx context.Context, rt secret.RefreshToken) error
}

// Defaults of Config fields.
const (
	DefaultIdleTimeout     = 15 * time.Minute
	DefaultAbsoluteTimeout = 8 * time.Hour
	DefaultRecentAuth      = 5 * time.Minute
	DefaultFlowTTL         = 10 * time.Minute
	DefaultMaxFlows        = 10000
	DefaultMaxSessions     = 100000
	DefaultExchangeTimeout = 30 * time.Second
)

// Path names.
const (
	// Prefix is where the handler serves, below PublicURL's path.
	Prefix = "/account"
	// SessionCookie and FlowCookie are the cookies' names: __Host- (Secure,
	// Path=/, no Domain), HttpOnly, SameSite=Lax (a Strict cookie is not
	// sent on the redirect back from the provider).
	SessionCookie = "__Host-tagwatch-account"
	FlowCookie    = "__Host-tagwatch-account-flow"
)

// Config configures a Service. Zero values take the defaults documented.
type Config struct {
	// Store finds who signs in, and holds what the page shows and
	// changes, every call scoped to the signed-in user. Required.
	Store Store
	// Providers sign people in, by the names grants and sign-in links use.
	// At least one. Each must accept the redirect URI PublicURL +
	// "/account/callback", and, for RP-initiated logout, the post-logout
	// redirect URI PublicURL + "/account/signed-out"; an OpenID provider's
	// back-channel logout URI is PublicURL + "/account/backchannel-logout".
	Providers map[string]Provider
	// PublicURL is the base URL people reach tagwatch at, such as
	// https://tagwatch.example.com (a path is allowed; the page is served
	// below it at /account/). https, or http on a loopback host, where
	// browsers treat the origin as secure and keep __Host- cookies.
	// Required.
	PublicURL string
	// IdleTimeout ends a session not used for so long; default
	// DefaultIdleTimeout. AbsoluteTimeout ends it that long after its
	// sign-in, used or not; default DefaultAbsoluteTimeout. An ended
	// session is kept as a hint for a silent renewal until twice
	// AbsoluteTimeout after its sign-in.
	IdleTimeout, AbsoluteTimeout time.Duration
	// RecentAuth is how recent a sign-in must be for the actions that need
	// one (requireRecentAuth); default DefaultRecentAuth.
	RecentAuth time.Duration
	// FlowTTL is how long a started sign-in waits for its callback;
	// default DefaultFlowTTL.
	FlowTTL time.Duration
	// MaxFlows bounds the sign-ins in progress (a "busy" page beyond);
	// default DefaultMaxFlows. MaxSessions bounds the sessions kept (the
	// least recently used goes first); default DefaultMaxSessions.
	MaxFlows, MaxSessions int
	// ExchangeTimeout bounds the back-channel requests of one callback or
	// logout token; default DefaultExchangeTimeout.
	ExchangeTimeout time.Duration
	// Pages is what the page needs beyond signing people in: the
	// scheduler, re-consent links, revoking and deleting, run status and
	// the words for schedules and targets (see Pages; its zero fields
	// take the defaults documented there: a zero Pages shows the
	// watches and grants, and offers neither revoking nor deleting).
	Pages Pages
	// Now is the clock of sessions, flows and auth_time checks; default
	// time.Now.
	Now func() time.Time
	// Logger receives the page's log (sign-ins, refusals, logouts; never
	// a token); default slog.Default().
	Logger *slog.Logger
}

// Service serves the page. Create it with New.
type Service struct {
	cfg    Config
	log    *slog.Logger
	prefix string // URL path of the page: PublicURL's path + Prefix
	// callbackURL and signedOutURL are absolute: the redirect URI and the
	// post-logout redirect URI.
	callbackURL, signedOutURL string
	// provs is the live set of sign-in providers (SetProviders).
	provs atomic.Pointer[providerSet]

	sessions *sessionStore
	flows    *flowStore
	seen     *replayStore
	cop      *http.CrossOriginProtection
}

// New checks cfg and returns the Service. Errors name what is wrong in
// cfg.
func New(cfg Config) (*Service, error) {
	if cfg.Store == nil {
		return nil, errors.New("selfservice: a store is required")
	}
	if err := provider.CheckURL(cfg.PublicURL); err != nil {
		return nil, fmt.Errorf("selfservice: public url: %w", err)
	}
	u, _ := url.Parse(cfg.PublicURL)
	if u.RawQuery != "" || u.ForceQuery {
		return nil, fmt.Errorf("selfservice: public url %s must not have a query", cfg.PublicURL)
	}
	for name, d := range map[string]*time.Duration{"idle timeout": &cfg.IdleTimeout, "absolute timeout": &cfg.AbsoluteTimeout,
		"recent sign-in": &cfg.RecentAuth, "flow lifetime": &cfg.FlowTTL, "exchange timeout": &cfg.ExchangeTimeout} {
		if *d < 0 {
			return nil, fmt.Errorf("selfservice: %s %v is negative", name, *d)
		}
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.AbsoluteTimeout == 0 {
		cfg.AbsoluteTimeout = DefaultAbsoluteTimeout
	}
	if cfg.RecentAuth == 0 {
		cfg.RecentAuth = DefaultRecentAuth
	}
	if cfg.FlowTTL == 0 {
		cfg.FlowTTL = DefaultFlowTTL
	}
	if cfg.MaxFlows <= 0 {
		cfg.MaxFlows = DefaultMaxFlows
	}
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = DefaultMaxSessions
	}
	if cfg.ExchangeTimeout == 0 {
		cfg.ExchangeTimeout = DefaultExchangeTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Service{
		cfg:      cfg,
		log:      cfg.Logger.With("door", "account"),
		prefix:   strings.TrimRight(u.Path, "/") + Prefix,
		sessions: newSessionStore(cfg.IdleTimeout, cfg.AbsoluteTimeout, cfg.MaxSessions),
		flows:    newFlowStore(cfg.Store, cfg.MaxFlows, maxFlowsPerBrowser),
		seen:     newReplayStore(maxSeenLogoutTokens),
		cop:      http.NewCrossOriginProtection(),
	}
	base := strings.TrimRight(cfg.PublicURL, "/")
	s.callbackURL, s.signedOutURL = base+Prefix+"/callback", base+Prefix+"/signed-out"
	if err := s.SetProviders(cfg.Providers); err != nil {
		return nil, err
	}
	s.cfg.Providers = nil // the live set is s.provs
	return s, nil
}

// providerSet is a set of sign-in providers as the page uses it.
type providerSet struct {
	byName map[string]Provider
	// names are the providers' names, sorted; single is the one OpenID
	// provider when there is exactly one (it renews a session this
	// process does not know: one from before a restart).
	names  []string
	single string
}

// SetProviders replaces the providers people sign in with, by name (the
// map is copied): a provider the daemon rebuilt on SIGHUP (a rotated
// client secret, new keys) serves the next sign-in, renewal and logout
// token. Flows already started finish with the provider of their name at
// callback time. Errors, which leave the set as it was: no provider, a
// nil one, a kind other than provider.KindX or provider.KindOIDC. Safe for
// concurrent use.
func (s *Service) SetProviders(ps map[string]Provider) error {
	if len(ps) == 0 {
		return errors.New("selfservice: at least one sign-in provider is required")
	}
	set := &providerSet{byName: maps.Clone(ps)}
	var oidcNames []string
	for name, p := range ps {
		if p == nil {
			return fmt.Errorf("selfservice: provider %q is nil", name)
		}
		switch p.Kind() {
		case provider.KindOIDC:
			oidcNames = append(oidcNames, name)
		case provider.KindX:
		default:
			return fmt.Errorf("selfservice: provider %q: unknown kind %q", name, p.Kind())
		}
		set.names = append(set.names, name)
	}
	slices.Sort(set.names)
	if len(oidcNames) == 1 {
		set.single = oidcNames[0]
	}
	s.provs.Store(set)
	return nil
}

// providers returns the live set of sign-in providers.
func (s *Service) providers() *providerSet { return s.provs.Load() }

// provider returns the live sign-in provider of a name, nil for none.
func (s *Service) provider(name string) Provider { return s.providers().byName[name] }
