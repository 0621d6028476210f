// Package enroll is the consent door: it turns one-time consent links into
// grants. An operator creates a link for a user (Service.CreateLink, which
// stores it with vault.DB.CreateLink), the user opens it in a browser,
// reads what tagwatch will do on their behalf, presses the one button, signs
// in and consents at the provider, and the callback stores what it learnt
// with vault.DB.CommitConsent: the grant sealed, the link used, the user's
// watches started or resumed, all in one transaction. The rules are the
// store's: a link's watch is checked against the vault's rules when the
// link is created, again when the user presses the button (before any
// authorization or token request: a link whose watch is no longer valid
// gets a page saying so), and once more at the commit.
//
// The flow is the OAuth 2.0 authorization code flow of a confidential
// client, held server side: a single-use state bound to the browser by a
// cookie, PKCE S256 with a fresh verifier per flow, a nonce for OpenID
// Connect, RFC 9207's iss check, one back-channel redemption of the code.
// Tokens never reach the browser; pages never show a token, a code or a
// state. A GET never consumes a link, so mail scanners that fetch links do
// no harm.
//
// A sign-in link (vault.PurposeSignIn, for an OpenID Connect provider
// only) runs the same flow to learn who a user is, for the user's page:
// the authorization request asks for openid alone (no offline access, no
// prompt=consent), the identity is the verified ID token's (nonce
// checked), every token is discarded (signin.go), and
// vault.DB.CommitSignIn binds the identity to the user: no grant, no
// token kept.
//
// A Service is safe for concurrent use. It starts no goroutines: flows in
// progress are kept in the vault's flow state (vault.DB.PutFlow: sealed,
// in the store's kv.Cluster), bounded in number and age, so that a flow
// started on one daemon finishes on any daemon sharing the store (on
// PostgreSQL; on bbolt they live in the process, and a restart forgets
// them). The links themselves stay usable.
package enroll

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"tagwatch/vault"
	"tagwatch/vault/provider"
)

// Provider is what the enrollment flow needs from an OAuth 2.0 / OpenID
// provider. *provider.Provider implements it.
type Provider interface {
	// Kind is provider.KindX or provider.KindOIDC.
	Kind() string
	// Issuer is the OpenID issuer, "" for X.
	Issuer() string
	// Scopes are the scopes requested, shown on the landing page.
	Scopes() []string
	// AuthorizationOrigin is scheme://host of the authorization endpoint,
	// whose host the landing page names.
	AuthorizationOrigin() string
	// AuthCodeURL builds the authorization request.
	AuthCodeURL(state, verifier, nonce string) string
	// CheckAuthorizationIssuer applies RFC 9207 to the callback's iss.
	CheckAuthorizationIssuer(iss string, present bool) error
	// Exchange redeems the code over the back channel.
	Exchange(ctx context.Context, code, verifier string) (*provider.TokenResult, error)
	// Identify says who consented (verified ID token, or X's users/me).
	Identify(ctx context.Context, tr *provider.TokenResult, nonce string) (provider.Identity, error)
	// MissingScopes returns the required scopes a token answer did not
	// grant (granted nil: as requested); refresh says whether it carried
	// a refresh token, which alone proves offline access.
	MissingScopes(granted []string, refresh bool) []string
}

// Defaults of Config fields.
const (
	// DefaultFlowTTL is how long a started flow waits for its callback.
	DefaultFlowTTL = 10 * time.Minute
	// DefaultMaxFlows bounds the flows in progress.
	DefaultMaxFlows = 10000
	// DefaultExchangeTimeout bounds the back-channel work of one callback
	// (code exchange and identification).
	DefaultExchangeTimeout = 30 * time.Second
)

// maxFlowsPerLink bounds the flows one link may have in progress: pressing
// the button again evicts the oldest, and nobody holding one link can fill
// the table.
const maxFlowsPerLink = 8

// ErrUnknownProvider means a link names a provider the Service does not
// know. CreateLink returns it inside a *vault.InvalidError, worded as
// every door words it: `provider "nosuch" is not configured`.
var ErrUnknownProvider = errors.New("provider is not configured")

// unknownProviderError is ErrUnknownProvider naming the provider.
type unknownProviderError struct{ name string }

func (e *unknownProviderError) Error() string {
	return fmt.Sprintf("provider %q is not configured", e.name)
}

func (e *unknownProviderError) Is(target error) bool { return target == ErrUnknownProvider }

// Config configures a Service. Zero values take the defaults documented.
type Config struct {
	// DB is the vault the links, grants and watches live in. Required.
	DB *vault.DB
	// Providers serve the flow, by the name grants and links use. CreateLink
	// accepts any name that is a key here; a key mapped to nil is accepted by
	// CreateLink, but its links show "not available" until a Service with a
	// live provider serves them (tagwatchd enroll creates links for a
	// stopped daemon this way). Every provider's redirect URL must be
	// PublicURL + "/callback". SetProviders replaces them while the
	// Service runs.
	Providers map[string]Provider
	// PublicURL is the base URL users reach the pages at, such as
	// https://tagwatch.example.com (a path is allowed; the handler then
	// serves below it). https, or http on a loopback host for development.
	// Required.
	PublicURL string
	// Operator names who asks, on the landing page; default the host of
	// PublicURL.
	Operator string
	// AccountURL, when set, is the user's own page (vault/selfservice),
	// which the pages that end a consent link to ("Open your tagwatch
	// page"); "" when the daemon serves none.
	AccountURL string
	// LinkTTL is a link's default lifetime; default vault.DefaultLinkTTL,
	// at most vault.MaxLinkTTL.
	LinkTTL time.Duration
	// FlowTTL is how long a started flow waits for its callback; default
	// DefaultFlowTTL.
	FlowTTL time.Duration
	// MaxFlows bounds the flows in progress; default DefaultMaxFlows. When
	// it is reached, starting another gives a "busy" page.
	MaxFlows int
	// ExchangeTimeout bounds the back-channel requests of one callback;
	// default DefaultExchangeTimeout.
	ExchangeTimeout time.Duration
	// TargetLabel shows a notification target on the landing page without
	// the secrets a target URL may carry (notify.TargetLabel). Default: the
	// kind of target only ("Email", "A webhook").
	TargetLabel func(target string) string
	// Cadence says a watch's schedule in words on the pages, such as
	// "every 15 minutes" (notify.Cadence: the words users read live with
	// the notifier). Default: the schedule as written.
	Cadence func(schedule string) string
	// OnGrantStored, when set, is called after a transaction that stored a
	// grant has committed, with the grant's id (renewal drops its cached
	// token for it). It runs on the request's goroutine and must not block.
	OnGrantStored func(grantID string)
	// Logger receives the log; default slog.Default().
	Logger *slog.Logger
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Service creates and serves one-time consent links. Safe for concurrent
// use.
type Service struct {
	cfg      Config
	base     *url.URL // PublicURL, without a trailing slash
	prefix   string   // base.Path without a trailing slash
	secure   bool     // cookies are Secure (all but loopback http)
	operator string
	log      *slog.Logger
	flows    *flowStore
	// providers is the live Config.Providers.
	providers atomic.Pointer[map[string]Provider]
}

// New checks cfg and returns a Service.
func New(cfg Config) (*Service, error) {
	if cfg.DB == nil {
		return nil, errors.New("enroll: no vault")
	}
	if err := CheckPublicURL(cfg.PublicURL); err != nil {
		return nil, fmt.Errorf("enroll: public url: %w", err)
	}
	base, err := url.Parse(strings.TrimRight(cfg.PublicURL, "/"))
	if err != nil {
		return nil, fmt.Errorf("enroll: public url: %w", err)
	}
	if cfg.LinkTTL <= 0 {
		cfg.LinkTTL = vault.DefaultLinkTTL
	}
	if cfg.LinkTTL > vault.MaxLinkTTL {
		return nil, fmt.Errorf("enroll: link ttl %s is longer than %s", cfg.LinkTTL, vault.MaxLinkTTL)
	}
	if cfg.TargetLabel == nil {
		cfg.TargetLabel = targetKind
	}
	if cfg.Cadence == nil {
		cfg.Cadence = func(spec string) string { return "on the schedule “" + spec + "”" }
	}
	if cfg.FlowTTL <= 0 {
		cfg.FlowTTL = DefaultFlowTTL
	}
	if cfg.MaxFlows <= 0 {
		cfg.MaxFlows = DefaultMaxFlows
	}
	if cfg.ExchangeTimeout <= 0 {
		cfg.ExchangeTimeout = DefaultExchangeTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Service{
		cfg:      cfg,
		base:     base,
		prefix:   strings.TrimRight(base.Path, "/"),
		secure:   !(base.Scheme == "http" && provider.IsLoopbackHost(base.Hostname())),
		operator: cfg.Operator,
		log:      cfg.Logger,
		flows:    newFlowStore(cfg.DB, cfg.MaxFlows, maxFlowsPerLink),
	}
	if s.operator == "" {
		s.operator = base.Host
	}
	s.SetProviders(cfg.Providers)
	s.cfg.Providers = nil // the live set is s.providers
	return s, nil
}

// SetProviders replaces the providers that serve links and callbacks; the
// map is copied. Flows already started finish with the provider of their
// name at callback time, as long as its issuer did not change (a flow is
// bound to the issuer it started with); a name no longer in ps shows its
// links as "not available" until it returns. Safe for concurrent use.
func (s *Service) SetProviders(ps map[string]Provider) {
	m := maps.Clone(ps)
	if m == nil {
		m = map[string]Provider{}
	}
	s.providers.Store(&m)
}

// provider returns the live provider of a name; ok reports whether the
// name is known at all (it may map to nil, see Config.Providers).
func (s *Service) provider(name string) (p Provider, ok bool) {
	p, ok = (*s.providers.Load())[name]
	return p, ok
}
